"""The "openai" backend against a small OpenAI-compatible server started here on loopback (FastAPI + uvicorn).

The server's replies are made from what it receives: the size and dominant colour of the decoded image and the text
part, one word a token, so the results show that the image and the question arrived. It also misbehaves on purpose:
a model it does not serve (404), an engine error (500), a slow model, an empty answer, a key check, a stream that
breaks, and a stream that never ends (to see the client hang up).
"""

import asyncio
import base64
import io
import itertools
import json
import math
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from conftest import ROOT, assert_user_message, free_port
from PIL import Image

import mmdemo

SERVED = ["tiny-vlm", "broken-vlm", "slow-vlm", "empty-vlm", "private-vlm", "stream-error-vlm", "endless-vlm"]
KEY = "s3cret-key-123"
MAX_WIDTH = 1500  # wider images are refused, as a server with an image size limit does
LOGPROB = -0.1  # every token's log-probability
SLOW_S = 1.0
COLOURS = {"red": (255, 0, 0), "green": (0, 160, 0), "blue": (0, 0, 255), "white": (255, 255, 255)}
CAPTION_PROMPT = "Describe this image in one sentence."


def _error(status: int, message: str):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": "error", "code": status}}, status_code=status)


def _read_request(body: dict) -> tuple[Image.Image, str, str]:
    """(image, its mime type, text) of a request holding one user turn with one image part and one text part."""
    (message,) = body["messages"]
    parts = {part["type"]: part for part in message["content"]}
    assert message["role"] == "user" and set(parts) == {"image_url", "text"}, message
    head, data = parts["image_url"]["image_url"]["url"].split(",", 1)
    assert head.startswith("data:image/") and head.endswith(";base64"), head
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    return image, head[len("data:") : -len(";base64")], parts["text"]["text"]


def _describe(image: Image.Image, text: str) -> str:
    """The server's "model": what it saw and what it was told."""
    mean = np.asarray(image.convert("RGB"), np.float32).reshape(-1, 3).mean(0)
    colour = min(COLOURS, key=lambda c: float(np.square(mean - COLOURS[c]).sum()))
    return f"A {image.width}x{image.height} {colour} image. You said: {text}"


def _completion(model: str, words: list[str], logprobs: bool) -> dict:
    choice = {"index": 0, "message": {"role": "assistant", "content": " ".join(words)}, "finish_reason": "stop"}
    if logprobs:
        tokens = [{"token": w, "logprob": LOGPROB, "bytes": None, "top_logprobs": []} for w in words]
        choice["logprobs"] = {"content": tokens}
    return {"id": "cmpl-1", "object": "chat.completion", "created": 0, "model": model, "choices": [choice]}


def _chunk(model: str, content: str | None, finish: str | None = None) -> str:
    delta = {"content": content} if content is not None else {}
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    data = {"id": "cmpl-1", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [choice]}
    return f"data: {json.dumps(data)}\n\n"


def make_app(log: dict):
    """The server; `log` collects what it received ("requests": (model, image, mime, text)), the most requests it
    had in flight at once ("in_flight", "most"), and "hung_up" when a client closed a stream early."""
    from fastapi import FastAPI, Request
    from fastapi.responses import StreamingResponse

    app = FastAPI()

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "t"} for m in SERVED]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        model = body["model"]
        if model not in SERVED:
            return _error(404, f"The model `{model}` does not exist.")
        if model == "private-vlm" and request.headers.get("authorization") != f"Bearer {KEY}":
            key = request.headers.get("authorization", "").removeprefix("Bearer ")
            return _error(401, f"Invalid API key: {key}")  # as some servers do, it repeats the key
        if model == "broken-vlm":
            return _error(500, "EngineCore died unexpectedly")
        if model == "empty-vlm":
            return {"id": "cmpl-1", "object": "chat.completion", "created": 0, "model": model, "choices": []}
        image, mime, text = _read_request(body)
        assert body["temperature"] == 0
        log["requests"].append((model, image, mime, text))
        if image.width > MAX_WIDTH:
            return _error(400, f"Image too large: {image.width} px wide, at most {MAX_WIDTH}")
        log["in_flight"] += 1
        log["most"] = max(log["most"], log["in_flight"])
        try:
            await asyncio.sleep(SLOW_S if model == "slow-vlm" else 0.1)  # long enough for the batch to overlap
        finally:
            log["in_flight"] -= 1
        words = _describe(image, text).split()[: body["max_tokens"]]
        if body.get("stream"):
            return StreamingResponse(_stream(model, words, log), media_type="text/event-stream")
        return _completion(model, words, bool(body.get("logprobs")))

    return app


