"""Take README's screenshot: start the app, ask an example question in headless Chromium, save a PNG.

    python scripts/screenshot.py assets/screenshot.png

Needs Debian's `chromium` and PyPI's `playwright` (no browser download).
"""

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
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
    server = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT)
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
            page.screenshot(path=out)
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
