"""The Gradio web UI. The only module of mmdemo that imports gradio; it runs models only through
`mmdemo.pipeline` and never imports torch."""

import hmac
import html
import importlib.abc
import importlib.machinery
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path


class _NoStubRewrite(importlib.abc.MetaPathFinder):
    """Importing gradio 6 re-derives the type stub (.pyi) of each of its ~80 component classes from their parsed
    source (gradio.component_meta.create_or_modify_pyi): about 1 s of the 3 s import, for files only editors read, and
    a write into site-packages where they differ. This finder makes that function a no-op as its module loads."""

    def find_spec(self, name, path, target=None):
        if name != "gradio.component_meta":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_without_stubs(module):
            exec_module(module)
            module.create_or_modify_pyi = lambda *args, **kwargs: None

        spec.loader.exec_module = exec_without_stubs
        return spec


if "gradio" not in sys.modules:
    sys.meta_path.insert(0, _NoStubRewrite())

import gradio as gr
from fastapi import Request
from gradio.route_utils import FnIndexInferError

import mmdemo
from mmdemo import api, feedback, metrics
from mmdemo.cache import keep_freed_memory
from mmdemo.errors import StoreError
from mmdemo.feedback.recent import RecentResults
from mmdemo.inputs import MAX_QUESTION_CHARS
from mmdemo.registry import ASSETS, TASKS, find_model, list_models, revision_of
from mmdemo.zerogpu import gpu

log = logging.getLogger("mmdemo.ui")
VQA, CAPTION = "visual-question-answering", "image-to-text"
CLASSIFY, LISTEN = "image-classification", "audio-classification"
ASR, ZERO_SHOT = "automatic-speech-recognition", "zero-shot-image-classification"
EXAMPLES = ASSETS / "examples"
# a shared demo's limits; each can be set in the environment for other hardware or for local use
# requests handed to the models at once: the pipeline batches them together (mmdemo.batching); others queue
MODEL_CONCURRENCY = int(os.environ.get("MMDEMO_CONCURRENCY", "32"))
QUEUE_SIZE = int(os.environ.get("MMDEMO_QUEUE_SIZE", "64"))  # requests waiting beyond this get a "queue full" message
MAX_FILE_SIZE = os.environ.get("MMDEMO_MAX_FILE_SIZE", "10mb")  # per uploaded file: larger ones get HTTP 413
DELETE_CACHE = (1800, 3 * 3600)  # every 30 min, delete uploads and outputs older than 3 h (feedback reads them)
# Gradio summarises up to 10,000 past events with pandas after every event, for its /monitoring page (off here): a
# cost that grew to most of a request's CPU under load. Once in a million events, over the last 100, is plenty.
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000000")
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "100")
GPU_SECONDS = 90  # on a ZeroGPU Space, the GPU time asked for per call (hub models may load and generate a while)
DOWNLOADS = gr.Progress(track_tqdm=True)  # a hub model's first use shows its download progress (a tracker per call)


@contextmanager
def user_errors(task: str, model: str | None, failure: str = "The model failed on this input"):
    """One request: every failure inside becomes a gr.Error a user can read (unexpected ones logged with their cause
    and a request id), and one log line records task, model, latency and outcome."""
    request, start, outcome = uuid.uuid4().hex[:8], time.perf_counter(), "ok"
    try:
        yield
    except ValueError as e:  # bad input, unknown model: meant for users
        outcome = "rejected"
        raise gr.Error(str(e), title="Please check the input") from None
    except (mmdemo.ModelError, StoreError) as e:  # out of memory, a model that won't load, a full database: said
        outcome = "failed"
        log.warning("request %s: %s with %s: %s", request, task, model, e, exc_info=e.__cause__ is not None)
        raise gr.Error(f"{e} (request {request})", title="Please try again") from None
    except GeneratorExit:  # the user pressed Stop: the stream was closed
        outcome = "stopped"
        raise
    except Exception:
        outcome = "error"
        log.exception("request %s: %s with %s failed", request, task, model)
        raise gr.Error(f"{failure} (request {request}). Please try again.") from None
    finally:
        api.log_request(request, task, model, start, outcome)


# --- feedback: what each session was shown is kept here, server-side; testers rate it by its tab ("slot") ---
RECENT = RecentResults()
PASSWORD_ENV = "MMDEMO_FEEDBACK_PASSWORD"  # the Feedback (review) tab opens with this password; unset: no tab
_store, _store_lock = None, threading.Lock()


def feedback_store():
    """The feedback store (env MMDEMO_FEEDBACK_DB: a SQLite path or a PostgreSQL URL), opened once."""
    global _store
    with _store_lock:
        if _store is None:
            _store = feedback.open_store()
        return _store