async def _stream(model: str, words: list[str], log: dict):
    """SSE chunks: a role, one word each (with its leading space, as tokens come), the end, [DONE]."""
    try:
        yield _chunk(model, "")
        for n in itertools.count():
            if model != "endless-vlm" and n == len(words):
                break
            if model == "stream-error-vlm" and n == 2:
                yield f"data: {json.dumps({'error': {'message': 'generation aborted: engine restarted'}})}\n\n"
                return
            yield _chunk(model, (" " if n else "") + words[n % len(words)])
            await asyncio.sleep(0.01 if model == "endless-vlm" else 0)
        yield _chunk(model, None, "stop")
        yield "data: [DONE]\n\n"
    except (asyncio.CancelledError, GeneratorExit):
        log["hung_up"] = True
        raise


class Server:
    """make_app's server on a loopback port, in a thread."""

    def __init__(self, port: int | None = None):
        import uvicorn

        self.port = port or free_port()
        self.log = {"requests": [], "in_flight": 0, "most": 0, "hung_up": False}
        self.more_models: list[str] = []  # catalog names the tests added
        config = uvicorn.Config(
            make_app(self.log), host="127.0.0.1", port=self.port, log_level="error", timeout_graceful_shutdown=1
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        end = time.time() + 10
        while not self.server.started:
            assert self.thread.is_alive() and time.time() < end, "the test server did not start"
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)


@pytest.fixture(scope="module")
def server():
    """The test server; models loaded from it stay loaded (as in the app) until the module's tests are done."""
    server = Server()
    yield server
    for name in [*ENTRIES, *server.more_models]:
        mmdemo.unload(name)
    server.stop()


ENTRIES = {  # catalog name -> (served model, more settings)
    "remote-vlm": ("tiny-vlm", ""),
    "remote-missing": ("no-such-vlm", ""),
    "remote-broken": ("broken-vlm", ""),
    "remote-slow": ("slow-vlm", "timeout = 0.3\nmax_retries = 0\n"),
    "remote-empty": ("empty-vlm", ""),
    "remote-private": ("private-vlm", 'api_key_env = "MMDEMO_TEST_SERVER_KEY"\n'),
    "remote-stream-error": ("stream-error-vlm", ""),
    "remote-endless": ("endless-vlm", ""),
}


def _entry(name: str, served: str, base_url: str, more: str = "") -> str:
    return (
        f'[[model]]\nname = "{name}"\ntasks = ["image-to-text", "visual-question-answering"]\nbackend = "openai"\n'
        f'base_url = "{base_url}"\nserved_model = "{served}"\noffline = false\n'
        f'caption_prompt = "{CAPTION_PROMPT}"\nquestion_prompt = "Q: {{question}}"\n{more}'
    )


@pytest.fixture
def remote(server, tmp_path, monkeypatch):
    """A user catalog of ENTRIES on the test server; `remote(name, served, base_url, more)` adds one (a new name)."""
    catalog = tmp_path / "catalog.toml"
    entries = [_entry(name, served, server.url, more) for name, (served, more) in ENTRIES.items()]

    def add(name: str, served: str, base_url: str, more: str = "") -> None:
        server.more_models.append(name)
        entries.append(_entry(name, served, base_url, more))
        catalog.write_text("\n".join(entries))

    catalog.write_text("\n".join(entries))
    monkeypatch.setenv("MMDEMO_CATALOG", str(catalog))
    server.log["requests"].clear()
    server.log["most"] = 0
    return add


def _image(colour: str, width: int, height: int) -> Image.Image:
    return Image.new("RGB", (width, height), COLOURS[colour])


def _reply(image: Image.Image, text: str, max_tokens: int = 30) -> str:
    return " ".join(_describe(image, text).split()[:max_tokens])


