"""The REST API: JSON over plain HTTP beside the Gradio app, for programs (scripts, services, load balancers). Each
route calls the pipeline directly: a request costs about 2 ms of server CPU beyond the model on our 2-core machines
(through Gradio's queue and event stream, about 10 ms), and concurrent requests are batched together by the pipeline.

    curl -F image=@photo.png -F question="what color is the shape?" http://127.0.0.1:7860/api/v1/answer
    {"model": "mmdemo-vqa-easy", "result": [{"answer": "red", "score": ...}, ...], "ms": ...}

POST /api/v1/<route> takes multipart form data: the file (`image` or `audio`), the task's fields, and optionally
`model` (a catalog name; GET /api/v1/models lists them). Bad input gets HTTP 400 with {"error": message}, an upload
over the limit 413, a model that fails 503; the message is the one the UI shows. This module never imports gradio
or torch.
"""

import json
import logging
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

import mmdemo
from mmdemo import metrics
from mmdemo.errors import InputError, ModelError, StoreError
from mmdemo.registry import TASKS, list_models

log = logging.getLogger("mmdemo.api")
requests_log = logging.getLogger("mmdemo.requests")  # one JSON line per request: for log search and dashboards
PREFIX = "/api/v1"


@dataclass(frozen=True)
class Route:
    task: str
    file: str  # the form field that holds the upload
    text: tuple[str, ...] = ()  # required text fields, passed to the pipeline after the file, in order
    options: dict = field(default_factory=dict)  # optional fields -> their type (int, or list: comma-separated)


ROUTES = {
    "answer": Route("visual-question-answering", "image", ("question",), {"top_k": int}),
    "caption": Route("image-to-text", "image", options={"num_beams": int, "max_new_tokens": int}),
    "classify_image": Route("image-classification", "image", options={"top_k": int}),
    "classify_zero_shot": Route(
        "zero-shot-image-classification", "image", options={"candidate_labels": list, "top_k": int}
    ),
    "classify_audio": Route("audio-classification", "audio", options={"top_k": int}),
    "transcribe": Route("automatic-speech-recognition", "audio"),
}


def _upload_limit() -> int:
    """MMDEMO_MAX_FILE_SIZE ("10mb", as for the UI's uploads) in bytes."""
    text = os.environ.get("MMDEMO_MAX_FILE_SIZE", "10mb").strip().lower()
    for unit, size in (("gb", 1024**3), ("mb", 1024**2), ("kb", 1024), ("b", 1)):
        if text.endswith(unit):
            return int(float(text.removesuffix(unit)) * size)
    return int(text)


MAX_UPLOAD_BYTES = _upload_limit()  # read once, as the UI's limit is


def log_request(request: str, task: str, model: str | None, start: float, outcome: str) -> None:
    """The request's log line (JSON) and metrics: from the UI's requests and from this API's alike."""
    ms = round((time.perf_counter() - start) * 1000, 1)
    line = {"request": request, "task": task, "model": model or "default", "ms": ms, "outcome": outcome}
    requests_log.info(json.dumps(line))
    metrics.record_request(task, model, outcome, ms / 1000)


def _error(status: int, message: str):
    return JSONResponse({"error": message}, status_code=status)


