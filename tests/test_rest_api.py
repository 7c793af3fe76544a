"""The REST API (mmdemo.api) of `python app.py` as a user starts it, with the bundled models: real answers, clear
errors with the right status, concurrent requests batched, the server serving on after bad input."""

import json
import re
import threading
import time

import httpx
import pytest
from conftest import ROOT, assert_user_message, served_app

EXAMPLES = ROOT / "assets" / "examples"
VQA_EXAMPLES = json.loads((EXAMPLES / "easy-vqa" / "examples.json").read_text())
LIMIT = 200_000  # MMDEMO_MAX_FILE_SIZE for these tests, in bytes


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    home = tmp_path_factory.mktemp("rest")
    env = {"MMDEMO_MAX_FILE_SIZE": f"{LIMIT}b", "MMDEMO_FEEDBACK_DB": str(home / "feedback.db"), "MMDEMO_HUB": "off"}
    with served_app(home, **env) as url, httpx.Client(base_url=url + "/api/v1", timeout=120) as client:
        yield client


def ask(api, example: dict, **fields):
    image = (EXAMPLES / "easy-vqa" / example["image"]).read_bytes()
    data = {"question": example["question"], **fields}
    return api.post("/answer", files={"image": (example["image"], image)}, data=data)


def test_the_bundled_models_are_warmed_up_before_the_app_says_ready(api):
    """Once /readyz says ready, each bundled default has already run once (on a bundled example): the first
    user's request pays no one-off costs. (First in this module: no request has reached the models yet.)"""
    base = str(api.base_url).removesuffix("/api/v1/")
    for _ in range(300):
        if httpx.get(base + "/readyz").status_code == 200:
            break
        time.sleep(0.1)
    text = httpx.get(base + "/metrics").text
    for model in ("mmdemo-vqa-easy", "mmdemo-captioner", "efficientnet-lite0", "mmdemo-sounds"):
        assert re.search(rf'^mmdemo_batch_size_count{{model="{model}"}} [1-9]', text, re.M), model


def test_answer_gives_the_models_answers_best_first(api):
    for example in VQA_EXAMPLES[:6]:
        reply = ask(api, example)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["model"] == "mmdemo-vqa-easy" and body["ms"] > 0
        assert body["result"][0]["answer"] == example["answer"], example
        scores = [r["score"] for r in body["result"]]
        assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    assert len(ask(api, VQA_EXAMPLES[0], top_k="2").json()["result"]) == 2


def test_concurrent_requests_are_answered_right_and_batched(api):
    def batched_inputs() -> tuple[float, float]:
        text = httpx.get(str(api.base_url).removesuffix("/api/v1/") + "/metrics").text
        found = {
            kind: float(m.group(1))
            for kind in ("sum", "count")
            if (m := re.search(rf'^mmdemo_batch_size_{kind}{{model="mmdemo-vqa-easy"}} (\S+)$', text, re.M))
        }
        return found.get("sum", 0.0), found.get("count", 0.0)

    before, failures = batched_inputs(), []

    def client(k: int) -> None:
        with httpx.Client(base_url=api.base_url, timeout=120) as mine:
            for i in range(6):
                example = VQA_EXAMPLES[(k + i) % len(VQA_EXAMPLES)]
                reply = ask(mine, example)
                if reply.status_code != 200 or reply.json()["result"][0]["answer"] != example["answer"]:
                    failures.append((example, reply.text))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:3]
    after = batched_inputs()
    inputs, calls = after[0] - before[0], after[1] - before[1]
    assert inputs == 96 and calls < inputs  # every request answered, some model calls shared by several


