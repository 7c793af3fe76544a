"""The Gradio web UI. The only module of mmdemo that imports gradio; it runs models only through
`mmdemo.pipeline` and never imports torch."""

import json
import logging
import threading
import time
import uuid
from contextlib import contextmanager

import gradio as gr

import mmdemo
from mmdemo.inputs import MAX_QUESTION_CHARS
from mmdemo.registry import ASSETS, find_model, list_models

log = logging.getLogger("mmdemo.ui")
VQA, CAPTION = "visual-question-answering", "image-to-text"
CLASSIFY, LISTEN = "image-classification", "audio-classification"
ASR, ZERO_SHOT = "automatic-speech-recognition", "zero-shot-image-classification"
EXAMPLES = ASSETS / "examples"
MODEL_CONCURRENCY = 2  # model calls running at once; the rest wait in the queue
QUEUE_SIZE = 64  # requests waiting beyond that are refused with a "queue full" message
MAX_FILE_SIZE = "10mb"
DOWNLOADS = gr.Progress(track_tqdm=True)  # a hub model's first use shows its download progress (a tracker per call)


@contextmanager
def user_errors(task: str, model: str | None):
    """Every failure inside becomes a gr.Error a user can read; unexpected ones are logged with an id."""
    try:
        yield
    except (ValueError, mmdemo.ModelError) as e:  # bad input, unknown model, out of memory: meant for users
        raise gr.Error(str(e), title="Please check the input") from None
    except Exception:
        request = uuid.uuid4().hex[:8]
        log.exception("request %s: %s with %s failed", request, task, model)
        raise gr.Error(f"The model failed on this input (request {request}). Please try again.") from None


def run_model(task: str, model: str | None, *args, **kwargs) -> tuple[object, float]:
    """Run one request through the pipeline: its result and latency (ms)."""
    start = time.perf_counter()
    with user_errors(task, model):
        result = mmdemo.pipeline(task, model=model or None)(*args, **kwargs)
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
    return f"**{headline}** · {ms:.1f} ms · `{model or find_model(task, None).name}`"


def answer(image: str | None, question: str, model: str | None = None, progress=DOWNLOADS):
    """Ask a question about an image: the top-5 answers with their confidences (a generative model's answer
    streams in as it is written), and the latency."""
    _need(image, "upload an image")
    start = time.perf_counter()
    with user_errors(VQA, model):
        pipe = mmdemo.pipeline(VQA, model=model or None)
        if pipe.streams:
            text = ""
            for text in pipe.stream(image, question):
                yield text, "writing…"
            yield text, _info(text, (time.perf_counter() - start) * 1000, VQA, model)
            return
    result, ms = run_model(VQA, model, image, question, top_k=5)
    yield {r["answer"]: r["score"] for r in result}, _info(result[0]["answer"], ms, VQA, model)


def caption(image: str | None, model: str | None = None, num_beams: int = 1, progress=DOWNLOADS):
    """Describe an image: the caption (streamed as it is written when greedy) and the latency."""
    _need(image, "upload an image")
    if int(num_beams) > 1:  # beam search finishes every beam before it knows the best: nothing to stream
        result, ms = run_model(CAPTION, model, image, num_beams=int(num_beams))
        yield result[0]["generated_text"], _info("caption", ms, CAPTION, model)
        return
    start, text = time.perf_counter(), ""
    with user_errors(CAPTION, model):
        for text in mmdemo.pipeline(CAPTION, model=model or None).stream(image):
            yield text, "writing…"
    yield text, _info("caption", (time.perf_counter() - start) * 1000, CAPTION, model)


def classify_image(image: str | None, model: str | None = None, progress=DOWNLOADS):
    """Classify an image: the top-5 labels with their confidences, and the latency."""
    _need(image, "upload an image")
    result, ms = run_model(CLASSIFY, model, image, top_k=5)
    return {r["label"]: r["score"] for r in result}, _info(result[0]["label"], ms, CLASSIFY, model)


def classify_zero_shot(image: str | None, labels: str, model: str | None = None, progress=DOWNLOADS):
    """Score an image against your own comma-separated labels: the top 5 and the latency."""
    _need(image, "upload an image")
    candidates = [label.strip() for label in (labels or "").split(",") if label.strip()]
    _need(candidates, "type the labels to choose from, separated by commas,")
    result, ms = run_model(ZERO_SHOT, model, image, candidate_labels=candidates, top_k=5)
    return {r["label"]: r["score"] for r in result}, _info(result[0]["label"], ms, ZERO_SHOT, model)


def classify_audio(audio: str | None, model: str | None = None, progress=DOWNLOADS):
    """Classify a sound: the top-5 labels with their confidences, and the latency."""
    _need(audio, "record or upload a sound")
    result, ms = run_model(LISTEN, model, audio, top_k=5)
    return {r["label"]: r["score"] for r in result}, _info(result[0]["label"], ms, LISTEN, model)


def transcribe(audio: str | None, model: str | None = None, progress=DOWNLOADS):
    """Speech to text: the transcript of a recorded or uploaded question, streamed as it is decoded."""
    _need(audio, "record or upload your question")
    with user_errors(ASR, model):
        yield from mmdemo.pipeline(ASR, model=model or None).stream(audio)


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


