"""The pipeline layer: one pipeline per task, the only way the UI, the CLI and the tests run models.

    p = pipeline("visual-question-answering")        # the task's default model
    p(image, "what color is the shape?")             # -> [{"answer": "red", "score": 0.99}, ...]
    p([im1, im2], ["what shape?", "is it red?"])     # -> one result list per input, batched

Each call checks its inputs (InputError), batches them through a backend, and returns plain Python.
"""

import numbers
import os
import threading
from contextlib import contextmanager

from mmdemo import metrics
from mmdemo.audio import MAX_SECONDS, SAMPLE_RATE, load_audio
from mmdemo.backends import Backend, load_backend
from mmdemo.batching import MAX_BATCH, MicroBatcher
from mmdemo.cache import ModelCache, free_memory
from mmdemo.errors import InputError, ModelError
from mmdemo.inputs import clean_question, load_image
from mmdemo.registry import TASKS, ModelInfo, find_model

_models = ModelCache()  # (name, path, device) -> backend
MAX_STREAMS = int(os.environ.get("MMDEMO_MAX_STREAMS", "2"))  # streamed generations running at once
_streams = threading.BoundedSemaphore(MAX_STREAMS)


class Pipeline:
    task: str
    batch_size = MAX_BATCH  # inputs per backend call (MMDEMO_MAX_BATCH; larger on a GPU)

    def __init__(self, info: ModelInfo, backend: Backend):
        self.info, self.backend = info, backend

    @property
    def streams(self) -> bool:
        """Whether `stream()` gives the text as it is generated (else it gives the whole text once)."""
        return hasattr(self.backend, "stream")

    def _stream(self, item: dict, whole, **options):
        """One item's text so far after each piece the backend generates, or `whole()` once when it cannot
        stream. Closing the iterator stops the model. Streams are not batched: at most MAX_STREAMS generate at
        once, the others wait their turn."""
        self.backend.validate(item)
        if not self.streams:
            yield whole()
            return
        with _streams, metrics.STREAMS_ACTIVE.track_inprogress():
            empty = True
            for text in self.backend.stream(item, **options):
                empty = False
                yield text
            if empty:  # nothing generated (no speech heard, say): still one result
                yield ""

    def run(self, items: list, load=None, **params) -> list:
        """Check every item (before any model call), then run them in batches (timed, failures counted: metrics).
        With `load`, items are raw and `load(item)` decodes and checks each one."""
        with metrics.pipeline_call(self.task, self.info.name):
            return self._run(items, load, **params)

    def _ready(self, item: dict) -> dict:
        """A decoded item checked for the backend and prepared (resized, normalised) for its model."""
        self.backend.validate(item)
        return self.backend.prepare(item) if hasattr(self.backend, "prepare") else item

    def _run(self, items: list, load, **params) -> list:
        batcher = batcher_of(self.backend, self.batch_size)
        if load is not None and len(items) == 1 and isinstance(batcher, MicroBatcher) and _small(items[0]):
            # a caller's one small input is decoded by the batcher's worker, with the other callers' inputs, just
            # before their model call: many callers decoding at once would contend with the model for the GIL and
            # cost more in thread switches than the decoding itself (VQA from 32 threads: 1,100 -> 1,800/s). Large
            # inputs (photos) are decoded by their callers, in parallel: decoders release the GIL.
            return self._guarded(lambda: batcher(items, prepare=lambda raw: [self._ready(load(raw[0]))], **params))
        ready = []
        for n, item in enumerate(items):
            with _position(n, len(items)):
                ready.append(self._ready(load(item) if load else item))
        out = []
        for start in range(0, len(ready), self.batch_size):
            out += self._guarded(lambda chunk=ready[start : start + self.batch_size]: batcher(chunk, **params))
        return out

    def _guarded(self, call):
        """call(), with running out of memory said as a ModelError a user can act on."""
        try:
            return call()
        except Exception as e:
            if not _out_of_memory(e):
                raise
            free_memory()
            raise ModelError(
                f"{self.info.name} ran out of memory on this input. Try a smaller image or clip, fewer "
                "inputs at once, or a smaller model."
            ) from e


SMALL_INPUT_BYTES = 256 * 1024  # a file of at most this size, or as many bytes of samples or pixels, is "small"


def _small(item: dict) -> bool:
    """Whether the raw input of `item` (a file path, bytes, a PIL image or an array) is small enough to decode in the
    batcher's worker."""
    value = item.get("image", item.get("audio"))
    if isinstance(value, (str, os.PathLike)):
        try:
            return os.path.getsize(value) <= SMALL_INPUT_BYTES
        except OSError:
            return True  # the worker says why it cannot be read, as the caller would
    if isinstance(value, (bytes, bytearray)):
        return len(value) <= SMALL_INPUT_BYTES
    if hasattr(value, "width") and hasattr(value, "height"):  # a PIL image
        return value.width * value.height * 3 <= SMALL_INPUT_BYTES
    return getattr(value, "nbytes", SMALL_INPUT_BYTES + 1) <= SMALL_INPUT_BYTES


