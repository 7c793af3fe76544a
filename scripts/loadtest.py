"""Load test: concurrent gradio_client users against the app as shipped (bundled models), served in this process.

Each client is its own session and cycles through answer -> caption (beam 1) -> classify_image (scene classifier,
EfficientNet) -> classify_audio -> feedback (rating the previous result) on the bundled examples, each client starting
at a different step, and every output is checked against the example's expected one. The
same load runs in batches; after each batch the script records this process's RSS (the server's memory: the app runs
here) and the number of files in the upload folder (GRADIO_TEMP_DIR).

    python scripts/loadtest.py                       # 64 clients x 20 requests, 3 batches
    python scripts/loadtest.py --clients 8 --requests 5 --batches 2

Prints p50/p95 latency per endpoint, throughput, failures by kind (queue-full rejections counted apart) and RSS.
tests/test_load.py runs a smaller load through the same functions.
"""

import argparse
import contextlib
import ctypes
import gc
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assets" / "examples"
ENDPOINTS = ("answer", "caption", "classify_image", "classify_audio", "feedback")
SLOTS = {"answer": "ask", "caption": "caption", "classify_image": "classify", "classify_audio": "listen"}  # feedback
QUEUE_FULL = "queue full"


def _examples(folder: str) -> list[dict]:
    return json.loads((EXAMPLES / folder / "examples.json").read_text())


@dataclass
class Request:
    """One call: endpoint, its arguments (files as paths), the expected output and how to read it from the result."""

    endpoint: str
    args: tuple
    expected: str
    read: object  # result -> str
    files: tuple = ()  # indexes of args that are files to upload


def plan(client: int, count: int) -> list[Request]:
    """`count` requests for client number `client`: the endpoints in turn, each on the next example."""
    vqa, scenes, sounds = _examples("easy-vqa"), _examples("scenes"), _examples("sounds")
    # the scene classifier knows one-shape scenes (as the Classify tab's examples); EfficientNet a photo of known label
    images = [
        (EXAMPLES / "scenes" / e["image"], "mmdemo-scene-classifier", e["label"])
        for e in scenes
        if e["captions"][0].startswith("a ") and " of " not in e["captions"][0]
    ]
    images.append((EXAMPLES / "photos" / "coffee.jpg", "efficientnet-lite0", "espresso"))
    out, start = [], client % (len(ENDPOINTS) - 1)  # clients start at different endpoints, never at feedback
    for i in range(count):
        endpoint, n = ENDPOINTS[(start + i) % len(ENDPOINTS)], client + i // len(ENDPOINTS)
        if endpoint == "answer":
            e = vqa[n % len(vqa)]
            args = (str(EXAMPLES / "easy-vqa" / e["image"]), e["question"], "mmdemo-vqa-easy")
            out.append(Request(endpoint, args, e["answer"], lambda r: r[0]["label"], (0,)))
        elif endpoint == "caption":
            e = scenes[n % len(scenes)]
            args = (str(EXAMPLES / "scenes" / e["image"]), "mmdemo-captioner", 1)
            out.append(Request(endpoint, args, e["captions"][0].replace(",", ""), lambda r: r[0], (0,)))
        elif endpoint == "classify_image":
            path, model, label = images[n % len(images)]
            out.append(Request(endpoint, (str(path), model), label, lambda r: r[0]["label"], (0,)))
        elif endpoint == "classify_audio":
            e = sounds[n % len(sounds)]
            args = (str(EXAMPLES / "sounds" / e["audio"]), "mmdemo-sounds")
            out.append(Request(endpoint, args, e["label"], lambda r: r[0]["label"], (0,)))
        else:  # rates the result of this session's previous request
            args = (SLOTS[out[-1].endpoint], "👍", "load test", "", f"client-{client}")
            out.append(Request(endpoint, args, "Saved 👍", lambda r: r.split(" (#")[0]))
    return out


@dataclass
class Results:
    latencies: dict = field(default_factory=lambda: defaultdict(list))  # endpoint -> [seconds]
    failures: Counter = field(default_factory=Counter)  # kind -> count
    wrong: list = field(default_factory=list)  # (endpoint, args, expected, got)
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def requests(self) -> int:
        refused = sum(n for kind, n in self.failures.items() if not kind.startswith("wrong"))  # wrong: answered
        return sum(len(v) for v in self.latencies.values()) + refused


