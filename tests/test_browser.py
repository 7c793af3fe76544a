"""End to end in a real browser: headless Chromium (Debian's `chromium`, driven by Playwright) opens `python app.py`,
uploads an example image, asks a question, reads the answer, gives 👎 with a correction, and the row is found in the
feedback database. A screenshot of the page is saved as a test artifact (test-artifacts/, or $MMDEMO_TEST_ARTIFACTS).

Needs `apt-get install chromium` and `pip install playwright` (as .ci/run does); without them these tests fail in CI
(CI=true) and skip elsewhere.
"""

import hashlib
import os
import shutil
import time

import pytest
from conftest import EXAMPLES, ROOT, served_app

from mmdemo.feedback import open_store

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
IMAGE = EXAMPLES / "5.png"  # a brown circle
ARTIFACTS = os.environ.get("MMDEMO_TEST_ARTIFACTS", str(ROOT / "test-artifacts"))


def _missing(what: str):
    if os.environ.get("CI"):
        pytest.fail(f"{what} is needed for the browser tests (see .ci/run)")
    pytest.skip(f"{what} is not installed")


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ModuleNotFoundError:
        _missing("playwright (pip install playwright)")
    executable = shutil.which("chromium")
    if executable is None:
        _missing("chromium (apt-get install chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """`python app.py` as a user starts it, with its own feedback database; yields (url, database path)."""
    home = tmp_path_factory.mktemp("browser-app")
    db = home / "feedback.db"
    with served_app(home, MMDEMO_FEEDBACK_DB=str(db), GRADIO_TEMP_DIR=str(home / "uploads")) as url:
        yield url + "/", db


def test_ask_rate_and_correct_in_a_browser(browser, app):
    url, db = app
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.goto(url)
    ask_tab = page.locator("#tab-ask")  # the Ask tab's panel
    ask_tab.locator("input[type=file]").first.set_input_files(str(IMAGE))
    ask_tab.get_by_label("Question").fill("what color is the shape?")
    ask_tab.get_by_role("button", name="Ask", exact=True).click()
    info = ask_tab.get_by_text("ms ·")
    try:
        info.wait_for(timeout=60_000)
    except Exception:
        print(ask_tab.inner_text()[:1500])
        raise
    answer = info.inner_text().split("·")[0].strip()
    assert answer == "brown", info.inner_text()

    ask_tab.get_by_label("👎").check()  # a vote is stored at once...
    ask_tab.get_by_text("Saved 👎").wait_for(timeout=15_000)
    ask_tab.get_by_label("What it should have been (optional)").fill("dark brown")
    ask_tab.get_by_label("Comment (optional)").fill("the circle looks darker than that")
    ask_tab.get_by_role("button", name="Send feedback").click()  # ...and Send adds the correction to the same row
    page.wait_for_timeout(300)
    ask_tab.get_by_text("Saved 👎").wait_for(timeout=15_000)

    with open_store(str(db)) as store:
        deadline = time.time() + 15
        while not (rows := [r for r in store.rows() if r["correction"]]) and time.time() < deadline:
            time.sleep(0.2)
        assert store.count() == 1  # the vote and the correction are one row
        (row,) = rows
        assert (row["task"], row["model"], row["rating"]) == ("visual-question-answering", "mmdemo-vqa-easy", -1)
        assert (row["correction"], row["comment"]) == ("dark brown", "the circle looks darker than that")
        assert row["question"] == "what color is the shape?" and row["output"][0]["answer"] == answer
        assert row["media_sha256"] == hashlib.sha256(IMAGE.read_bytes()).hexdigest()
        assert store.integrity_check()

    os.makedirs(ARTIFACTS, exist_ok=True)
    shot = os.path.join(ARTIFACTS, "feedback-e2e.png")
    page.screenshot(path=shot, full_page=True)
    assert os.path.getsize(shot) > 10_000
    page.close()
