"""The web app on loopback, called the way users' scripts call it: gradio_client and plain HTTP.

The in-process app serves the tiny checkpoint through a user catalog (MMDEMO_CATALOG), so these tests
do not depend on the shipped model; one subprocess test starts `python app.py` as shipped.
"""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from conftest import QUESTION, ROOT, assert_user_message, free_port

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

TEST_MODEL = "tiny-test"
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # pandas deprecations inside Gradio


def catalog_toml(checkpoint) -> str:
    entry = """
[[model]]
name = "{name}"
tasks = ["visual-question-answering"]
backend = "native"
path = "{path}"
default_for = {default_for}
"""
    # the bundled default is pointed at the tiny checkpoint too, so the app starts without the shipped one
    return "".join(
        entry.format(name=name, path=checkpoint.as_posix(), default_for=default)
        for name, default in (("mmdemo-vqa-easy", '["visual-question-answering"]'), (TEST_MODEL, "[]"))
    )


@pytest.fixture(scope="module")
def app_url(tiny_checkpoint, tmp_path_factory):
    """The demo served in this process on a free loopback port; closed after the module."""
    home = tmp_path_factory.mktemp("app")
    catalog = home / "catalog.toml"
    catalog.write_text(catalog_toml(tiny_checkpoint))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMDEMO_CATALOG", str(catalog))
        mp.setenv("GRADIO_TEMP_DIR", str(home / "uploads"))
        from mmdemo import ui

        demo = ui.build_demo()
        port = free_port()
        _, url, _ = ui.launch(demo, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
        try:
            assert url.startswith(f"http://127.0.0.1:{port}")
            yield url
        finally:
            demo.close()


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def ask(client, image, question, model=TEST_MODEL):
    return client.predict(image, question, model, api_name="/answer")


def assert_answered(result) -> None:
    label, info = result
    confidences = label["confidences"]
    assert 1 <= len(confidences) <= 5
    assert label["label"] == confidences[0]["label"]
    scores = [c["confidence"] for c in confidences]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert label["label"] in info and "ms" in info


def test_view_api_lists_answer(client):
    api = client.view_api(print_info=False, return_format="dict")
    endpoint = api["named_endpoints"]["/answer"]
    assert [p["label"] for p in endpoint["parameters"]] == ["Image", "Question", "Model"]
    assert len(endpoint["returns"]) == 2


def test_answer_with_an_example_image(client, examples):
    for example in examples[:3]:
        result = ask(client, handle_file(str(example["image"])), example["question"])
        assert_answered(result)
        assert f"`{TEST_MODEL}`" in result[1]


def test_the_default_model_answers_without_a_model_name(client, example_image):
    label, info = client.predict(handle_file(str(example_image)), QUESTION, api_name="/answer")
    assert label["confidences"] and "`mmdemo-vqa-easy`" in info


def bad_file(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return handle_file(str(path))


@pytest.mark.parametrize(
    ("make_image", "question", "message"),
    [
        (lambda tmp, ex: bad_file(tmp, "notes.png", b"not an image at all\n" * 10), QUESTION, "not an image"),
        (
            lambda tmp, ex: bad_file(tmp, "page.jpg", b"<html><script>alert(1)</script></html>"),
            QUESTION,
            "not an image",
        ),
        (lambda tmp, ex: bad_file(tmp, "cut.png", ex.read_bytes()[:200]), QUESTION, "damaged or truncated"),
        (lambda tmp, ex: bad_file(tmp, "empty.png", b""), QUESTION, "empty"),
        (lambda tmp, ex: handle_file(str(ex)), "", "Please type a question"),
        (lambda tmp, ex: handle_file(str(ex)), "   ", "Please type a question"),
        (lambda tmp, ex: handle_file(str(ex)), "x" * 2000, "too long"),
        (lambda tmp, ex: handle_file(str(ex)), "what is the zebra?", "does not know the word 'zebra'"),
        (lambda tmp, ex: None, QUESTION, "upload an image"),
    ],
    ids=[
        "text-file",
        "html-file",
        "truncated",
        "zero-bytes",
        "empty-question",
        "blank-question",
        "long-question",
        "unknown-word",
        "no-image",
    ],
)
def test_bad_input_gets_a_clear_error_and_the_app_keeps_serving(
    client, tmp_path, example_image, make_image, question, message
):
    with pytest.raises(Exception) as e:
        ask(client, make_image(tmp_path, example_image), question)
    text = str(e.value)
    assert message in text, text
    assert "upstream Gradio app has raised an exception" not in text  # Gradio's opaque fallback
    assert_user_message(text, str(tmp_path), "/tmp/", str(ROOT))
    assert_answered(ask(client, handle_file(str(example_image)), QUESTION))  # the next request still works


def test_unknown_model_name_is_refused_with_the_choices(client, example_image):
    with pytest.raises(Exception, match="mmdemo-vqa-easy") as e:
        ask(client, handle_file(str(example_image)), QUESTION, model="no-such-model")
    assert TEST_MODEL in str(e.value)


def test_home_page_and_config_are_served(app_url):
    with urllib.request.urlopen(app_url, timeout=10) as r:
        assert r.status == 200 and "text/html" in r.headers["content-type"]
    with urllib.request.urlopen(app_url.rstrip("/") + "/config", timeout=10) as r:
        body = r.read().decode()
    assert '"image"' in body and "mmdemo" in body  # the upload box is Gradio's own Image component


def wait_for_http(url: str, proc: subprocess.Popen, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"app.py exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    raise AssertionError(f"nothing served at {url} within {seconds} s")


def test_app_py_serves_on_the_port_from_the_environment(tmp_path):
    port = free_port()
    env = {**os.environ, "MMDEMO_PORT": str(port), "MMDEMO_HOST": "127.0.0.1", "GRADIO_TEMP_DIR": str(tmp_path)}
    env.pop("MMDEMO_CATALOG", None)
    log = (tmp_path / "app.log").open("w")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_for_http(f"http://127.0.0.1:{port}/", proc, seconds=60) == 200
    except AssertionError as e:
        log.flush()
        raise AssertionError(f"{e}\n{(tmp_path / 'app.log').read_text()[-3000:]}") from None
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_startup_skips_gradios_stub_rewrite_and_throwaway_apps():
    """Importing the UI leaves gradio's .pyi stubs alone, and building and queueing the demo builds no FastAPI app
    (launch builds the one that serves); gradio's own functions are back afterwards."""
    code = """
from mmdemo import ui
import gradio.component_meta, gradio.routes
assert gradio.component_meta.create_or_modify_pyi(object, 'x', []) is None
create_app, built = vars(gradio.routes.App)['create_app'], []
gradio.routes.App.create_app = staticmethod(lambda *a, **k: built.append(1) or create_app(*a, **k))
demo = ui.build_demo()
with ui._no_throwaway_apps():
    demo.queue()
assert not built and demo.app is None, built
gradio.routes.App.create_app = create_app
demo.launch(prevent_thread_lock=True, server_port=PORT)
assert demo.app is not None and vars(gradio.routes.App)['create_app'] is create_app
demo.close()
print('ok')
""".replace("PORT", str(free_port()))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_serve_flags_override_the_environment(monkeypatch):
    import argparse

    from mmdemo.cli import add_serve_args

    monkeypatch.setenv("MMDEMO_PORT", "9001")
    monkeypatch.setenv("MMDEMO_HOST", "0.0.0.0")
    args = add_serve_args(argparse.ArgumentParser()).parse_args([])
    assert (args.host, args.port) == ("0.0.0.0", 9001)
    args = add_serve_args(argparse.ArgumentParser()).parse_args(["--host", "127.0.0.2", "--port", "8123"])
    assert (args.host, args.port) == ("127.0.0.2", 8123)


def test_gradio_server_variables_are_honoured(monkeypatch):
    """Hugging Face Spaces set GRADIO_SERVER_NAME=0.0.0.0: the app must listen there, not on loopback."""
    import argparse

    from mmdemo.cli import add_serve_args

    for name in ("MMDEMO_HOST", "MMDEMO_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7861")
    args = add_serve_args(argparse.ArgumentParser()).parse_args([])
    assert (args.host, args.port) == ("0.0.0.0", 7861)
    monkeypatch.setenv("MMDEMO_HOST", "127.0.0.3")  # ours first
    assert add_serve_args(argparse.ArgumentParser()).parse_args([]).host == "127.0.0.3"


EXAMPLES_ROOT = ROOT / "assets" / "examples"


def test_every_tab_has_its_endpoint(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/answer", "/caption", "/classify_image", "/classify_audio"} <= set(endpoints)


def test_caption_endpoint_describes_a_generated_scene(client):
    scene = json.loads((EXAMPLES_ROOT / "scenes" / "examples.json").read_text())[1]
    text, info = client.predict(
        handle_file(str(EXAMPLES_ROOT / "scenes" / scene["image"])), "mmdemo-captioner", 1, api_name="/caption"
    )
    assert text == scene["captions"][0].replace(",", "")  # the shipped captioner is exact on its domain
    assert "ms" in info and "`mmdemo-captioner`" in info


def test_classify_image_endpoint_on_a_real_photo(client):
    label, info = client.predict(
        handle_file(str(EXAMPLES_ROOT / "photos" / "coffee.jpg")), None, api_name="/classify_image"
    )
    assert label["label"] == "espresso" and len(label["confidences"]) == 5
    assert "`efficientnet-lite0`" in info


def test_classify_audio_endpoint_on_each_example_sound(client):
    for example in json.loads((EXAMPLES_ROOT / "sounds" / "examples.json").read_text()):
        label, info = client.predict(
            handle_file(str(EXAMPLES_ROOT / "sounds" / example["audio"])), "mmdemo-sounds", api_name="/classify_audio"
        )
        assert label["label"] == example["label"], example
        assert "ms" in info


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [("notes.wav", b"this is not a sound" * 20, "not audio"), ("empty.wav", b"", "empty")],
)
def test_bad_audio_gets_a_clear_error_and_the_app_keeps_serving(client, tmp_path, name, data, message):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(Exception) as e:
        client.predict(handle_file(str(path)), "mmdemo-sounds", api_name="/classify_audio")
    assert message in str(e.value).lower(), str(e.value)
    assert_user_message(str(e.value), str(tmp_path))
    clip = EXAMPLES_ROOT / "sounds" / "siren.wav"
    assert client.predict(handle_file(str(clip)), "mmdemo-sounds", api_name="/classify_audio")[0]["label"] == "siren"


def test_transcribe_endpoint_hears_a_spoken_question(client, speak, example_image):
    text = client.predict(handle_file(str(speak("what color is the circle"))), None, api_name="/transcribe")
    assert " ".join(text.lower().strip(" ?.").split()) == "what color is the circle"
    label, _ = client.predict(handle_file(str(example_image)), text, TEST_MODEL, api_name="/answer")
    assert label["confidences"]  # the transcript is a question the model accepts


def test_transcribe_refuses_a_non_audio_file(client, tmp_path):
    path = tmp_path / "question.webm"
    path.write_bytes(b"<html>not a recording</html>" * 10)
    with pytest.raises(Exception) as e:
        client.predict(handle_file(str(path)), None, api_name="/transcribe")
    assert "audio" in str(e.value).lower()
    assert_user_message(str(e.value), str(tmp_path))


def test_compare_runs_models_side_by_side(client, example_image):
    table = client.predict(
        "visual-question-answering",
        handle_file(str(example_image)),
        QUESTION,
        ["mmdemo-vqa-easy", TEST_MODEL],
        api_name="/compare",
    )
    rows = table["data"]
    assert [r[0] for r in rows] == ["mmdemo-vqa-easy", TEST_MODEL]
    assert all(r[1] and r[2] > 0 for r in rows)
    photo = handle_file(str(EXAMPLES_ROOT / "photos" / "coffee.jpg"))
    rows = client.predict(
        "image-classification", photo, "", ["efficientnet-lite0", "mmdemo-scene-classifier"], api_name="/compare"
    )["data"]
    assert rows[0][1].startswith("espresso (0.95)")
    assert rows[1][1].split(" (")[0] in {
        f"{c} {s}"
        for c in ("red", "green", "blue", "black", "gray", "teal", "brown", "yellow")
        for s in ("circle", "rectangle", "triangle")
    }


def test_compare_needs_two_to_four_models(client, example_image):
    with pytest.raises(Exception, match="Pick 2 to 4 models"):
        client.predict(
            "visual-question-answering", handle_file(str(example_image)), QUESTION, [TEST_MODEL], api_name="/compare"
        )


def test_zero_shot_without_the_hub_says_how_to_get_the_model(client, example_image):
    with pytest.raises(Exception) as e:
        client.predict(handle_file(str(example_image)), "a circle, a square", None, api_name="/classify_zero_shot")
    assert "mmdemo download" in str(e.value)  # offline: no zero-shot model is bundled
    assert_user_message(str(e.value))
    assert_answered(ask(client, handle_file(str(example_image)), QUESTION))


def test_zero_shot_needs_labels(client, example_image):
    with pytest.raises(Exception, match="(?i)label"):
        client.predict(handle_file(str(example_image)), " , ", None, api_name="/classify_zero_shot")
