"""Operating the app: liveness and readiness checks, one structured log line per request, and faults (a default
model that fails to load, an exception inside a model, out of memory, a full disk under the feedback store): each
gives the user a clear message, the log the cause with a request id, and the next request succeeds."""

import contextlib
import json
import logging
import time

import gradio as gr
import pytest
import sqlalchemy as sa
from conftest import EXAMPLES, assert_user_message, get_json, served_app

import mmdemo
from mmdemo import ui

IMAGE = str(EXAMPLES / "5.png")


def requests_logged(caplog) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "mmdemo.requests"]


@pytest.fixture()
def app_with_catalog(tmp_path):
    """Start `python app.py` with a user catalog (written by the test) and its own feedback database."""
    with contextlib.ExitStack() as servers:

        def start(catalog: str | None = None) -> str:
            env = {"MMDEMO_FEEDBACK_DB": str(tmp_path / "feedback.db")}
            if catalog:
                (tmp_path / "catalog.toml").write_text(catalog)
                env["MMDEMO_CATALOG"] = str(tmp_path / "catalog.toml")
            return servers.enter_context(served_app(tmp_path, **env))

        yield start


def wait_ready(url: str, timeout: float = 90) -> tuple[int, dict]:
    end = time.time() + timeout
    while True:
        status, body = get_json(url + "/readyz")
        if status == 200 or body["problems"].get("models") != "still loading" or time.time() > end:
            return status, body
        time.sleep(0.5)


def test_liveness_and_readiness(app_with_catalog, tmp_path):
    url = app_with_catalog()
    assert get_json(url + "/healthz") == (200, {"status": "ok"})
    assert wait_ready(url) == (200, {"ready": True, "problems": {}})


def test_a_default_that_fails_to_load_is_named_and_the_rest_serve(app_with_catalog, tmp_path):
    broken = tmp_path / "broken-checkpoint"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    url = app_with_catalog(
        f"""[[model]]
name = "broken-captioner"
tasks = ["image-to-text"]
backend = "native"
path = "{broken.as_posix()}"
default_for = ["image-to-text"]
"""
    )
    status, body = wait_ready(url)
    assert status == 503 and list(body["problems"]) == ["model image-to-text"], body
    from gradio_client import Client, handle_file

    client = Client(url + "/", verbose=False)
    with pytest.raises(Exception) as err:
        client.predict(handle_file(IMAGE), "broken-captioner", 1, api_name="/caption")
    message = str(err.value)
    assert "broken-captioner could not be loaded" in message and "request" in message
    assert_user_message(message, str(broken), "Expecting property")
    request = message.split("request ")[1][:8]
    log = (tmp_path / "server.log").read_text()
    assert f"request {request}: image-to-text with broken-captioner" in log  # the cause, with the id
    assert "JSONDecodeError" in log.split(f"request {request}")[1]
    label, info = client.predict(handle_file(IMAGE), "what shape is in the image?", None, api_name="/answer")
    assert label["label"] == "circle"  # the other tasks serve


def test_one_log_line_per_request_with_its_outcome(caplog, tmp_path):
    caplog.set_level(logging.INFO, logger="mmdemo.requests")
    labels, info = ui.classify_image(IMAGE, "mmdemo-scene-classifier")
    (bad := tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(gr.Error):
        ui.classify_image(str(bad), "mmdemo-scene-classifier")
    ok, rejected = requests_logged(caplog)
    assert ok["task"] == rejected["task"] == "image-classification"
    assert ok["model"] == "mmdemo-scene-classifier" and ok["outcome"] == "ok" and ok["ms"] > 0
    assert rejected["outcome"] == "rejected" and len(ok["request"]) == len(rejected["request"]) == 8


def test_an_exception_inside_a_model_gives_a_message_and_the_next_request_works(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="mmdemo")
    caplog.set_level(logging.INFO, logger="mmdemo.requests")
    backend = mmdemo.pipeline("image-classification", "mmdemo-scene-classifier").backend
    real = type(backend).__call__
    monkeypatch.setattr(type(backend), "__call__", lambda self, items, **kw: 1 / 0)
    with pytest.raises(gr.Error) as err:
        ui.classify_image(IMAGE, "mmdemo-scene-classifier")
    assert_user_message(err.value.message, "ZeroDivisionError", "division")
    request = err.value.message.split("request ")[1][:8]
    cause = [r for r in caplog.records if r.name == "mmdemo.ui" and request in r.getMessage()]
    assert cause and "ZeroDivisionError" in caplog.text
    assert requests_logged(caplog)[-1] == {**requests_logged(caplog)[-1], "request": request, "outcome": "error"}
    monkeypatch.setattr(type(backend), "__call__", real)
    labels, _ = ui.classify_image(IMAGE, "mmdemo-scene-classifier")
    assert labels


def test_out_of_memory_gives_a_message_and_the_next_request_works(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="mmdemo.requests")
    backend = mmdemo.pipeline("image-classification", "mmdemo-scene-classifier").backend
    real = type(backend).__call__

    def out_of_memory(self, items, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(type(backend), "__call__", out_of_memory)
    with pytest.raises(gr.Error) as err:
        ui.classify_image(IMAGE, "mmdemo-scene-classifier")
    assert "ran out of memory" in err.value.message and "request" in err.value.message
    assert_user_message(err.value.message, "CUDA", "20.00 GiB")
    assert requests_logged(caplog)[-1]["outcome"] == "failed"
    monkeypatch.setattr(type(backend), "__call__", real)
    assert ui.classify_image(IMAGE, "mmdemo-scene-classifier")[0]


def test_a_full_disk_refuses_feedback_with_a_message_and_later_feedback_works(tmp_path, monkeypatch):
    store = mmdemo.feedback.open_store(str(tmp_path / "full.db"))
    monkeypatch.setattr(ui, "_store", store)
    request = gr.Request(session_hash="disk-full")
    ui._remember(request, "classify", "image-classification", None, [{"label": "x", "score": 1.0}], media=IMAGE)

    def tiny_disk(dbapi_connection, _):  # the file may not grow past its current pages: SQLITE_FULL
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}").fetchall()

    sa.event.listen(store.engine, "connect", tiny_disk)
    store.engine.dispose()  # new connections, with the limit
    with pytest.raises(gr.Error) as err:
        ui.send_feedback("classify", "👍", "x" * 4000, "", "", request)
    assert "could not be saved" in err.value.message and "try again" in err.value.message
    assert_user_message(err.value.message, str(tmp_path))
    assert store.count() == 0 and store.integrity_check()
    sa.event.remove(store.engine, "connect", tiny_disk)
    store.engine.dispose()  # space again
    assert ui.send_feedback("classify", "👍", "x" * 4000, "", "", request).startswith("Saved 👍")
    assert store.count() == 1


@pytest.mark.parametrize(
    "text",
    ["<img src=x onerror=alert(1)>", "**bold** _it_ [link](javascript:alert(1))", "# heading", "`code` | a | b |"],
)
def test_model_output_is_shown_as_plain_text(text):
    shown = ui._info(text, 1.0, "image-classification", "mmdemo-scene-classifier")
    assert "<img" not in shown and "](" not in shown and "**bold**" not in shown
    assert shown.startswith("**") and "`mmdemo-scene-classifier`" in shown