def _remember(request: gr.Request | None, slot: str, task: str, model: str | None, output, **details) -> None:
    """Keep what this session is now shown in `slot`, as produced here, for its feedback."""
    if request is None or not request.session_hash:  # called from Python, not through the app
        return
    info = find_model(task, model or None)
    RECENT.remember(
        request.session_hash,
        slot,
        {
            "task": task,
            "model": info.name,
            "revision": revision_of(info),
            "output": output,
            "app_version": mmdemo.__version__,
            **details,
        },
    )


def _forget(request: gr.Request | None, slot: str) -> None:
    """A new run has started in `slot`: until it finishes there is nothing there to rate."""
    if request is not None and request.session_hash:
        RECENT.forget(request.session_hash, slot)


RATINGS = {"👍": 1, "up": 1, "+1": 1, "1": 1, "👎": -1, "down": -1, "-1": -1}


def send_feedback(
    slot: str, rating: str | None, comment: str, correction: str, tester: str, request: gr.Request
) -> str:
    """Rate what this session was last shown in a tab: slot "ask", "caption", "classify", "listen" or
    "compare:MODEL"; rating "👍" or "👎" (or "up"/"down", or empty); an optional comment, corrected answer and
    tester name. Sending again for the same result updates its feedback (a changed vote, a retry)."""
    record = RECENT.get(request.session_hash, slot) if request is not None and request.session_hash else None
    if record is None:
        raise gr.Error("There is no finished result here to rate yet: run the model first.", title="Nothing to rate")
    if rating not in (None, "") and str(rating).strip() not in RATINGS:
        raise gr.Error("Rating must be 👍 or 👎.", title="Please check the feedback")
    media = record.pop("media", None)
    record.update(
        session=request.session_hash,
        rating=RATINGS.get(str(rating).strip()) if rating else None,
        comment=(comment or "").strip() or None,
        correction=(correction or "").strip() or None,
        tester=(tester or "").strip() or None,
    )
    with user_errors("feedback", record["model"], failure="Your feedback could not be saved"):
        row = feedback_store().submit(record, media=media if media and Path(media).is_file() else None)
    vote = {1: "👍", -1: "👎"}.get(row["rating"], "feedback")
    return f"Saved {vote} (#{row['id']}). Thank you!"


@gpu(duration=GPU_SECONDS)
def _predict(task: str, model: str | None, *args, **kwargs):
    """One pipeline call (on a ZeroGPU Space, in a worker that holds a GPU; elsewhere, right here)."""
    return mmdemo.pipeline(task, model=model or None)(*args, **kwargs)


@gpu(duration=GPU_SECONDS)
def _stream(task: str, model: str | None, *args, **kwargs):
    """A pipeline's stream (on a ZeroGPU Space, in a worker that holds a GPU)."""
    yield from mmdemo.pipeline(task, model=model or None).stream(*args, **kwargs)


def run_model(task: str, model: str | None, *args, **kwargs) -> tuple[object, float]:
    """Run one request through the pipeline: its result and latency (ms). Errors, logs and session records stay in
    this process (a ZeroGPU worker's memory is lost)."""
    start = time.perf_counter()
    with user_errors(task, model):
        result = _predict(task, model, *args, **kwargs)
    return result, (time.perf_counter() - start) * 1000


def undecoded(image: gr.Image) -> gr.Image:
    """Hand uploads to the pipeline as file paths, undecoded: mmdemo.inputs checks and decodes them, so a broken or
    non-image upload gets the same clear message as everywhere else (Gradio's own decode fails with an opaque
    error). Set on the instance: a gr.Image subclass would make Gradio write a .pyi file next to this module."""
    decode = image.preprocess
    image.preprocess = lambda payload: str(payload.path) if payload is not None and payload.path else decode(payload)
    return image


def _need(value, what: str) -> None:
    if not value:
        raise gr.Error(f"Please {what} first.", title="Nothing to work on")


def _info(headline: str, ms: float, task: str, model: str | None) -> str:
    """The result's headline (model output: shown as plain text, never as markup), latency and model."""
    name = (model or find_model(task, None).name).replace("`", "'")  # a catalog name, shown as code
    return f"**{_inert(headline)}** · {ms:.1f} ms · `{name}`"


def _inert(text: str) -> str:
    """Text that Markdown shows as it is: every markup character escaped, tags included."""
    text = html.escape(" ".join(str(text).split()), quote=False)  # <, > and & as entities: no tag survives
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|~])", r"\\\1", text)