def test_a_batch_of_captions_and_answers_comes_from_the_server(server, remote):
    images = [_image("red", 40, 30), _image("green", 64, 64), _image("blue", 20, 90), _image("white", 700, 500)]
    captions = mmdemo.pipeline("image-to-text", "remote-vlm")(images, max_new_tokens=30)
    assert captions == [[{"generated_text": _reply(im, CAPTION_PROMPT)}] for im in images]
    assert server.log["most"] > 1, "a batch's requests should be in flight together"
    received = sorted(server.log["requests"], key=lambda r: r[1].width)
    assert [(im.size, mime) for _, im, mime, _ in received] == [
        ((20, 90), "image/png"),
        ((40, 30), "image/png"),
        ((64, 64), "image/png"),
        ((700, 500), "image/jpeg"),  # a photo-sized image goes as JPEG
    ]
    assert np.array_equal(np.asarray(received[1][1].convert("RGB")), np.asarray(images[0]))  # PNG: lossless

    questions = ["what colour is it?", "how big is it?", "is it round?", "what is it?"]
    answers = mmdemo.pipeline("visual-question-answering", "remote-vlm")(images, questions, top_k=3)
    for image, question, result in zip(images, questions, answers, strict=True):
        (answer,) = result
        assert answer["answer"] == _reply(image, f"Q: {question}")
        assert answer["score"] == pytest.approx(math.exp(LOGPROB * len(answer["answer"].split())))
    assert mmdemo.pipeline("visual-question-answering", "remote-vlm")(images[2], questions[2]) == answers[2]


def test_without_logprobs_the_score_is_null(server, remote):
    remote("remote-no-logprobs", "tiny-vlm", server.url, "logprobs = false\n")
    (answer,) = mmdemo.pipeline("visual-question-answering", "remote-no-logprobs")(_image("red", 8, 8), "colour?")
    assert answer == {"answer": _reply(_image("red", 8, 8), "Q: colour?"), "score": None}


@pytest.mark.parametrize(
    ("task", "question", "options"),
    [("image-to-text", None, {"max_new_tokens": 8}), ("visual-question-answering", "what colour is the square?", {})],
)
def test_streamed_text_grows_to_the_batched_reply(remote, task, question, options):
    pipe = mmdemo.pipeline(task, "remote-vlm")
    assert pipe.streams
    image = _image("blue", 33, 44)
    args = (image, question) if question else (image,)
    parts = list(pipe.stream(*args, **options))
    expected = _reply(image, f"Q: {question}" if question else CAPTION_PROMPT, options.get("max_new_tokens", 30))
    assert len(parts) == len(expected.split()) > 1  # one a word
    assert all(later.startswith(earlier) and later != earlier for earlier, later in itertools.pairwise(parts))
    whole = pipe(*args, **options)[0]
    assert parts[-1] == whole.get("answer", whole.get("generated_text")) == expected


def test_closing_a_stream_hangs_up_on_the_server(server, remote):
    server.log["hung_up"] = False
    stream = mmdemo.pipeline("image-to-text", "remote-endless").stream(_image("red", 10, 10), max_new_tokens=100)
    assert [next(stream) for _ in range(3)][-1] == "A 10x10 red"
    stream.close()
    end = time.time() + 5
    while not server.log["hung_up"]:
        assert time.time() < end, "the server kept streaming after the client closed the stream"
        time.sleep(0.02)


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("remote-missing", r"does not serve 'no-such-vlm'; it serves: tiny-vlm, broken-vlm"),
        ("remote-broken", r"answered HTTP 500: EngineCore died unexpectedly"),
        ("remote-slow", r"did not answer within 0\.3 s"),
        ("remote-empty", r"sent an? (answer|stream) with no reply in it"),
    ],
)
def test_server_failures_are_clear_model_errors(server, remote, name, expected, streamed):
    pipe = mmdemo.pipeline("visual-question-answering", name)
    with pytest.raises(mmdemo.ModelError, match=expected) as e:
        list(pipe.stream(_image("red", 10, 10), "what colour?")) if streamed else pipe(_image("red", 10, 10), "what?")
    assert str(e.value).startswith(f"The model server at {server.url} ")
    assert_user_message(str(e.value))
    assert mmdemo.pipeline("visual-question-answering", "remote-vlm")(_image("red", 10, 10), "what?")[0]["answer"]


def test_one_failing_input_fails_the_batch_with_the_servers_message(remote):
    images = [_image("red", 10, 10), _image("green", 1600, 50), _image("blue", 10, 10)]
    with pytest.raises(mmdemo.ModelError, match="answered HTTP 400: Image too large: 1600 px wide, at most 1500"):
        mmdemo.pipeline("image-to-text", "remote-vlm")(images)
    assert len(mmdemo.pipeline("image-to-text", "remote-vlm")(images[::2])) == 2


def test_a_broken_stream_is_a_model_error(remote):
    stream = mmdemo.pipeline("image-to-text", "remote-stream-error").stream(_image("red", 10, 10))
    assert next(stream) == "A"
    with pytest.raises(mmdemo.ModelError, match="failed: generation aborted: engine restarted"):
        list(stream)


