"""Feedback through the running app, called as scripts call it (gradio_client on loopback): what is stored, that a
retry or a changed vote never adds a row, that bad feedback is refused with a message, that feedback is taken while
the model queue is full, and the password-protected review and export."""

import hashlib
import threading
import time
import zipfile

import httpx
import pytest
from conftest import EXAMPLES, assert_user_message, free_port

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.utils import Status  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")
PASSWORD = "review-secret"
IMAGE = EXAMPLES / "5.png"  # a brown circle
VQA, CAPTION = "visual-question-answering", "image-to-text"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app as shipped (bundled models), in this process, with its own feedback database and a review password."""
    home = tmp_path_factory.mktemp("feedback-app")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMDEMO_FEEDBACK_DB", str(home / "db" / "feedback.db"))
        mp.setenv("MMDEMO_FEEDBACK_PASSWORD", PASSWORD)
        mp.setenv("GRADIO_TEMP_DIR", str(home / "uploads"))
        from mmdemo import ui

        mp.setattr(ui, "_store", None)  # this module's database, not one another test opened
        mp.setattr(ui, "QUEUE_SIZE", 2)  # small, so that the queue-full test fills it quickly
        mp.setattr(ui, "MODEL_CONCURRENCY", 2)
        demo = ui.build_demo()
        _, url, _ = ui.launch(demo, host="127.0.0.1", port=free_port(), prevent_thread_lock=True, quiet=True)
        try:
            yield ui, url
        finally:
            demo.close()


@pytest.fixture()
def client(app):
    return Client(app[1], verbose=False)  # a new client: a new session


@pytest.fixture()
def store(app):
    return app[0].feedback_store()


def send(client, slot, rating="👍", comment="", correction="", tester=""):
    return client.predict(slot, rating, comment, correction, tester, api_name="/feedback")


def ask(client, question="what color is the shape?"):
    label, _ = client.predict(handle_file(str(IMAGE)), question, "mmdemo-vqa-easy", api_name="/answer")
    return label


def rows_of(store, client) -> list[dict]:
    return [r for r in store.rows() if r["session"] == client.session_hash]


def test_feedback_stores_the_output_as_the_server_produced_it(client, store):
    label = ask(client)
    assert send(client, "ask", "👎", " too sure ", "dark brown", "ann").startswith("Saved 👎")
    (row,) = rows_of(store, client)
    assert (row["task"], row["model"], row["rating"]) == (VQA, "mmdemo-vqa-easy", -1)
    assert (row["comment"], row["correction"], row["tester"]) == ("too sure", "dark brown", "ann")
    assert row["question"] == "what color is the shape?" and row["params"] == {"top_k": 5}
    assert row["revision"].startswith("sha256:") and row["app_version"]
    shown = [(c["label"], c["confidence"]) for c in label["confidences"]]
    assert [(o["answer"], o["score"]) for o in row["output"]] == pytest.approx(shown)
    assert row["output"][0]["answer"] == "brown"
    digest = hashlib.sha256(IMAGE.read_bytes()).hexdigest()
    assert row["media_sha256"] == digest
    assert store.media(digest) == ("image", IMAGE.read_bytes())


def test_a_retry_or_changed_vote_updates_one_row(client, store):
    ask(client)
    for _ in range(3):  # a double click, a retry
        send(client, "ask", "👍")
    first = rows_of(store, client)
    assert len(first) == 1 and first[0]["rating"] == 1
    assert send(client, "ask", "👎", correction="red").startswith("Saved 👎")  # changed their mind
    (row,) = rows_of(store, client)
    assert (row["id"], row["rating"], row["correction"]) == (first[0]["id"], -1, "red")
    ask(client, "what shape is in the image?")  # a new result: its feedback is a new row
    send(client, "ask", "up")
    questions = sorted(r["question"] for r in rows_of(store, client))
    assert questions == ["what color is the shape?", "what shape is in the image?"]


def test_each_tab_and_each_compared_model_is_rated_on_its_own(client, store):
    caption, _ = client.predict(handle_file(str(IMAGE)), "mmdemo-captioner", 1, api_name="/caption")
    send(client, "caption", "👍")
    models = ["mmdemo-vqa-easy", "mmdemo-vqa-easy"]
    client.predict(VQA, handle_file(str(IMAGE)), "what shape is in the image?", models, api_name="/compare")
    send(client, "compare:mmdemo-vqa-easy", "👎", comment="it is a circle")
    rows = {r["task"]: r for r in rows_of(store, client)}
    assert rows[CAPTION]["output"] == [{"generated_text": caption}] and rows[CAPTION]["rating"] == 1
    assert rows[CAPTION]["params"] == {"num_beams": 1, "max_new_tokens": 30}
    assert rows[VQA]["comment"] == "it is a circle" and rows[VQA]["output"][0]["answer"] == "circle"


@pytest.mark.parametrize(
    ("slot", "rating", "comment", "message"),
    [
        ("listen", "👍", "", "run the model first"),  # nothing was shown in that tab in this session
        ("ask", "5 stars", "", "👍 or 👎"),
        ("ask", "👍", "x" * 5_001, "5000"),
        ("ask", "👍", "nul\x00byte", "NUL"),
    ],
)
def test_bad_feedback_gets_a_message_and_later_feedback_still_works(client, store, slot, rating, comment, message):
    ask(client)
    with pytest.raises(Exception) as err:
        send(client, slot, rating, comment)
    assert message.lower() in str(err.value).lower().replace(",", "")
    assert_user_message(str(err.value))
    assert rows_of(store, client) == []
    assert send(client, "ask", "👍", "fine").startswith("Saved 👍")
    assert [r["comment"] for r in rows_of(store, client)] == ["fine"]


def test_feedback_is_taken_while_the_model_queue_is_full(app, client, store, monkeypatch):
    ui = app[0]
    ask(client)  # a result to rate, before the models get stuck
    release, real = threading.Event(), ui._predict

    def stuck(*args, **kwargs):
        release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(ui, "_predict", stuck)
    others = [Client(app[1], verbose=False) for _ in range(6)]
    try:
        jobs = [c.submit(handle_file(str(IMAGE)), "what shape?", None, api_name="/answer") for c in others]
        time.sleep(3)  # 2 running (the concurrency limit), the queue (2) full, the rest refused
        states = [job.status().code for job in jobs]
        assert states.count(Status.PROCESSING) == 2 and Status.FINISHED in states, states  # stuck, and refusing
        # the page sends feedback as it does every unqueued event: straight to /run, past the full queue
        start = time.perf_counter()
        body = {"data": ["ask", "👎", "while busy", "", ""], "session_hash": client.session_hash}
        reply = httpx.post(f"{app[1]}gradio_api/run/feedback", json=body, timeout=10)
        assert reply.status_code == 200 and reply.json()["data"][0].startswith("Saved 👎")
        assert time.perf_counter() - start < 5
        assert rows_of(store, client)[0]["comment"] == "while busy"
    finally:
        release.set()
    outcomes = []
    for job in jobs:
        try:
            outcomes.append(job.result(timeout=60)[1])
        except Exception as e:  # the requests beyond the queue's size were refused, with a message
            outcomes.append(str(e))
    answered, refused = sum("ms" in o for o in outcomes), sum("Queue is full" in o for o in outcomes)
    assert answered >= 3 and refused >= 1 and answered + refused == len(jobs), outcomes


def test_the_review_needs_the_password(app):
    ui = app[0]
    with pytest.raises(Exception, match="Wrong password"):
        ui.review("guess", "", "", "any", False)
    with pytest.raises(Exception, match="Wrong password"):
        ui.review_export("", "csv", "", "")


def test_the_review_shows_counts_comments_images_and_exports(app, client, store, tmp_path):
    ui = app[0]
    ask(client)
    send(client, "ask", "👎", "check the colour", "brown", "rev")
    summary, chart, table, gallery = ui.review(PASSWORD, VQA, "", "👎", True)
    mine = summary[(summary["task"] == VQA) & (summary["model"] == "mmdemo-vqa-easy")].iloc[0]
    votes = [r["rating"] for r in store.rows(task=VQA, model="mmdemo-vqa-easy")]
    assert (mine["n"], mine["up"], mine["down"]) == (len(votes), votes.count(1), votes.count(-1))
    assert mine["up_rate"] == pytest.approx(votes.count(1) / len(votes))
    mine_chart = chart[chart["label"] == "visual · mmdemo-vqa-easy"]
    assert dict(zip(mine_chart["rating"], mine_chart["count"], strict=True)) == {"👍": mine["up"], "👎": mine["down"]}
    assert table[0][1:4] == [VQA, "mmdemo-vqa-easy", "👎"] and table[0][6:9] == ["brown", "check the colour", "rev"]
    assert all(row[3] == "👎" and (row[6] or row[7]) for row in table)
    assert gallery and gallery[0][0].size == (64, 64) and gallery[0][1] == "brown"
    archive = ui.review_export(PASSWORD, "csv", VQA, "")
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        assert "feedback.csv" in names
        assert any(n.startswith("feedback_media/") and n.endswith(".png") for n in names)
        assert "check the colour" in z.read("feedback.csv").decode()


def test_the_api_documents_feedback(client):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    params = [p["parameter_name"] for p in api["/feedback"]["parameters"]]
    assert params == ["slot", "rating", "comment", "correction", "tester"]