def failure_kind(error: Exception) -> str:
    text = str(error)
    if "Queue is full" in text or "queue is full" in text.lower():
        return QUEUE_FULL
    return f"{type(error).__name__}: {' '.join(text.split())[:80]}"


def run_client(client, requests: list[Request], results: Results) -> None:
    from gradio_client import handle_file

    for r in requests:
        args = tuple(handle_file(a) if i in r.files else a for i, a in enumerate(r.args))
        start = time.perf_counter()
        try:
            result = client.predict(*args, api_name=f"/{r.endpoint}")
        except Exception as e:
            with results.lock:
                results.failures[failure_kind(e)] += 1
            continue
        took = time.perf_counter() - start
        got = r.read(result)
        with results.lock:
            results.latencies[r.endpoint].append(took)
            if got != r.expected:
                results.wrong.append((r.endpoint, r.args, r.expected, got))
                results.failures[f"wrong {r.endpoint}"] += 1


def run_batch(clients: list, per_client: int) -> Results:
    """Every client sends its `per_client` requests, one after another, all clients at once."""
    results = Results()
    start = time.perf_counter()
    with ThreadPoolExecutor(len(clients)) as pool:
        jobs = [pool.submit(run_client, c, plan(i, per_client), results) for i, c in enumerate(clients)]
        for job in jobs:
            job.result()
    results.seconds = time.perf_counter() - start
    return results


def rss_mb() -> float:
    """This process's resident memory (MB): psutil where installed, else /proc/self/statm. Garbage is collected and
    glibc asked to return freed heap pages first, so that what is measured is memory still held, not the
    allocator's free lists (which 100 threads' arenas make large and noisy)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def files_under(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def report(results: Results, clients: int) -> str:
    lines = [
        f"{results.requests} requests from {clients} clients in {results.seconds:.1f} s: "
        f"{results.requests / results.seconds:.1f} requests/s"
    ]
    for endpoint in ENDPOINTS:
        values = results.latencies.get(endpoint)
        if values:
            p50, p95 = percentile(values, 50) * 1000, percentile(values, 95) * 1000
            lines.append(f"  {endpoint:15} n={len(values):5}  p50 {p50:7.0f} ms  p95 {p95:7.0f} ms")
    others = {kind: n for kind, n in results.failures.items() if kind != QUEUE_FULL}
    lines.append(f"  queue-full rejections: {results.failures[QUEUE_FULL]}; other failures: {others or 'none'}")
    return "\n".join(lines)


def start_app(home: Path):
    """The app as shipped, in this process, with its own feedback database and upload folder: (ui, demo, url)."""
    os.environ["MMDEMO_FEEDBACK_DB"] = str(home / "db" / "feedback.db")
    os.environ["GRADIO_TEMP_DIR"] = str(home / "uploads")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import logging
    import socket

    from mmdemo import ui

    logging.getLogger("mmdemo.requests").setLevel(logging.WARNING)  # one line per request: too many here
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = ui.build_demo()
    _, url, _ = ui.launch(demo, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    ui.WARMED.wait(300)
    return ui, demo, url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=20, help="per client and batch")
    parser.add_argument("--batches", type=int, default=3)
    args = parser.parse_args(argv)

    from gradio_client import Client

    home = Path(tempfile.mkdtemp(prefix="mmdemo-load-"))
    ui, demo, url = start_app(home)
    try:
        print(f"app at {url}; model concurrency {ui.MODEL_CONCURRENCY}, queue size {ui.QUEUE_SIZE}", flush=True)
        with ThreadPoolExecutor(16) as pool:
            clients = list(pool.map(lambda _: Client(url, verbose=False), range(args.clients)))
        uploads = home / "uploads"
        print(f"RSS at start {rss_mb():.0f} MB; files in the upload folder {files_under(uploads)}", flush=True)
        for batch in range(1, args.batches + 1):
            results = run_batch(clients, args.requests)
            print(f"batch {batch}: " + report(results, args.clients), flush=True)
            print(f"  RSS {rss_mb():.0f} MB; files in the upload folder {files_under(uploads)}", flush=True)
            for wrong in results.wrong[:5]:
                print(f"  wrong: {wrong}", flush=True)
        rows = ui.feedback_store().rows(limit=100_000)
        print(f"feedback rows stored: {len(rows)}")
    finally:
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