def test_the_api_key_comes_from_the_named_variable_and_never_shows(remote, monkeypatch):
    with pytest.raises(mmdemo.ModelError, match=r"API key is read from \$MMDEMO_TEST_SERVER_KEY, which is not set"):
        mmdemo.pipeline("image-to-text", "remote-private")
    monkeypatch.setenv("MMDEMO_TEST_SERVER_KEY", "wrong-key-456")
    with pytest.raises(mmdemo.ModelError, match=r"refused the request \(HTTP 401: Invalid API key: \*\*\*\)") as e:
        mmdemo.pipeline("image-to-text", "remote-private")(_image("red", 10, 10))
    assert_user_message(str(e.value), "wrong-key-456")
    mmdemo.unload("remote-private")
    monkeypatch.setenv("MMDEMO_TEST_SERVER_KEY", KEY)
    assert mmdemo.pipeline("image-to-text", "remote-private")(_image("red", 10, 10)) == [
        {"generated_text": _reply(_image("red", 10, 10), CAPTION_PROMPT)}
    ]


def test_a_server_that_is_down_is_named_and_used_once_it_is_up(remote):
    port = free_port()
    remote("remote-later", "tiny-vlm", f"http://127.0.0.1:{port}/v1")
    pipe = mmdemo.pipeline("image-to-text", "remote-later")
    with pytest.raises(mmdemo.ModelError, match=f"The model server at http://127.0.0.1:{port}/v1 is not reachable"):
        pipe(_image("red", 10, 10))
    with pytest.raises(mmdemo.ModelError, match="is not reachable"):
        list(pipe.stream(_image("red", 10, 10)))
    later = Server(port)
    try:
        assert pipe(_image("green", 10, 10)) == [{"generated_text": _reply(_image("green", 10, 10), CAPTION_PROMPT)}]
    finally:
        later.stop()


def test_a_host_that_takes_no_connection_is_not_reachable(remote):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # never accepted: once its backlog is full, connections wait unanswered
        port = listener.getsockname()[1]
        remote("remote-stuck", "tiny-vlm", f"http://127.0.0.1:{port}/v1", "timeout = 0.3\nmax_retries = 0\n")
        fillers = [socket.socket() for _ in range(4)]
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        try:
            with pytest.raises(mmdemo.ModelError, match=r"is not reachable \(no connection within 0\.3 s\)"):
                mmdemo.pipeline("image-to-text", "remote-stuck")(_image("red", 10, 10))
        finally:
            for filler in fillers:
                filler.close()


def test_a_base_url_without_the_api_is_explained(remote, server):
    remote("remote-no-v1", "tiny-vlm", server.url.removesuffix("/v1"))
    with pytest.raises(mmdemo.ModelError, match=r"answered HTTP 404 \(Not Found\); does `base_url` end in /v1\?"):
        mmdemo.pipeline("image-to-text", "remote-no-v1")(_image("red", 10, 10))


def test_an_entry_without_its_server_settings_is_refused(remote, tmp_path, monkeypatch):
    path = tmp_path / "bad.toml"
    path.write_text('[[model]]\nname = "remote-bad"\ntasks = ["image-to-text"]\nbackend = "openai"\n')
    monkeypatch.setenv("MMDEMO_CATALOG", str(path))
    with pytest.raises(
        mmdemo.ModelError, match=r"could not be loaded: its catalog entry needs base_url \(.*\) and served_model \(.*\)"
    ):
        mmdemo.pipeline("image-to-text", "remote-bad")


def test_the_sdk_is_imported_only_when_a_served_model_loads():
    code = "import sys, mmdemo, mmdemo.backends.openai_compat; print('openai' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "False"


def test_a_served_model_is_called_directly_and_names_its_server_as_revision():
    """The server batches concurrent requests itself: no micro-batcher queues them one batch at a time; feedback
    records say which server's model answered."""
    from mmdemo.backends.openai_compat import OpenAIChatVLM
    from mmdemo.pipelines import batcher_of
    from mmdemo.registry import ModelInfo, revision_of

    info = ModelInfo(
        "m", ("image-to-text",), "openai", extra={"base_url": "http://127.0.0.1:9/v1", "served_model": "org/vlm"}
    )
    backend = OpenAIChatVLM(info)
    assert batcher_of(backend, 64) is backend
    assert revision_of(info) == "org/vlm@http://127.0.0.1:9/v1"
