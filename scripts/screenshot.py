"""Take README's screenshots: start the app, ask an example question in headless Chromium, save a PNG; then rate
the answer (assets/feedback.png) and open the Feedback review tab (assets/review.png).

    python scripts/screenshot.py [assets/screenshot.png]

Needs Debian's `chromium` and PyPI's `playwright` (no browser download).
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "screenshot"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(url)


def main(out: str = "assets/screenshot.png") -> None:
    port = free_port()
    data = tempfile.mkdtemp(prefix="mmdemo-screenshot-")  # a fresh feedback database, gone afterwards
    env = {**os.environ, "MMDEMO_FEEDBACK_DB": f"{data}/feedback.db", "MMDEMO_FEEDBACK_PASSWORD": PASSWORD}
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_http(url)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(url)
            page.locator("input[type=file]").first.set_input_files(str(ROOT / "assets/examples/easy-vqa/5.png"))
            page.get_by_label("Question").fill("what color is the circle?")
            page.get_by_role("button", name="Ask", exact=True).click()
            page.get_by_text("ms ·").wait_for(timeout=30_000)
            page.wait_for_timeout(1000)  # let the answer finish its transition
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=out)
            rate(page, ROOT / "assets" / "feedback.png")
            review(page, ROOT / "assets" / "review.png")
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(data, ignore_errors=True)
    print(f"wrote {out}, assets/feedback.png and assets/review.png")


def rate(page, out: Path) -> None:
    """👎 with a correction and a comment under the answer; the result panel with its acknowledgement."""
    tab = page.locator("#tab-ask")
    tab.get_by_label("👎").check()
    tab.get_by_label("What it should have been (optional)").fill("dark red")
    tab.get_by_label("Comment (optional)").fill("looks more red than brown to me")
    tab.get_by_role("button", name="Send feedback").click()
    page.wait_for_timeout(1000)
    tab.get_by_text("Saved 👎").wait_for(timeout=10_000)
    page.locator("#ask-result").screenshot(path=str(out))
    tab.get_by_label("Question").fill("what shape is in the image?")  # and one 👍, for the review's chart
    tab.get_by_role("button", name="Ask", exact=True).click()
    tab.get_by_text("circle ·").wait_for(timeout=30_000)
    tab.get_by_label("👍").check()
    tab.get_by_text("Saved 👍").wait_for(timeout=10_000)


def review(page, out: Path) -> None:
    """The Feedback tab, opened with the password: the chart, the counts and the newest comments with images."""
    page.get_by_role("tab", name="Feedback").click()
    tab = page.locator("#tab-feedback")
    tab.get_by_label("Password").fill(PASSWORD)
    tab.get_by_role("button", name="Show feedback").click()
    tab.locator(".gallery-item, button.thumbnail-item").first.wait_for(timeout=10_000)  # the rows' images came
    page.wait_for_timeout(1500)  # the chart draws
    tab.screenshot(path=str(out))


if __name__ == "__main__":
    main(*sys.argv[1:])
