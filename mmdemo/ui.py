"""The Gradio web UI. The only module of mmdemo that imports gradio; it runs models only through
`mmdemo.pipeline` and never imports torch."""

import json
import logging
import time
import uuid

import gradio as gr

import mmdemo
from mmdemo.inputs import MAX_QUESTION_CHARS
from mmdemo.registry import ASSETS, find_model, list_models

log = logging.getLogger("mmdemo.ui")
VQA = "visual-question-answering"
EXAMPLES = ASSETS / "examples" / "easy-vqa"
MODEL_CONCURRENCY = 2  # model calls running at once; the rest wait in the queue
QUEUE_SIZE = 64  # requests waiting beyond that are refused with a "queue full" message
MAX_FILE_SIZE = "10mb"


def run_model(task: str, model: str | None, *args, **kwargs) -> tuple[object, float]:
    """Run one request through the pipeline; every failure becomes a gr.Error a user can read."""
    start = time.perf_counter()
    try:
        result = mmdemo.pipeline(task, model=model or None)(*args, **kwargs)
    except ValueError as e:  # InputError, or an unknown model name: the message is meant for users
        raise gr.Error(str(e), title="Please check the input") from None
    except Exception:
        request = uuid.uuid4().hex[:8]
        log.exception("request %s: %s with %s failed", request, task, model)
        raise gr.Error(f"The model failed on this input (request {request}). Please try again.") from None
    return result, (time.perf_counter() - start) * 1000


def undecoded(image: gr.Image) -> gr.Image:
    """Hand uploads to the pipeline as file paths, undecoded: mmdemo.inputs checks and decodes them, so a broken or
    non-image upload gets the same clear message as everywhere else (Gradio's own decode fails with an opaque
    error). Set on the instance: a gr.Image subclass would make Gradio write a .pyi file next to this module."""
    decode = image.preprocess
    image.preprocess = lambda payload: str(payload.path) if payload is not None and payload.path else decode(payload)
    return image


def answer(image: str | None, question: str, model: str | None = None):
    """Ask a question about an image: the top-5 answers with their confidences, and the latency."""
    if not image:
        raise gr.Error("Please upload an image first.", title="No image")
    result, ms = run_model(VQA, model, image, question, top_k=5)
    name = model or find_model(VQA, None).name
    return {r["answer"]: r["score"] for r in result}, f"**{result[0]['answer']}** · {ms:.1f} ms · `{name}`"


def _examples() -> list[list[str]]:
    items = json.loads((EXAMPLES / "examples.json").read_text())
    return [[str(EXAMPLES / it["image"]), it["question"]] for it in items]


def _ask_tab() -> None:
    models = [m.name for m in list_models(VQA)]
    with gr.Row():
        with gr.Column():
            image = undecoded(gr.Image(type="filepath", label="Image", sources=["upload", "clipboard"], height=280))
            question = gr.Textbox(
                label="Question", placeholder="what color is the shape?", max_length=MAX_QUESTION_CHARS, lines=1
            )
            model = gr.Dropdown(models, value=find_model(VQA, None).name, label="Model")
            ask = gr.Button("Ask", variant="primary")
        with gr.Column():
            answers = gr.Label(num_top_classes=5, label="Answer (top 5)")
            info = gr.Markdown()
    gr.Examples(
        _examples(), inputs=[image, question], label="Examples: easy-VQA test images (MIT)", examples_per_page=6
    )
    events = dict(
        fn=answer,
        inputs=[image, question, model],
        outputs=[answers, info],
        concurrency_id="model",
        concurrency_limit=MODEL_CONCURRENCY,
    )
    ask.click(**events, api_name="answer")
    question.submit(**events, api_name=False)


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="mmdemo: multimodal models") as demo:
        gr.Markdown(
            "# mmdemo\nAsk questions about images with our own encoder–fusion–decoder model "
            "(a CNN, a GRU and FiLM-style gating fusion, trained on easy-VQA: one shape, eight colours)."
        )
        with gr.Tabs(), gr.Tab("Ask", id="ask"):
            _ask_tab()
    return demo


def launch(demo: gr.Blocks | None = None, host: str = "127.0.0.1", port: int = 7860, **kwargs):
    """Load the default model, then serve. kwargs go to `Blocks.launch` (prevent_thread_lock=True in tests)."""
    mmdemo.pipeline(VQA)  # load once at start, so the first user does not wait for it
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