def test_caption_classify_and_sounds(api):
    scene = json.loads((EXAMPLES / "scenes" / "examples.json").read_text())[1]
    image = (EXAMPLES / "scenes" / scene["image"]).read_bytes()
    reply = api.post("/caption", files={"image": ("scene.png", image)}, data={"num_beams": "1"})
    assert reply.status_code == 200 and reply.json()["model"] == "mmdemo-captioner"
    assert reply.json()["result"][0]["generated_text"] == scene["captions"][0].replace(",", "")
    photo = (EXAMPLES / "photos" / "coffee.jpg").read_bytes()
    reply = api.post("/classify_image", files={"image": ("coffee.jpg", photo)})
    assert reply.json()["result"][0]["label"] == "espresso" and len(reply.json()["result"]) == 5
    for sound in json.loads((EXAMPLES / "sounds" / "examples.json").read_text()):
        clip = (EXAMPLES / "sounds" / sound["audio"]).read_bytes()
        reply = api.post("/classify_audio", files={"audio": (sound["audio"], clip)}, data={"top_k": "3"})
        assert reply.status_code == 200, reply.text
        assert reply.json()["result"][0]["label"] == sound["label"] and len(reply.json()["result"]) == 3


def test_transcribe_hears_a_spoken_question(api, speak):
    reply = api.post("/transcribe", files={"audio": ("q.wav", speak("what color is the circle").read_bytes())})
    assert reply.status_code == 200, reply.text
    assert " ".join(reply.json()["result"]["text"].lower().strip(" ?.").split()) == "what color is the circle"


@pytest.mark.parametrize(
    ("route", "files", "data", "status", "message"),
    [
        ("/answer", {"image": ("x.png", b"not an image at all")}, {"question": "what color?"}, 400, "not an image"),
        ("/answer", {"image": ("x.png", b"")}, {"question": "what color?"}, 400, "empty"),
        ("/answer", None, {"question": "what color?"}, 400, "'image' form field"),
        ("/answer", "example", {}, 400, "'question' form field"),
        ("/answer", "example", {"question": "what is the meaning of life?"}, 400, "does not know the words"),
        ("/answer", "example", {"question": "what color?", "model": "/etc"}, 400, "Unknown model '/etc'"),
        ("/answer", "example", {"question": "what color?", "top_k": "two"}, 400, "top_k must be a whole number"),
        ("/answer", "example", {"question": "what color?", "top_k": "0"}, 400, "top_k must be a whole number"),
        ("/answer", {"image": ("big.png", b"\0" * (LIMIT + 1))}, {"question": "what?"}, 413, "too large"),
        ("/caption", "example", {"max_new_tokens": "1000"}, 400, "max_new_tokens must be"),
        ("/classify_audio", {"audio": ("a.wav", b"this is not a sound" * 20)}, {}, 400, "not audio"),
        ("/classify_zero_shot", "example", {"candidate_labels": "a circle, a square"}, 503, "mmdemo download"),
    ],
)
def test_bad_requests_get_a_clear_message_and_the_server_serves_on(api, route, files, data, status, message):
    if files == "example":
        files = {"image": ("4.png", (EXAMPLES / "easy-vqa" / VQA_EXAMPLES[0]["image"]).read_bytes())}
    reply = api.post(route, files=files, data=data)
    assert reply.status_code == status, reply.text
    assert message in reply.json()["error"]
    assert_user_message(reply.json()["error"])
    assert ask(api, VQA_EXAMPLES[0]).json()["result"][0]["answer"] == VQA_EXAMPLES[0]["answer"]


def test_a_body_that_is_not_a_form_is_refused(api):
    reply = api.post("/answer", json={"image": "4.png", "question": "what shape?"})
    assert reply.status_code == 400 and "'image' form field" in reply.json()["error"]
    reply = api.post("/answer", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data; boundary=x"})
    assert reply.status_code == 400 and reply.json()["error"]


def test_models_lists_the_catalog(api):
    models = api.get("/models", params={"task": "visual-question-answering"}).json()["models"]
    vqa = next(m for m in models if m["name"] == "mmdemo-vqa-easy")
    assert vqa["offline"] and "visual-question-answering" in vqa["default_for"]
    assert all("visual-question-answering" in m["tasks"] for m in models)
    reply = api.get("/models", params={"task": "painting"})
    assert reply.status_code == 400 and "Unknown task 'painting'" in reply.json()["error"]