def answer(image: str | None, question: str, model: str | None = None, request: gr.Request = None, progress=DOWNLOADS):
    """Ask a question about an image: the top-5 answers with their confidences (a generative model's answer
    streams in as it is written), and the latency."""
    _need(image, "upload an image")
    _forget(request, "ask")
    start = time.perf_counter()
    with user_errors(VQA, model):
        pipe = mmdemo.pipeline(VQA, model=model or None)
        if pipe.streams:
            text = ""
            for text in _stream(VQA, model, image, question):
                yield text, "writing…"
            _remember(request, "ask", VQA, model, [{"answer": text}], question=question, media=image, params={})
            yield text, _info(text, (time.perf_counter() - start) * 1000, VQA, model)
            return
        result = _predict(VQA, model, image, question, top_k=5)  # in the same block: one log line a request
    ms = (time.perf_counter() - start) * 1000
    _remember(request, "ask", VQA, model, result, question=question, media=image, params={"top_k": 5})
    yield {r["answer"]: r["score"] for r in result}, _info(result[0]["answer"], ms, VQA, model)


def caption(
    image: str | None, model: str | None = None, num_beams: int = 1, request: gr.Request = None, progress=DOWNLOADS
):
    """Describe an image: the caption (streamed as it is written when greedy) and the latency."""
    _need(image, "upload an image")
    _forget(request, "caption")
    params = {"num_beams": int(num_beams), "max_new_tokens": 30}
    # beam search finishes every beam before it knows the best: nothing to stream; our own captioners answer in
    # milliseconds: batched with other users' requests rather than streamed word by word
    if int(num_beams) > 1 or _bundled(CAPTION, model):
        result, ms = run_model(CAPTION, model, image, **params)
        _remember(request, "caption", CAPTION, model, result, media=image, params=params)
        yield result[0]["generated_text"], _info("caption", ms, CAPTION, model)
        return
    start, text = time.perf_counter(), ""
    with user_errors(CAPTION, model):
        for text in _stream(CAPTION, model, image):
            yield text, "writing…"
    _remember(request, "caption", CAPTION, model, [{"generated_text": text}], media=image, params=params)
    yield text, _info("caption", (time.perf_counter() - start) * 1000, CAPTION, model)


def _bundled(task: str, model: str | None) -> bool:
    """Whether `model` is one of the models that ship with the app (False when unknown: the pipeline says why)."""
    try:
        return find_model(task, model or None).offline
    except (ValueError, TypeError):
        return False


def classify_image(image: str | None, model: str | None = None, request: gr.Request = None, progress=DOWNLOADS):
    """Classify an image: the top-5 labels with their confidences, and the latency."""
    _need(image, "upload an image")
    _forget(request, "classify")
    result, ms = run_model(CLASSIFY, model, image, top_k=5)
    _remember(request, "classify", CLASSIFY, model, result, media=image, params={"top_k": 5})
    return {r["label"]: r["score"] for r in result}, _info(result[0]["label"], ms, CLASSIFY, model)


def classify_zero_shot(
    image: str | None, labels: str, model: str | None = None, request: gr.Request = None, progress=DOWNLOADS
):
    """Score an image against your own comma-separated labels: the top 5 and the latency."""
    _need(image, "upload an image")
    _forget(request, "classify")
    candidates = [label.strip() for label in (labels or "").split(",") if label.strip()]
    _need(candidates, "type the labels to choose from, separated by commas,")
    result, ms = run_model(ZERO_SHOT, model, image, candidate_labels=candidates, top_k=5)
    params = {"candidate_labels": candidates, "top_k": 5}
    _remember(request, "classify", ZERO_SHOT, model, result, media=image, params=params)
    return {r["label"]: r["score"] for r in result}, _info(result[0]["label"], ms, ZERO_SHOT, model)


def classify_audio(audio: str | None, model: str | None = None, request: gr.Request = None, progress=DOWNLOADS):
    """Classify a sound: the top-5 labels with their confidences, and the latency."""
    _need(audio, "record or upload a sound")
    _forget(request, "listen")
    result, ms = run_model(LISTEN, model, audio, top_k=5)
    _remember(request, "listen", LISTEN, model, result, media=audio, params={"top_k": 5})
    return {r["label"]: r["score"] for r in result}, _info(result[0]["label"], ms, LISTEN, model)


def transcribe(audio: str | None, model: str | None = None, progress=DOWNLOADS):
    """Speech to text: the transcript of a recorded or uploaded question, streamed as it is decoded."""
    _need(audio, "record or upload your question")
    with user_errors(ASR, model):
        yield from _stream(ASR, model, audio)


def _image_input() -> gr.Image:
    return undecoded(gr.Image(type="filepath", label="Image", sources=["upload", "clipboard"], height=260))


def _model_picker(task: str) -> gr.Dropdown:
    return gr.Dropdown([m.name for m in list_models(task)], value=find_model(task, None).name, label="Model")


def _wire(button: gr.Button, fn, inputs: list, outputs: list, api_name: str):
    return button.click(
        fn, inputs, outputs, api_name=api_name, concurrency_id="model", concurrency_limit=MODEL_CONCURRENCY
    )