async def _call(name: str, request):
    """One request of route `name`: the form read within the upload limit, the pipeline run in a worker thread."""
    route, start, request_id = ROUTES[name], time.perf_counter(), uuid.uuid4().hex[:8]
    limit, length = MAX_UPLOAD_BYTES, request.headers.get("content-length")
    if length is None or not length.isdigit():
        return _error(411, "Send the upload with a Content-Length (multipart/form-data).")
    if int(length) > limit + 64 * 1024:  # the form's other fields and boundaries: a few KB
        return _error(413, f"The upload is too large ({int(length) / 1024**2:.1f} MB); the limit is {limit:,} bytes.")
    try:
        async with request.form(max_files=1, max_fields=len(route.text) + len(route.options) + 1) as form:
            upload = form.get(route.file)
            if upload is None or isinstance(upload, str):
                return _error(400, f"Please send the {route.file} as a file in the {route.file!r} form field.")
            data = await upload.read(limit + 1)
            fields = {key: value for key, value in form.items() if isinstance(value, str)}
    except Exception as e:  # a body that is not multipart form data, or one with too many parts
        return _error(400, f"Please send multipart/form-data: {e}"[:300])
    if len(data) > limit:
        return _error(413, f"The {route.file} is too large; the limit is {limit:,} bytes.")
    model, outcome = fields.get("model") or None, "ok"
    try:
        result, info = await run_in_threadpool(_run, route, model, data, Path(upload.filename or "").suffix, fields)
        ms = round((time.perf_counter() - start) * 1000, 2)
        return JSONResponse({"model": info, "result": result, "ms": ms})  # plain JSON: no per-value encoding pass
    except (InputError, ValueError) as e:
        outcome = "rejected"
        return _error(400, str(e))
    except (ModelError, StoreError) as e:
        outcome = "failed"
        log.warning("request %s: %s with %s: %s", request_id, route.task, model, e, exc_info=e.__cause__ is not None)
        return _error(503, f"{e} (request {request_id})")
    except Exception:
        outcome = "error"
        log.exception("request %s: %s with %s failed", request_id, route.task, model)
        return _error(500, f"The model failed on this input (request {request_id}). Please try again.")
    finally:
        log_request(request_id, route.task, model, start, outcome)


def _run(route: Route, model: str | None, data: bytes, suffix: str, fields: dict) -> tuple[object, str]:
    """The pipeline's result for one upload (an image's bytes; a sound in a temporary file while it runs: every input
    check and decoder of the Python API applies) and the model's name."""
    names = [m.name for m in list_models(route.task)]
    if model is not None and model not in names:  # catalog names only: never a folder on the server
        raise InputError(f"Unknown model {model!r} for {route.task}; available: {', '.join(names) or 'none'}.")
    args = [_text(fields, name) for name in route.text]
    options = {name: _option(fields[name], kind, name) for name, kind in route.options.items() if fields.get(name)}
    pipe = mmdemo.pipeline(route.task, model)
    if route.file == "image":  # decoded from memory
        return pipe(data, *args, **options), pipe.info.name
    with tempfile.NamedTemporaryFile(suffix=suffix[:16] if suffix[1:].isalnum() else "") as f:
        f.write(data)  # audio decoders read files
        f.flush()
        return pipe(f.name, *args, **options), pipe.info.name


def _text(fields: dict, name: str) -> str:
    if not fields.get(name, "").strip():
        raise InputError(f"Please send the {name} in the {name!r} form field.")
    return fields[name]


def _option(value: str, kind, name: str):
    if kind is list:
        return [part.strip() for part in value.split(",") if part.strip()]
    try:
        return int(value)
    except ValueError:
        raise InputError(f"{name} must be a whole number, got {value!r}.") from None


def models_page(task: str | None = None):
    """GET /api/v1/models[?task=...]: the catalog's models (name, tasks, whether they work offline, default)."""
    if task is not None and task not in TASKS:
        return _error(400, f"Unknown task {task!r}; tasks are: {', '.join(TASKS)}.")
    return {
        "models": [
            {"name": m.name, "tasks": list(m.tasks), "offline": m.offline, "default_for": list(m.default_for)}
            for m in list_models(task)
        ]
    }


def routes() -> list:
    """The API's routes, to add to the app (mmdemo.ui adds them beside Gradio's)."""

    def endpoint(name: str):
        async def call(request: Request):
            return await _call(name, request)

        call.__name__ = name
        return call

    posts = [APIRoute(f"{PREFIX}/{name}", endpoint(name), methods=["POST"]) for name in ROUTES]
    return [*posts, APIRoute(f"{PREFIX}/models", models_page, methods=["GET"])]