_batchers_lock = threading.Lock()


def batcher_of(backend: Backend, max_batch: int) -> MicroBatcher:
    """The backend's micro-batcher (made on first use): concurrent calls share its model calls. A backend that batches
    concurrent calls itself (a model server's, `batches_calls = True`) is called directly, many calls at once."""
    if getattr(backend, "batches_calls", False):
        return backend
    with _batchers_lock:
        if "_batcher" not in vars(backend):
            name = getattr(getattr(backend, "info", None), "name", "other")
            backend._batcher = MicroBatcher(backend, max_batch=max_batch, name=name)
        return backend._batcher


def _out_of_memory(e: Exception) -> bool:
    return isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or "out of memory" in str(e).lower()


@contextmanager
def _position(n: int, total: int):
    """Name the bad input's position in an InputError when there are several."""
    try:
        yield
    except InputError as e:
        raise InputError(f"Input {n + 1}: {e}" if total > 1 else str(e)) from None


def _as_list(x) -> tuple[list, bool]:
    return (list(x), False) if isinstance(x, (list, tuple)) else ([x], True)


def _top_k(top_k) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InputError(f"top_k must be a whole number of at least 1, got {top_k!r}.")
    return top_k


class VisualQuestionAnsweringPipeline(Pipeline):
    task = "visual-question-answering"

    def __call__(self, image, question=None, top_k: int = 5):
        """One image and question, or lists of them (one question may serve every image)."""
        top_k = _top_k(top_k)
        images, single = _as_list(image)
        questions = list(question) if isinstance(question, (list, tuple)) else [question] * len(images)
        if len(questions) != len(images):
            raise InputError(f"Got {len(images)} images but {len(questions)} questions.")
        if not images:
            return []
        items = []
        for n, (im, q) in enumerate(zip(images, questions, strict=True)):
            with _position(n, len(images)):  # text is checked here, at once; images are decoded by `run`
                items.append({"image": im, "question": clean_question(q)})
        results = self.run(items, load=_load_image_item, top_k=top_k)
        return results[0] if single else results

    def stream(self, image, question, max_new_tokens: int = 30):
        """One image's answer as it is generated, the text so far after each new piece (generative models such
        as chat VLMs; others give their best answer once). Closing the iterator stops the model."""
        _check_count("max_new_tokens", max_new_tokens)
        item = {"image": load_image(image), "question": clean_question(question)}
        yield from self._stream(item, lambda: self.run([item], top_k=1)[0][0]["answer"], max_new_tokens=max_new_tokens)


def _image_items(image) -> tuple[list[dict], bool]:
    """Raw items, for Pipeline.run(items, load=_load_image_item), and whether one image was given."""
    images, single = _as_list(image)
    return [{"image": im} for im in images], single


def _load_image_item(item: dict) -> dict:
    return {**item, "image": load_image(item["image"])}


class ImageClassificationPipeline(Pipeline):
    task = "image-classification"

    def __call__(self, image, top_k: int = 5):
        """An image or a list of them -> [{"label", "score"}, ...] best first (a list of those for a list)."""
        top_k = _top_k(top_k)
        items, single = _image_items(image)
        results = self.run(items, load=_load_image_item, top_k=top_k) if items else []
        return results[0] if single else results


MAX_LABELS = 100  # candidate labels per zero-shot call
MAX_LABEL_CHARS = 100  # per label: a few words, well inside the text encoders' 64-77 tokens


def _candidate_labels(labels) -> list[str]:
    """1..MAX_LABELS distinct non-empty strings (whitespace trimmed), or InputError."""
    if isinstance(labels, str):
        labels = [labels]
    if not isinstance(labels, (list, tuple)) or not labels:
        raise InputError("Please give at least one candidate label.")
    if len(labels) > MAX_LABELS:
        raise InputError(f"Please give at most {MAX_LABELS} candidate labels, not {len(labels)}.")
    if not all(isinstance(label, str) for label in labels):
        raise InputError("Candidate labels must be text.")
    cleaned = [label.strip() for label in labels]
    if not all(cleaned):
        raise InputError("Candidate labels must not be empty.")
    if any(len(label) > MAX_LABEL_CHARS for label in cleaned):
        raise InputError(f"Each candidate label must be at most {MAX_LABEL_CHARS} characters long.")
    if len(set(cleaned)) != len(cleaned):
        raise InputError("Candidate labels must all be different.")
    return cleaned


class ZeroShotImageClassificationPipeline(Pipeline):
    task = "zero-shot-image-classification"

    def __call__(self, image, candidate_labels=None, top_k: int | None = None):
        """An image or a list of them, scored against the labels -> [{"label", "score"}, ...] best first
        (top_k of them; None: every label), a list of those for a list."""
        labels = _candidate_labels(candidate_labels)
        top_k = None if top_k is None else _top_k(top_k)
        items, single = _image_items(image)
        results = self.run(items, load=_load_image_item, candidate_labels=labels, top_k=top_k) if items else []
        return results[0] if single else results