def _examples(folder: str, key: str = "image") -> list[dict]:
    path = EXAMPLES / folder / "examples.json"
    items = json.loads(path.read_text()) if path.exists() else []
    return [{**it, key: str(EXAMPLES / folder / it[key])} for it in items]


def send_compare_feedback(
    model: str, rating: str | None, comment: str, correction: str, tester: str, request: gr.Request
) -> str:
    """Rate one compared model's result (see send_feedback)."""
    return send_feedback(f"compare:{model}", rating, comment, correction, tester, request)


def _feedback_box(slot: gr.Component, tester: gr.Textbox, clear_on: list, send=send_feedback) -> None:
    """👍/👎, an optional correction and comment for the result above, stored the moment a vote is clicked (and
    updated by Send). Cheap events: not queued, so feedback works while the model queue is full."""
    with gr.Accordion("Rate this result", open=True):
        with gr.Row():
            rating = gr.Radio([("👍 right", "👍"), ("👎 wrong", "👎")], label="Was it right?", scale=1)
            correction = gr.Textbox(label="What it should have been (optional)", scale=2, max_length=5_000)
        comment = gr.Textbox(label="Comment (optional)", max_length=5_000)
        with gr.Row():
            button = gr.Button("Send feedback", size="sm", scale=0)
            ack = gr.Markdown()
    inputs = [slot, rating, comment, correction, tester]
    rating.input(send, inputs, ack, queue=False, api_name=False)
    button.click(send, inputs, ack, queue=False, api_name=False)
    # a new run starts a new result: its form starts empty
    gr.on(clear_on, lambda: (None, "", "", ""), None, [rating, comment, correction, ack], queue=False, api_name=False)


def _ask_tab(tester: gr.Textbox) -> None:
    with gr.Row():
        with gr.Column():
            image = _image_input()
            question = gr.Textbox(
                label="Question", placeholder="what color is the shape?", max_length=MAX_QUESTION_CHARS, lines=1
            )
            spoken = _spoken_question() if list_models(ASR) else None
            model = _model_picker(VQA)
            with gr.Row():
                ask = gr.Button("Ask", variant="primary")
                stop = gr.Button("Stop", variant="stop")
        with gr.Column(elem_id="ask-result"):
            answers = gr.Label(num_top_classes=5, label="Answer (top 5)")
            info = gr.Markdown()
            heard = [spoken[0].stop_recording, spoken[0].upload] if spoken else []
            _feedback_box(gr.State("ask"), tester, [ask.click, question.submit, *heard])
    examples = [[e["image"], e["question"]] for e in _examples("easy-vqa")]
    gr.Examples(examples, inputs=[image, question], label="Examples: easy-VQA test images (MIT)", examples_per_page=6)
    events = [
        _wire(ask, answer, [image, question, model], [answers, info], "answer"),
        question.submit(
            answer,
            [image, question, model],
            [answers, info],
            api_name=False,
            concurrency_id="model",
            concurrency_limit=MODEL_CONCURRENCY,  # every event of the group: Gradio keeps the lowest limit it sees
        ),
    ]
    if spoken:
        audio, asr_model = spoken
        # the transcript lands in the question box, where it can be edited, and the answer follows
        heard = gr.on(
            [audio.stop_recording, audio.upload],
            transcribe,
            [audio, asr_model],
            [question],
            api_name="transcribe",
            concurrency_id="model",
            concurrency_limit=MODEL_CONCURRENCY,
        )
        events += [
            heard,
            heard.success(
                _answer_if_image,
                [image, question, model],
                [answers, info],
                api_name=False,
                concurrency_id="model",
                concurrency_limit=MODEL_CONCURRENCY,
            ),
        ]
    stop.click(None, cancels=events, api_name=False)  # closing a stream stops the model and frees its slot


def _spoken_question() -> tuple[gr.Audio, gr.Dropdown]:
    audio = gr.Audio(type="filepath", label="Or ask aloud", sources=["microphone", "upload"])
    with gr.Accordion("Speech recognition model", open=False):
        asr_model = _model_picker(ASR)
    return audio, asr_model


def _answer_if_image(image: str | None, question: str, model: str | None = None):
    """After a transcript: answer when there is an image to answer about, else leave the outputs as they are."""
    if image:
        yield from answer(image, question, model)
    else:
        yield gr.skip(), gr.skip()


def _caption_tab(tester: gr.Textbox) -> None:
    with gr.Row():
        with gr.Column():
            image = _image_input()
            model = _model_picker(CAPTION)
            beams = gr.Slider(1, 5, value=1, step=1, label="Beam width (1: greedy, streamed)")
            with gr.Row():
                go = gr.Button("Caption", variant="primary")
                stop = gr.Button("Stop", variant="stop")
        with gr.Column():
            text = gr.Textbox(label="Caption", interactive=False, lines=3)
            info = gr.Markdown()
            _feedback_box(gr.State("caption"), tester, [go.click])
    examples = [[e["image"]] for e in _examples("scenes")] + [[e["image"]] for e in _examples("easy-vqa")[:4]]
    gr.Examples(examples, inputs=[image], label="Examples: generated scenes and easy-VQA images", examples_per_page=6)
    event = _wire(go, caption, [image, model, beams], [text, info], "caption")
    stop.click(None, cancels=[event], api_name=False)  # closing the stream stops the model and frees its slot