def _ask_tab() -> None:
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
        with gr.Column():
            answers = gr.Label(num_top_classes=5, label="Answer (top 5)")
            info = gr.Markdown()
    examples = [[e["image"], e["question"]] for e in _examples("easy-vqa")]
    gr.Examples(examples, inputs=[image, question], label="Examples: easy-VQA test images (MIT)", examples_per_page=6)
    events = [
        _wire(ask, answer, [image, question, model], [answers, info], "answer"),
        question.submit(answer, [image, question, model], [answers, info], api_name=False, concurrency_id="model"),
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
        )
        events += [
            heard,
            heard.success(
                _answer_if_image, [image, question, model], [answers, info], api_name=False, concurrency_id="model"
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


def _caption_tab() -> None:
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
    examples = [[e["image"]] for e in _examples("scenes")] + [[e["image"]] for e in _examples("easy-vqa")[:4]]
    gr.Examples(examples, inputs=[image], label="Examples: generated scenes and easy-VQA images", examples_per_page=6)
    event = _wire(go, caption, [image, model, beams], [text, info], "caption")
    stop.click(None, cancels=[event], api_name=False)  # closing the stream stops the model and frees its slot


def _classify_tab() -> None:
    with gr.Row():
        with gr.Column():
            image = _image_input()
            model = _model_picker(CLASSIFY)
            go = gr.Button("Classify", variant="primary")
        with gr.Column():
            labels = gr.Label(num_top_classes=5, label="Labels (top 5)")
            info = gr.Markdown()
    one_shape = [
        [e["image"]]
        for e in _examples("scenes")
        if e["captions"][0].startswith("a ") and " of " not in e["captions"][0]
    ]
    examples = [[e["image"]] for e in _examples("photos")] + one_shape
    gr.Examples(examples, inputs=[image], label="Examples: photos and one-shape scenes", examples_per_page=6)
    _wire(go, classify_image, [image, model], [labels, info], "classify_image")
    if list_models(ZERO_SHOT):
        with gr.Accordion("Or classify with your own labels (zero-shot, CLIP/SigLIP from the hub)", open=False):
            candidates = gr.Textbox(label="Labels, comma-separated", placeholder="a cat, a dog, a cup of coffee")
            zero_model = _model_picker(ZERO_SHOT)
            zero_go = gr.Button("Classify with these labels")
        _wire(zero_go, classify_zero_shot, [image, candidates, zero_model], [labels, info], "classify_zero_shot")


def _listen_tab() -> None:
    with gr.Row():
        with gr.Column():
            audio = gr.Audio(type="filepath", label="Sound", sources=["upload", "microphone"])
            model = _model_picker(LISTEN)
            go = gr.Button("Classify sound", variant="primary")
        with gr.Column():
            labels = gr.Label(num_top_classes=5, label="Labels (top 5)")
            info = gr.Markdown()
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


def compare(task: str, image: str | None, question: str, models: list[str], progress=DOWNLOADS):
    """Run 2–4 models on the same input: a row per model with its output and latency (ms)."""
    if task not in COMPARABLE:
        raise gr.Error(f"Compare works for {', '.join(COMPARABLE)}.")
    _need(image, "upload an image")
    if not 2 <= len(models or []) <= MAX_COMPARED:
        raise gr.Error(f"Pick 2 to {MAX_COMPARED} models to compare.", title="Compare")
    rows = []
    for name in models:
        args = (image, question) if task == VQA else (image,)
        try:
            result, ms = run_model(task, name, *args)
            rows.append([name, _summary(task, result), round(ms, 1)])
        except gr.Error as e:  # one model failing does not hide the others' results
            rows.append([name, f"error: {e.message}", None])
    return rows


def _compare_tab() -> None:
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
    task.change(lambda t: gr.Dropdown(choices=names[t], value=names[t][:2]), task, models, api_name=False)
    _wire(go, compare, [task, image, question, models], [table], "compare")


TABS = {  # tab title -> (task, builder); a tab shows when its task has a model
    "Ask": (VQA, _ask_tab),
    "Caption": (CAPTION, _caption_tab),
    "Classify": (CLASSIFY, _classify_tab),
    "Listen": (LISTEN, _listen_tab),
    "Compare": (VQA, _compare_tab),
}


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="mmdemo: multimodal models") as demo:
        gr.Markdown(
            "# mmdemo\nAsk about, caption and classify images, and classify sounds, with our own "
            "encoder–fusion–decoder models (trained offline on easy-VQA and generated scenes and sounds) "
            "and an ImageNet classifier."
        )
        with gr.Tabs():
            for title, (task, build) in TABS.items():
                if list_models(task):
                    with gr.Tab(title, id=title.lower()):
                        build()
    return demo


def _warm() -> None:
    """Load every task's bundled default once, so that first users do not wait for it (hub models load,
    and download, on first use)."""
    for task, _ in TABS.values():
        try:
            if list_models(task) and find_model(task, None).offline:
                mmdemo.pipeline(task)
        except Exception:
            log.exception("could not load the default model of %s at start", task)


def launch(demo: gr.Blocks | None = None, host: str = "127.0.0.1", port: int = 7860, **kwargs):
    """Load the default model, then serve. kwargs go to `Blocks.launch` (prevent_thread_lock=True in tests)."""
    threading.Thread(target=_warm, name="warm-models", daemon=True).start()
    demo = demo or build_demo()
    demo.queue(max_size=QUEUE_SIZE, api_open=False)
    return demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        enable_monitoring=False,
        max_file_size=MAX_FILE_SIZE,
        footer_links=["api"],
        **kwargs,
    )