class ImageToTextPipeline(Pipeline):
    task = "image-to-text"

    def __call__(self, image, num_beams: int = 3, max_new_tokens: int = 30):
        """An image or a list of them -> [{"generated_text": str}] (a list of those for a list)."""
        _check_count("num_beams", num_beams)
        _check_count("max_new_tokens", max_new_tokens)
        items, single = _image_items(image)
        options = {"num_beams": num_beams, "max_new_tokens": max_new_tokens}
        results = self.run(items, load=_load_image_item, **options) if items else []
        return results[0] if single else results

    def stream(self, image, max_new_tokens: int = 30):
        """One image's greedy caption as it is generated: the text so far, after each new piece.
        Closing the iterator stops the model. Backends that cannot stream give the whole caption once."""
        _check_count("max_new_tokens", max_new_tokens)
        items, single = _image_items(image)
        if not single:
            raise InputError("stream takes one image; call the pipeline for a list.")
        item = _load_image_item(items[0])
        yield from self._stream(
            item,
            lambda: self.run([item], num_beams=1, max_new_tokens=max_new_tokens)[0][0]["generated_text"],
            max_new_tokens=max_new_tokens,
        )


def _check_count(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise InputError(f"{name} must be a whole number from 1 to 100, got {value!r}.")


class AudioClassificationPipeline(Pipeline):
    task = "audio-classification"
    batch_size = 32
    sampling_rate = SAMPLE_RATE  # every clip is decoded and resampled to this (the runner adapts it further)
    max_seconds = MAX_SECONDS  # longer clips are refused (from a file's header, before decoding)

    def __call__(self, audio, top_k: int = 5):
        """A clip (file, (rate, array) or {"array", "sampling_rate"}) or a list of them -> [{"label", "score"}, ...]."""
        top_k = _top_k(top_k)
        clips, single = _audio_list(audio)
        items = [{"audio": clip} for clip in clips]
        results = self.run(items, load=self._load_clip, top_k=top_k) if items else []
        return results[0] if single else results

    def _load_clip(self, item: dict) -> dict:
        samples = load_audio(item["audio"], self.sampling_rate, self.max_seconds)
        return {"audio": samples, "sampling_rate": self.sampling_rate}


def _audio_list(audio) -> tuple[list, bool]:
    """A (rate, array) pair is one clip (Gradio's format); another list or tuple holds several."""
    if isinstance(audio, tuple) and len(audio) == 2 and isinstance(audio[0], numbers.Real):
        return [audio], True
    return _as_list(audio)


class AutomaticSpeechRecognitionPipeline(Pipeline):
    task = "automatic-speech-recognition"
    batch_size = 8
    sampling_rate = SAMPLE_RATE  # Whisper reads 16 kHz
    max_seconds = 30.0  # one Whisper window: plenty for a spoken question, refused from a file's header beyond

    def __call__(self, audio):
        """A clip (file, (rate, array) or {"array", "sampling_rate"}) or a list of them -> {"text": str} each."""
        clips, single = _audio_list(audio)
        items = []
        for n, clip in enumerate(clips):
            with _position(n, len(clips)):
                items.append({"audio": load_audio(clip, self.sampling_rate, self.max_seconds)})
        results = self.run(items) if items else []
        return results[0] if single else results

    def stream(self, audio):
        """One clip's transcript as it is decoded, the text so far after each new piece (a token or a segment).
        Closing the iterator stops the model."""
        clips, single = _audio_list(audio)
        if not single:
            raise InputError("stream takes one clip; call the pipeline for a list.")
        item = {"audio": load_audio(clips[0], self.sampling_rate, self.max_seconds)}
        yield from self._stream(item, lambda: self.run([item])[0]["text"])


PIPELINES = {
    p.task: p
    for p in (
        VisualQuestionAnsweringPipeline,
        ImageClassificationPipeline,
        ZeroShotImageClassificationPipeline,
        ImageToTextPipeline,
        AudioClassificationPipeline,
        AutomaticSpeechRecognitionPipeline,
    )
}


def pipeline(task: str, model: str | None = None, device: str | None = None) -> Pipeline:
    """The pipeline for `task` running `model` (a catalog name or checkpoint folder; None: the default)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks are: {', '.join(TASKS)}")
    if task not in PIPELINES:
        raise ValueError(f"no model serves {task!r} yet; tasks with models: {', '.join(PIPELINES)}")
    if model is not None and not isinstance(model, str):
        raise ValueError(f"model must be a name (or a checkpoint folder), not {type(model).__name__}")
    info = find_model(task, model)
    try:
        backend = _models.get((info.name, str(info.path), device), lambda: load_backend(info, device))
    except (InputError, ModelError):
        raise
    except Exception as e:  # our own plain ValueErrors say what to do (fetch it, install this); others do not
        why = f": {e}" if type(e) is ValueError else "; the server log has the cause"
        raise ModelError(f"The model {info.name} could not be loaded{why}") from e
    return PIPELINES[task](info, backend)


def unload(model: str | None = None) -> list[str]:
    """Free a loaded model (by name), or every loaded model; returns the names unloaded."""
    return _models.unload(model)