def _classify_tab(tester: gr.Textbox) -> None:
    with gr.Row():
        with gr.Column():
            image = _image_input()
            model = _model_picker(CLASSIFY)
            go = gr.Button("Classify", variant="primary")
            runs = [go.click]
            if list_models(ZERO_SHOT):
                with gr.Accordion("Or classify with your own labels (zero-shot, CLIP/SigLIP from the hub)", open=False):
                    candidates = gr.Textbox(label="Labels, comma-separated", placeholder="a cat, a dog, a coffee")
                    zero_model = _model_picker(ZERO_SHOT)
                    zero_go = gr.Button("Classify with these labels")
                runs.append(zero_go.click)
        with gr.Column():
            labels = gr.Label(num_top_classes=5, label="Labels (top 5)")
            info = gr.Markdown()
            _feedback_box(gr.State("classify"), tester, runs)
    one_shape = [
        [e["image"]]
        for e in _examples("scenes")
        if e["captions"][0].startswith("a ") and " of " not in e["captions"][0]
    ]
    examples = [[e["image"]] for e in _examples("photos")] + one_shape
    gr.Examples(examples, inputs=[image], label="Examples: photos and one-shape scenes", examples_per_page=6)
    _wire(go, classify_image, [image, model], [labels, info], "classify_image")
    if list_models(ZERO_SHOT):
        _wire(zero_go, classify_zero_shot, [image, candidates, zero_model], [labels, info], "classify_zero_shot")


def _listen_tab(tester: gr.Textbox) -> None:
    with gr.Row():
        with gr.Column():
            audio = gr.Audio(type="filepath", label="Sound", sources=["upload", "microphone"])
            model = _model_picker(LISTEN)
            go = gr.Button("Classify sound", variant="primary")
        with gr.Column():
            labels = gr.Label(num_top_classes=5, label="Labels (top 5)")
            info = gr.Markdown()
            _feedback_box(gr.State("listen"), tester, [go.click])
    examples = [[e["audio"]] for e in _examples("sounds", key="audio")]
    gr.Examples(examples, inputs=[audio], label="Examples: generated sounds", examples_per_page=8)
    _wire(go, classify_audio, [audio, model], [labels, info], "classify_audio")


COMPARABLE = (VQA, CAPTION, CLASSIFY)
MAX_COMPARED = 4


def _summary(task: str, result) -> str:
    """One line of a model's output, as plain text."""
    if task == CAPTION:
        return result[0]["generated_text"]
    key = "answer" if task == VQA else "label"
    return ", ".join(f"{r[key]} ({r['score']:.2f})" if r.get("score") is not None else r[key] for r in result[:3])


def compare(
    task: str, image: str | None, question: str, models: list[str], request: gr.Request = None, progress=DOWNLOADS
):
    """Run 2–4 models on the same input: a row per model with its output and latency (ms)."""
    if task not in COMPARABLE:
        raise gr.Error(f"Compare works for {', '.join(COMPARABLE)}.")
    _need(image, "upload an image")
    if not 2 <= len(models or []) <= MAX_COMPARED:
        raise gr.Error(f"Pick 2 to {MAX_COMPARED} models to compare.", title="Compare")
    known = [m.name for m in list_models(task)]
    unknown = next((m for m in models if not isinstance(m, str) or m not in known), None)
    if unknown is not None:  # catalog names only: a folder path would load any checkpoint on the server
        raise gr.Error(f"Unknown model {str(unknown)[:100]!r}; pick from: {', '.join(known)}.", title="Compare")
    rows = []
    for name in models:
        args = (image, question) if task == VQA else (image,)
        _forget(request, f"compare:{name}")
        try:
            result, ms = run_model(task, name, *args)
            rows.append([name, _summary(task, result), round(ms, 1)])
            details = {"question": question} if task == VQA else {}
            _remember(request, f"compare:{name}", task, name, result, media=image, params={}, **details)
        except gr.Error as e:  # one model failing does not hide the others' results
            rows.append([name, f"error: {e.message}", None])
    return rows


