"""ZeroGPU on Hugging Face Spaces: `gpu` marks the functions that run models, a no-op everywhere else.

    from mmdemo.zerogpu import gpu

    @gpu(duration=60)        # or plain @gpu
    def run_model(task, model, *args, **kwargs): ...

On a ZeroGPU Space (Spaces sets SPACES_ZERO_GPU and installs the `spaces` package) each call of a marked function
borrows a GPU for at most `duration` seconds (a number, or a function of the same arguments that returns one) and runs
in a worker process forked for it: its arguments and results are pickled, and what it changes in this process's memory
is lost. Elsewhere the function is returned unchanged: same object, same signature, a generator function stays one.

Importing this module imports neither torch, gradio nor `spaces`; `spaces` is imported when a function is marked on
a ZeroGPU Space, which must happen before anything initialises CUDA.
"""

import functools
import logging
import os
from collections.abc import Callable

ENV = "SPACES_ZERO_GPU"  # set by Hugging Face on ZeroGPU hardware (the `spaces` package reads the same variable)
DEFAULT_DURATION = 60  # seconds of GPU a call may hold: ZeroGPU's own default

log = logging.getLogger("mmdemo.zerogpu")


def on_zerogpu() -> bool:
    """Whether this process runs on a ZeroGPU Space."""
    return os.environ.get(ENV, "").strip().lower() in ("1", "t", "true", "yes", "on")


def gpu(fn: Callable | None = None, *, duration: float | Callable[..., float] = DEFAULT_DURATION):
    """`fn` wrapped by `spaces.GPU(duration=duration)` on a ZeroGPU Space, else `fn` itself.
    Use as `@gpu` or `@gpu(duration=...)`."""
    if fn is None:
        return functools.partial(gpu, duration=duration)
    spaces = _spaces()
    if spaces is None:
        return fn
    return spaces.GPU(duration=duration)(fn)


def _spaces():
    """The `spaces` package on a ZeroGPU Space, else None."""
    if not on_zerogpu():
        return None
    try:
        import spaces
    except ImportError:
        log.warning("%s is set but the `spaces` package is missing: models run without ZeroGPU", ENV)
        return None
    return spaces
