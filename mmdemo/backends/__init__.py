"""Backends run models. Every backend has the same small interface, so that one can later live in
another process or on other machines (a Ray Serve deployment, an OpenAI-compatible server) while
the pipeline layer and the UI stay as they are:

    backend.validate(item)            # raise InputError for an input this model cannot take
    backend(items, **params) -> list  # a batch of plain inputs in, plain results out (CONTRACT.md)
    backend.prepare(item) -> item     # optional: per-input work (resize, normalise) the pipeline does before
                                      # batching: in the caller's thread for large inputs (callers share it out),
                                      # in the batcher's worker for a lone small one (mmdemo.pipelines._small)

Items are dicts of plain values (PIL images, strings), never tensors.
"""

import importlib
from collections.abc import Callable
from typing import Any, Protocol

from mmdemo.registry import ModelInfo

LOADERS = {  # backend name -> "module:function", imported lazily
    "native": "mmdemo.backends.native:load",
    "efficientnet-lite": "mmdemo.backends.imagenet:load",
    "faster-whisper": "mmdemo.backends.whisper_ct2:load",
    "transformers": "mmdemo.backends.hf:load",
    "openai": "mmdemo.backends.openai_compat:load",
}
# model name -> loader of a backend served elsewhere, consulted before LOADERS: mmdemo.serving.serve_remotely fills it,
# so that the pipelines run those models on a model server (a Ray Serve deployment) instead of in this process
REMOTE: dict[str, Callable[[ModelInfo, str | None], "Backend"]] = {}


class Backend(Protocol):
    info: ModelInfo

    def validate(self, item: dict) -> None: ...

    def __call__(self, items: list[dict], **params) -> list[Any]: ...


def load_backend(info: ModelInfo, device: str | None = None) -> Backend:
    if info.name in REMOTE:
        return REMOTE[info.name](info, device)
    if info.backend not in LOADERS:
        raise ValueError(f"model {info.name!r} needs backend {info.backend!r}; known: {', '.join(LOADERS)}")
    module, func = LOADERS[info.backend].split(":")
    return getattr(importlib.import_module(module), func)(info, device)