def _compare_tab(tester: gr.Textbox) -> None:
    names = {task: [m.name for m in list_models(task)] for task in COMPARABLE}
    with gr.Row():
        with gr.Column():
            task = gr.Radio(list(COMPARABLE), value=VQA, label="Task")
            image = _image_input()
            question = gr.Textbox(label="Question (visual-question-answering)", max_length=MAX_QUESTION_CHARS)
            models = gr.Dropdown(  # custom values: API callers may compare any model of the task
                names[VQA],
                value=names[VQA][:2],
                multiselect=True,
                max_choices=MAX_COMPARED,
                allow_custom_value=True,
                label=f"Models (2–{MAX_COMPARED})",
            )
            go = gr.Button("Compare", variant="primary")
        with gr.Column():
            table = gr.Dataframe(headers=["model", "output", "latency (ms)"], label="Side by side", interactive=False)
            which = gr.Dropdown(names[VQA][:2], value=names[VQA][0], label="Rate the result of")
            _feedback_box(which, tester, [go.click], send=send_compare_feedback)
    task.change(lambda t: gr.Dropdown(choices=names[t], value=names[t][:2]), task, models, api_name=False)
    models.change(lambda m: gr.Dropdown(choices=m, value=(m or [None])[0]), models, which, api_name=False)
    _wire(go, compare, [task, image, question, models], [table], "compare")


TABS = {  # tab title -> (task, builder); a tab shows when its task has a model
    "Ask": (VQA, _ask_tab),
    "Caption": (CAPTION, _caption_tab),
    "Classify": (CLASSIFY, _classify_tab),
    "Listen": (LISTEN, _listen_tab),
    "Compare": (VQA, _compare_tab),
}


@contextmanager
def _no_throwaway_apps():
    """Gradio builds a FastAPI app in gr.Blocks(), again at the end of its `with` block and again in queue(), and
    throws each away: launch() and gr.mount_gradio_app() build the app that serves. Each costs ~0.25 s of startup
    (FastAPI analyses ~170 routes), so while the demo is built and queued, building one is skipped."""
    create_app = vars(gr.routes.App)["create_app"]
    gr.routes.App.create_app = staticmethod(lambda *args, **kwargs: None)
    try:
        yield
    finally:
        gr.routes.App.create_app = create_app


def build_demo() -> gr.Blocks:
    with _no_throwaway_apps(), gr.Blocks(title="mmdemo: multimodal models", delete_cache=DELETE_CACHE) as demo:
        with gr.Row():
            gr.Markdown(
                "# mmdemo\nAsk about, caption and classify images, and classify sounds, with our own "
                "encoder–fusion–decoder models (trained offline on easy-VQA and generated scenes and sounds) "
                "and an ImageNet classifier. Rate any result with 👍/👎 below it.",
            )
            tester = gr.Textbox(label="Your name (optional, saved with your feedback)", max_length=100, scale=0)
        with gr.Tabs():
            for title, (task, build) in TABS.items():
                if list_models(task):
                    with gr.Tab(title, id=title.lower(), elem_id=f"tab-{title.lower()}"):
                        build(tester)
            if os.environ.get(PASSWORD_ENV):
                with gr.Tab("Feedback", id="feedback", elem_id="tab-feedback"):
                    _review_tab()
        gr.api(send_feedback, api_name="feedback", queue=False)  # /feedback for scripts: slot, rating, texts
    return demo


# --- the Feedback tab: reviewers see counts, 👍-rate, comments and corrections, and export them ---
REVIEW_ROWS = 50
RATING_FILTERS = {"any": None, "👍": 1, "👎": -1}
VOTES = (("👍", "up"), ("👎", "down"))


def _check_password(password: str) -> None:
    expected = os.environ.get(PASSWORD_ENV, "")
    if not expected or not hmac.compare_digest((password or "").encode(), expected.encode()):
        log.warning("feedback review: wrong password")
        time.sleep(1)  # slows guessing
        raise gr.Error("Wrong password.", title="Feedback review")


def _output_text(task: str, output) -> str:
    try:
        return _summary(task if task in TASKS else CLASSIFY, output)
    except (KeyError, IndexError, TypeError):
        return json.dumps(output)[:200]


def review(password: str, task: str, model: str, rating: str, with_text: bool):
    """The review: 👍-rate per task and model (table and chart), and the newest matching feedback with images."""
    import pandas as pd

    _check_password(password)
    store = feedback_store()
    summary = pd.DataFrame(store.summary(), columns=["task", "model", "n", "up", "down", "up_rate"])
    label = summary["task"].str.split("-").str[0] + " · " + summary["model"]
    chart = pd.concat(  # one bar per task and model, 👍 stacked on 👎
        [pd.DataFrame({"label": label, "rating": name, "count": summary[column]}) for name, column in VOTES]
    )
    rows = store.rows(
        task=task or None,
        model=(model or "").strip() or None,
        rating=RATING_FILTERS.get(rating),
        has_comment=True if with_text else None,
        limit=REVIEW_ROWS,
    )
    table = [
        [
            r["updated_at"][:19].replace("T", " "),  # UTC
            r["task"],
            r["model"],
            {1: "👍", -1: "👎"}.get(r["rating"], ""),
            r["question"] or "",
            _output_text(r["task"], r["output"]),
            r["correction"] or "",
            r["comment"] or "",
            r["tester"] or "",
        ]
        for r in rows
    ]
    return summary, chart, table, _gallery(store, rows)


