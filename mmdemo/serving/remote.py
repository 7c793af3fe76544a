"""A backend whose model runs on a model server: the Backend interface (validate + __call__) over a Ray Serve
DeploymentHandle, and the encoding its inputs travel in.

Inputs travel as plain values, never as file paths (the server may be on another machine): an image as its pixels
(`EncodedImage`: a uint8 numpy array and its mode, lossless, and zero-copy through Ray's object store), audio and
text as they are. Errors come back as the pipeline raises them locally: InputError and ModelError with the same
message, the model's own exceptions (out of memory ...) as themselves, and a server that cannot answer as ModelError.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image

from mmdemo.errors import InputError, ModelError
from mmdemo.registry import ModelInfo

TIMEOUT_S = 120.0  # the longest a call waits for its model server (a hub model's generation is capped at 60 s)


@dataclass(frozen=True)
class EncodedImage:
    mode: str  # the PIL mode: "RGB" (every image mmdemo.inputs loads), "L", "RGBA"
    pixels: np.ndarray  # uint8 (H, W, C) or (H, W)

    def decode(self) -> Image.Image:
        image = Image.fromarray(self.pixels)
        return image if image.mode == self.mode else image.convert(self.mode)


def encode_item(item: dict) -> dict:
    """An item ready to send: each PIL image as an EncodedImage; strings, numbers and numpy arrays as they are."""
    return {k: EncodedImage(v.mode, np.asarray(v)) if isinstance(v, Image.Image) else v for k, v in item.items()}


def decode_item(item: dict) -> dict:
    """The item as the backend takes it (the inverse of encode_item)."""
    return {k: v.decode() if isinstance(v, EncodedImage) else v for k, v in item.items()}


def user_error(e: BaseException, model: str) -> BaseException:
    """The exception to raise here for a failed remote call `e` (Ray wraps what the deployment raised)."""
    from ray.exceptions import RayTaskError

    cause = e.cause if isinstance(e, RayTaskError) else None
    if isinstance(cause, InputError):  # bad input: the same message as a local backend gives
        return InputError(str(cause))
    if isinstance(cause, ModelError):
        return ModelError(str(cause))
    if isinstance(cause, Exception) and not _ray_failure(cause):  # the model's own error (out of memory ...)
        return cause
    return ModelError(f"The model server for {model} could not answer ({type(cause or e).__name__}); please try again.")


def _ray_failure(e: BaseException) -> bool:
    """An error of Ray itself (a replica died, a queue is full), not of the model."""
    return type(e).__module__.startswith("ray.")


class RemoteBackend:
    """A model served by a Ray Serve deployment (mmdemo.serving.ray_app.ModelDeployment), used as a local backend."""

    batches_calls = True  # the deployment batches concurrent calls (@serve.batch): the pipeline sends them at once

    def __init__(self, info: ModelInfo, handle, timeout_s: float | None = TIMEOUT_S):
        self.info, self.handle, self.timeout_s = info, handle, timeout_s

    def validate(self, item: dict) -> None:
        """The model's own check (VQA's vocabulary, say), run by the deployment: InputError with its message."""
        self._result(self.handle.validate.remote(encode_item(item)))

    def __call__(self, items: list[dict], **params) -> list:
        return self._result(self.handle.remote([encode_item(item) for item in items], params))

    def _result(self, response):
        try:
            return response.result(timeout_s=self.timeout_s)
        except TimeoutError as e:
            raise ModelError(
                f"The model server for {self.info.name} did not answer within {self.timeout_s:g} s; please try again."
            ) from e
        except Exception as e:
            raise user_error(e, self.info.name) from e


def serve_remotely(handles: dict, timeout_s: float | None = TIMEOUT_S) -> None:
    """Run the named models through their handles from now on ({catalog name: DeploymentHandle}): mmdemo.pipeline
    returns pipelines whose backend is a RemoteBackend. A copy of the model already loaded here is unloaded."""
    from mmdemo.backends import REMOTE
    from mmdemo.pipelines import unload

    for name, handle in handles.items():
        REMOTE[name] = lambda info, device, handle=handle: RemoteBackend(info, handle, timeout_s)
        unload(name)


def serve_locally(names: list[str] | None = None) -> None:
    """Undo serve_remotely for the named models (None: all of them): they load in this process again."""
    from mmdemo.backends import REMOTE
    from mmdemo.pipelines import unload

    for name in list(REMOTE) if names is None else names:
        if REMOTE.pop(name, None) is not None:
            unload(name)