def _gallery(store, rows: list[dict]) -> list[tuple]:
    """The images behind the rows shown, each with its correction or comment as caption."""
    import io

    from PIL import Image

    images = []
    for r in rows:
        if r["media_sha256"] and r["media_kind"] == "image":
            found = store.media(r["media_sha256"])
            if found:
                caption = r["correction"] or r["comment"] or _output_text(r["task"], r["output"])
                images.append((Image.open(io.BytesIO(found[1])), caption[:120]))
    return images


def review_export(password: str, fmt: str, task: str, model: str) -> str:
    """The feedback (with its media) as one download: a .zip of the export file and its media folder."""
    _check_password(password)
    out = Path(tempfile.mkdtemp(prefix="mmdemo-export-"))
    name = f"feedback.{fmt if fmt != 'datasets' else 'dataset'}"
    with user_errors("feedback export", None, failure="The export failed"):
        feedback.export(feedback_store(), out / "export" / name, fmt, task=task or None, model=model or None)
    return shutil.make_archive(str(out / "mmdemo-feedback"), "zip", out / "export")


def _review_tab() -> None:
    password = gr.Textbox(label="Password", type="password", max_length=200)
    with gr.Row():
        task = gr.Dropdown(["", *TASKS], value="", label="Task")
        model = gr.Textbox(label="Model (exact name)", max_length=300)
        rating = gr.Radio(list(RATING_FILTERS), value="any", label="Rating")
        with_text = gr.Checkbox(label="Only with a comment or correction")
    show = gr.Button("Show feedback", variant="primary")
    colors = {"👍": "#22a06b", "👎": "#e5484d"}
    chart = gr.BarPlot(x="label", y="count", color="rating", color_map=colors, title="Votes per task and model")
    summary = gr.Dataframe(label="Per task and model", interactive=False)
    table = gr.Dataframe(
        headers=["time", "task", "model", "rating", "question", "output", "correction", "comment", "tester"],
        label=f"Newest feedback (up to {REVIEW_ROWS})",
        interactive=False,
        wrap=True,
    )
    gallery = gr.Gallery(label="Their images", columns=8, height=170, object_fit="contain")
    with gr.Row():
        fmt = gr.Dropdown(list(feedback.FORMATS), value="csv", label="Export format")
        export = gr.Button("Export")
        download = gr.File(label="Download")
    filters = [task, model, rating, with_text]
    show.click(review, [password, *filters], [summary, chart, table, gallery], queue=False, api_name=False)
    export.click(review_export, [password, fmt, task, model], download, queue=False, api_name=False)


WARMED = threading.Event()  # set once every bundled default has been tried: the app is ready
LOAD_FAILURES: dict[str, str] = {}  # task -> why its default model could not load at start


WARM_UP = {  # task -> (examples folder, the input's key, the question's key or None)
    VQA: ("easy-vqa", "image", "question"),
    CAPTION: ("scenes", "image", None),
    CLASSIFY: ("photos", "image", None),
    LISTEN: ("sounds", "audio", None),
}


def _warm() -> None:
    """Load every task's bundled default once and run it on a bundled example, so that first users wait for
    neither (hub models load, and download, on first use). A default that fails to load is logged and named by
    /readyz; the rest still serve."""
    try:
        for task in dict.fromkeys(task for task, _ in TABS.values()):
            try:
                if list_models(task) and find_model(task, None).offline:
                    _warm_up(mmdemo.pipeline(task))
            except Exception as e:
                LOAD_FAILURES[task] = f"{type(e).__name__}: {e}"[:300]
                log.exception("could not load the default model of %s at start", task)
    finally:
        WARMED.set()


def _warm_up(pipe) -> None:
    """One request on the task's first bundled example: one-off costs (kernels chosen, memory allocated) are paid
    here. An example this model refuses (a custom catalog's model with other words) is no failure."""
    folder, key, question = WARM_UP.get(pipe.task, (None, None, None))
    examples = _examples(folder, key) if folder else []
    if examples:
        try:
            pipe(examples[0][key], *([examples[0][question]] if question else []))
        except mmdemo.InputError:
            log.info("the %s example does not suit %s: not warmed up", pipe.task, pipe.info.name)


def healthz() -> dict:
    """Liveness: the server answers."""
    return {"status": "ok"}


def readyz():
    """Readiness, for a load balancer: 200 once the default models are loaded and the feedback store opens; 503
    with the reason before that, or when something failed."""
    from fastapi.responses import JSONResponse

    problems = {} if WARMED.is_set() else {"models": "still loading"}
    problems.update({f"model {task}": why for task, why in LOAD_FAILURES.items()})
    try:
        feedback_store()
    except Exception as e:
        problems["feedback store"] = str(e)[:300]
    status = {"ready": not problems, "problems": problems}
    return JSONResponse(status, status_code=200 if not problems else 503)


def metrics_page(request: Request):
    """Prometheus metrics of this process (mmdemo.metrics), for a Prometheus server to scrape."""
    from fastapi.responses import Response

    body, content_type = metrics.render(request.headers.get("accept", ""))
    return Response(body, media_type=content_type)


def _queue_depth(demo: gr.Blocks) -> float:
    """Events waiting in Gradio's queue: len() of its Queue (private, but what its own status messages report)."""
    try:
        return len(demo._queue)
    except (AttributeError, RuntimeError):  # no queue; a concurrency group added while counting
        return float("nan")


def _routes() -> list:
    """Our own HTTP routes beside Gradio's (added first, so nothing of Gradio's shadows them)."""
    from fastapi.routing import APIRoute

    return [
        APIRoute("/healthz", healthz, methods=["GET"]),
        APIRoute("/readyz", readyz, methods=["GET"]),
        APIRoute("/metrics", metrics_page, methods=["GET"], include_in_schema=False),
        *api.routes(),
    ]


def _unknown_endpoint(request, exc):
    """/run or /call with a name no public endpoint has: 404, where Gradio answers 500 and logs a traceback."""
    from fastapi.responses import JSONResponse

    return JSONResponse({"detail": "No such API endpoint."}, status_code=404)


def _log_to_stderr() -> None:
    """mmdemo's log lines (one per request, and failures with their cause) on stderr, unless logging is set up."""
    root = logging.getLogger("mmdemo")
    if not root.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)


SERVER_SETTINGS = {  # a shared demo's settings, in launch() and mount() alike
    "enable_monitoring": False,
    "max_file_size": MAX_FILE_SIZE,
    "allowed_paths": [],
    "footer_links": ["api"],
    "show_error": True,  # gr.Error messages reach users; unexpected errors become our own gr.Error anyway
}


def _start(demo: gr.Blocks | None) -> gr.Blocks:
    """Log to stderr, load the default models in the background, and queue the demo's events."""
    _log_to_stderr()
    keep_freed_memory()
    threading.Thread(target=_warm, name="warm-models", daemon=True).start()
    demo = demo or build_demo()
    with _no_throwaway_apps():
        demo.queue(max_size=QUEUE_SIZE, api_open=False)
    metrics.QUEUE_DEPTH.set_function(lambda: _queue_depth(demo))
    return demo


def launch(demo: gr.Blocks | None = None, host: str = "127.0.0.1", port: int = 7860, **kwargs):
    """Load the default models, then serve with a shared demo's settings. kwargs go to `Blocks.launch` and override
    them (prevent_thread_lock=True in tests)."""
    demo = _start(demo)
    app_kwargs = kwargs.pop("app_kwargs", {})
    app_kwargs["routes"] = [*_routes(), *app_kwargs.get("routes", [])]
    app_kwargs.setdefault("exception_handlers", {}).setdefault(FnIndexInferError, _unknown_endpoint)
    settings = {"share": False, "strict_cors": True, **SERVER_SETTINGS}
    blocked = [*kwargs.pop("blocked_paths", []), *_feedback_paths()]
    return demo.launch(
        server_name=host, server_port=port, blocked_paths=blocked, app_kwargs=app_kwargs, **{**settings, **kwargs}
    )


def mount(app, demo: gr.Blocks | None = None, path: str = "/"):
    """Serve the demo inside an existing FastAPI `app` (the Ray Serve ingress, mmdemo.serving.ray_app) as launch()
    serves it: the same queue, concurrency, upload limit and blocked paths, /healthz and /readyz, the default models
    loading in the background. Returns the app, to serve with any ASGI server."""
    demo = _start(demo)
    for route in reversed(_routes()):  # first, so that nothing of Gradio's shadows them
        app.router.routes.insert(0, route)
    app_kwargs = {"exception_handlers": {FnIndexInferError: _unknown_endpoint}}
    blocked = _feedback_paths()
    return gr.mount_gradio_app(app, demo, path, blocked_paths=blocked, app_kwargs=app_kwargs, **SERVER_SETTINGS)


def _feedback_paths() -> list[str]:
    """Open the feedback store now (so a broken one shows in the log at start) and return its SQLite files, which are
    never served. A store that cannot open is logged; feedback is refused with a message until it can."""
    try:
        url = feedback_store().engine.url
    except Exception:
        log.exception("the feedback store could not be opened")
        return []
    if url.get_backend_name() != "sqlite":
        return []
    return [url.database + suffix for suffix in ("", "-wal", "-shm", "-journal")]
