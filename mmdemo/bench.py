"""`mmdemo bench`: the naive way and mmdemo's serving path side by side, in one process and one run.

For each scenario (a task and its model):
- naive: the plain reference usage: one request at a time, the model called directly on one input, fp32;
- list: the pipeline called once with every input (Python API batching);
- in-process: 1, 8 and 32 threads calling the pipeline one input each (dynamic batching across callers);
- rest: 1, 8 and 32 clients calling the running app's REST API (mmdemo.api) on loopback;
- http: 1, 8 and 32 clients calling it through Gradio's API (POST /call/<name>, then its event stream).
The app is started, in this process, after every scenario's Python API phases (they run as in a library user's
process, with no server), for the HTTP phases. It prints throughput, p50/p95 latency, peak memory and the ratios to
naive, and writes JSON (and a PNG plot when matplotlib is installed).

    mmdemo bench                                   # the bundled models (VQA, captioner, classifiers, sounds)
    mmdemo bench --scenarios vqa --requests 2048   # one scenario, more requests
    mmdemo bench --scenarios blip-base             # a BLIP-base-sized captioner (random weights, built locally)
"""

import argparse
import contextlib
import json
import logging
import os
import platform
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from mmdemo.cache import keep_freed_memory
from mmdemo.registry import ASSETS

EXAMPLES = ASSETS / "examples"


@dataclass
class Scenario:
    name: str
    task: str
    model: str
    inputs: list  # one request's positional arguments each
    params: dict = field(default_factory=dict)
    route: str | None = None  # the app's REST API route (mmdemo.api.ROUTES) and Gradio API name
    http_args: object = None  # request -> the Gradio endpoint's arguments
    naive: object = None  # (scenario, inputs) -> None: runs them the naive way (None: the backend, one at a time)
    requests: int = 256  # requests per phase (default)


def _examples(folder: str, key: str = "image") -> list[dict]:
    items = json.loads((EXAMPLES / folder / "examples.json").read_text())
    return [{**it, key: str(EXAMPLES / folder / it[key])} for it in items]


def _scenarios() -> dict[str, callable]:
    def vqa():
        inputs = [(e["image"], e["question"]) for e in _examples("easy-vqa")]
        return Scenario("vqa", "visual-question-answering", "mmdemo-vqa-easy", inputs, {"top_k": 5}, "answer",
                        lambda r: (r[0], r[1], "mmdemo-vqa-easy"), requests=4096)  # fmt: skip

    def caption():
        inputs = [(e["image"],) for e in _examples("scenes")]
        return Scenario("caption", "image-to-text", "mmdemo-captioner", inputs, {"num_beams": 1}, "caption",
                        lambda r: (r[0], "mmdemo-captioner", 3), requests=256)  # fmt: skip

    def classify():
        inputs = [(e["image"],) for e in _examples("scenes")]
        return Scenario("classify", "image-classification", "mmdemo-scene-classifier", inputs, {"top_k": 5},
                        "classify_image", lambda r: (r[0], "mmdemo-scene-classifier"), requests=512)  # fmt: skip

    def sounds():
        inputs = [(e["audio"],) for e in _examples("sounds", key="audio")]
        return Scenario("sounds", "audio-classification", "mmdemo-sounds", inputs, {"top_k": 5}, "classify_audio",
                        lambda r: (r[0], "mmdemo-sounds"), requests=512)  # fmt: skip

    def blip_base():
        inputs = [(str(p),) for p in sorted((EXAMPLES / "photos").glob("*.jpg"))]
        params = {"num_beams": 1, "max_new_tokens": 20}
        return Scenario("blip-base", "image-to-text", "bench-blip-base", inputs, params, naive=_naive_blip,
                        requests=16)  # fmt: skip

    return {"vqa": vqa, "caption": caption, "classify": classify, "sounds": sounds, "blip-base": blip_base}


# --- measuring ---


def _reset_peak() -> None:
    """Start a new peak-memory window (Linux: VmHWM back to the current RSS)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def drive(call, requests: list, clients: int) -> dict:
    """`call(request)` for every request from `clients` threads at once; throughput, latency and peak memory."""
    latencies, errors, lock = [], [], threading.Lock()

    def worker(share):
        for request in share:
            start = time.perf_counter()
            try:
                call(request)
            except Exception as e:
                with lock:
                    errors.append(f"{type(e).__name__}: {e}"[:200])
                continue
            with lock:
                latencies.append(time.perf_counter() - start)

    shares = [requests[i::clients] for i in range(clients)]
    threads = [threading.Thread(target=worker, args=(share,)) for share in shares]
    _reset_peak()
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return _figures(latencies, wall, errors)


def _figures(latencies: list[float], wall: float, errors: list[str]) -> dict:
    ms = sorted(x * 1000 for x in latencies)
    pick = (lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]) if ms else (lambda q: float("nan"))
    return {
        "n": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": round(wall, 3),
        "throughput": round(len(latencies) / wall, 2),
        "p50_ms": round(statistics.median(ms), 2) if ms else None,
        "p95_ms": round(pick(0.95), 2),
        "peak_mb": round(_peak_mb(), 1),
    }


# --- the paths ---


def _naive_backend(scenario: Scenario):
    """The reference usage of our own models: decode, check, one input per model call, fp32. Returns request -> None."""
    from mmdemo.audio import load_audio
    from mmdemo.backends import load_backend
    from mmdemo.inputs import clean_question, load_image
    from mmdemo.registry import find_model

    backend = load_backend(find_model(scenario.task, scenario.model), "cpu")

    def one(request) -> None:
        if scenario.task == "audio-classification":
            item = {"audio": load_audio(request[0]), "sampling_rate": 16_000}
        else:
            item = {"image": load_image(request[0])}
            if len(request) > 1:
                item["question"] = clean_question(request[1])
        backend.validate(item)
        backend([item], **scenario.params)

    return one


def _naive_blip(scenario: Scenario):
    """Plain transformers: processor + generate, one image at a time, fp32, greedy. Returns request -> None."""
    import torch
    from PIL import Image
    from transformers import BlipForConditionalGeneration, BlipProcessor

    from mmdemo.registry import find_model

    folder = find_model(scenario.task, scenario.model).path
    model = BlipForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    processor = BlipProcessor.from_pretrained(folder)

    def one(request) -> None:
        with torch.no_grad():
            inputs = processor(images=Image.open(request[0]).convert("RGB"), return_tensors="pt")
            model.generate(**inputs, max_new_tokens=scenario.params["max_new_tokens"], do_sample=False)

    return one


def random_blip_base(out: Path) -> Path:
    """A BlipForConditionalGeneration of BLIP-base's sizes (ViT-B/16 at 384 px, a BERT-base decoder, a 30,524-token
    vocabulary) with random weights, its tokenizer and processor built in code: the speed of the real model, no
    download."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(30_517)] + ["[DEC]", "[DUMMY]"]
    text = dict(vocab_size=len(words), bos_token_id=words.index("[DEC]"), pad_token_id=0, sep_token_id=3)
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(BlipConfig(text_config=text)).eval()
    with torch.no_grad():  # default inits barely depend on the image; widen them so captions differ
        for p in model.parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.02)
    model.save_pretrained(out)
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)}, bos_token="[DEC]")
    BlipProcessor(BlipImageProcessor(size={"height": 384, "width": 384}), tokenizer).save_pretrained(out)
    return out


def random_vit_b16(out: Path) -> Path:
    """A ViTForImageClassification of ViT-B/16's sizes (224 px, 12 layers of 768, 1,000 classes) with random weights
    and its image processor: the speed of google/vit-base-patch16-224, no download."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    ViTForImageClassification(ViTConfig(num_labels=1000)).eval().save_pretrained(out)
    ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(out)
    return out


def bench_catalog(folders: dict[str, Path], out: Path) -> Path:
    """A catalog file (MMDEMO_CATALOG) naming the random models built above: {"bench-blip-base": folder, ...}."""
    kinds = {
        "bench-blip-base": ("image-to-text", "blip-caption", "BLIP-base-sized captioner"),
        "bench-vit-b16": ("image-classification", "image-classifier", "ViT-B/16-sized classifier"),
    }
    entries = []
    for name, folder in folders.items():
        task, runner, what = kinds[name]
        entries.append(f"""[[model]]
name = "{name}"
tasks = ["{task}"]
backend = "transformers"
runner = "{runner}"
path = "{folder.as_posix()}"
offline = true
dtype = "{os.environ.get("MMDEMO_BENCH_DTYPE", "auto")}"
cpu_bf16 = true
description = "{what} with random weights (mmdemo bench)"
""")
    out.write_text("\n".join(entries))
    return out


def bench(names: list[str], clients: list[int], requests: int | None, http: bool) -> list[dict]:
    """Every phase of every named scenario; returns one row of figures per phase (printed as they come)."""
    scenarios, rows = _scenarios(), []
    chosen = []
    for name in names:
        if name == "blip-base" and not os.environ.get("MMDEMO_CATALOG"):
            folder = random_blip_base(Path(tempfile.mkdtemp(prefix="mmdemo-bench-")) / "blip-base")
            os.environ["MMDEMO_CATALOG"] = str(bench_catalog({"bench-blip-base": folder}, folder.parent / "c.toml"))
        chosen.append(scenarios[name]())
        _bench_python(chosen[-1], clients, requests, rows)
    served = [s for s in chosen if s.route]
    if http and served:  # the app starts only now: the Python API's phases ran as a library user's would, no server
        server = _start_app()
        try:
            for s in served:
                _bench_http(s, clients, requests, server, rows)
        finally:
            server[0].close()
    return rows


def _adder(s: Scenario, rows: list[dict]):
    def add(path: str, c: int, figures: dict) -> None:
        rows.append({"scenario": s.name, "model": s.model, "path": path, "clients": c, **figures})
        _print_row(rows[-1], rows)

    return add


def _bench_python(s: Scenario, clients: list[int], requests: int | None, rows: list[dict]) -> None:
    """The naive way, the list API and concurrent callers of the pipeline, in this process."""
    import mmdemo

    add, n = _adder(s, rows), requests or s.requests
    work = [s.inputs[i % len(s.inputs)] for i in range(n)]
    pipe = mmdemo.pipeline(s.task, s.model)
    pipe(*[list(c) for c in zip(*work[:64], strict=True)], **s.params)  # loaded and warm (a full batch) before timing
    naive = (s.naive or _naive_backend)(s)
    add("naive", 1, drive(naive, work[: max(8, n // 4)], 1))
    del naive
    columns = [list(c) for c in zip(*work, strict=True)]
    whole = drive(lambda _: pipe(*columns, **s.params), [None], 1)
    add("list", 1, {**whole, "n": n, "throughput": round(n / whole["seconds"], 2), "p50_ms": None, "p95_ms": None})
    for c in clients:
        add("in-process", c, drive(lambda r: pipe(*r, **s.params), work, c))


def _bench_http(s: Scenario, clients: list[int], requests: int | None, server, rows: list[dict]) -> None:
    """Concurrent HTTP clients on the app: its REST API, then Gradio's API."""
    add, n = _adder(s, rows), min(requests or s.requests, 1024)  # HTTP is slower: at most 1,024 requests a phase
    work = [s.inputs[i % len(s.inputs)] for i in range(n)]
    for c in clients:
        add("rest", c, _drive_rest(server, s, work[: max(c * 8, n // 2)], c))
    for c in clients:
        add("http", c, _drive_http(server, s, work[: max(c * 4, n // 4)], c))


def _start_app():
    """The app, in this process, on a free loopback port: (demo, url)."""
    import socket

    from mmdemo import ui

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo = ui.build_demo()
    _, url, _ = ui.launch(demo, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    logging.getLogger("mmdemo.requests").setLevel(logging.WARNING)  # a line per request: not for this terminal
    ui.WARMED.wait(300)  # its models loaded and warmed up in the background: not while anything is measured
    return demo, url


def _drive_rest(server, s: Scenario, work: list, clients: int) -> dict:
    """`clients` threads posting requests to the REST API (multipart upload, JSON reply), each on its own connection.
    The files are read once beforehand: what is measured is the server, not this machine's disk."""
    import httpx

    from mmdemo.api import PREFIX, ROUTES

    route, url = ROUTES[s.route], server[1].rstrip("/") + f"{PREFIX}/{s.route}"
    files = {path: Path(path).read_bytes() for path in {request[0] for request in work}}
    options = {name: str(value) for name, value in s.params.items() if name in route.options}
    local = threading.local()

    def call(request) -> None:
        if not hasattr(local, "http"):
            local.http = httpx.Client(timeout=120)
        upload = {route.file: (Path(request[0]).name, files[request[0]])}
        data = {"model": s.model, **options, **dict(zip(route.text, request[1:], strict=True))}
        local.http.post(url, files=upload, data=data).raise_for_status()

    return drive(call, work, clients)


def _drive_http(server, s: Scenario, work: list, clients: int) -> dict:
    """`clients` threads calling the endpoint through Gradio's API (httpx: POST /call/<name>, then read
    its event stream), each with its own connection and session (Gradio builds a session's state once: a client
    without one pays that on every call). Every example file is uploaded once beforehand, as a page
    re-submitting the same upload does, so that what is measured is the endpoint."""
    import httpx

    base = server[1].rstrip("/") + "/gradio_api"
    uploaded = {}
    with httpx.Client(timeout=60) as http:
        for request in work:
            for arg in s.http_args(request):
                if isinstance(arg, str) and Path(arg).is_file() and arg not in uploaded:
                    with open(arg, "rb") as f:
                        path = http.post(f"{base}/upload", files={"files": f}).raise_for_status().json()[0]
                    uploaded[arg] = {"path": path, "meta": {"_type": "gradio.FileData"}}
    local = threading.local()

    def call(request) -> None:
        if not hasattr(local, "http"):  # each client: its own connection and session, as a browser tab or gradio_client
            local.http, local.session = httpx.Client(timeout=120), uuid.uuid4().hex
        data = [uploaded.get(a, a) if isinstance(a, str) else a for a in s.http_args(request)]
        body = {"data": data, "session_hash": local.session}
        event = local.http.post(f"{base}/call/{s.route}", json=body).raise_for_status().json()
        reply = local.http.get(f"{base}/call/{s.route}/{event['event_id']}").raise_for_status().text
        if "event: complete" not in reply:
            raise RuntimeError(reply.strip().splitlines()[-1][:200])

    return drive(call, work, clients)


def _print_row(row: dict, rows: list[dict]) -> None:
    naive = next((r for r in rows if r["scenario"] == row["scenario"] and r["path"] == "naive"), None)
    ratio = f"{row['throughput'] / naive['throughput']:6.1f}×" if naive and naive["throughput"] else "      "
    p50 = "-" if row.get("p50_ms") is None else f"{row['p50_ms']:.1f}"
    p95 = "-" if row.get("p95_ms") is None else f"{row['p95_ms']:.1f}"
    print(
        f"{row['scenario']:10} {row['path']:11} {row['clients']:>3} clients {row['n']:>6} req "
        f"{row['throughput']:>9.1f} /s {ratio} p50 {p50:>8} ms p95 {p95:>8} ms peak {row['peak_mb']:>7.0f} MB"
        + (f"  errors {row['errors']}: {row['first_error']}" if row.get("errors") else ""),
        flush=True,
    )


def plot(rows: list[dict], out: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        print("(no plot: pip install matplotlib)")
        return False
    names = list(dict.fromkeys(r["scenario"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        mine = [r for r in rows if r["scenario"] == name]
        for path, style, label in (
            ("in-process", "o-", "in-process"),
            ("rest", "^-", "REST API"),
            ("http", "s--", "Gradio API"),
        ):
            points = [(r["clients"], r["throughput"]) for r in mine if r["path"] == path]
            if points:
                ax.plot(*zip(*points, strict=True), style, label=f"mmdemo {label}")
        for path, color in (("naive", "gray"), ("list", "tab:green")):
            for r in mine:
                if r["path"] == path:
                    ax.axhline(r["throughput"], color=color, ls=":", label=f"{path} ({r['throughput']:.0f}/s)")
        ax.set(title=name, xlabel="concurrent clients", ylabel="requests / s", xscale="log", yscale="log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return True


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="mmdemo bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scenarios", default="vqa,caption,classify,sounds", help="comma-separated; also: blip-base")
    p.add_argument("--clients", default="1,8,32", help="concurrent clients per phase")
    p.add_argument("--requests", type=int, default=None, help="requests per phase (default: per scenario)")
    p.add_argument("--no-http", action="store_true", help="skip the HTTP phases")
    p.add_argument("--json", default="bench.json", help="where to write the figures")
    p.add_argument("--plot", default="bench.png", help="where to draw them (needs matplotlib)")
    args = p.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]
    print(f"mmdemo bench on {platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}", flush=True)
    keep_freed_memory()  # as the app does
    rows = bench(args.scenarios.split(","), clients, args.requests, not args.no_http)
    Path(args.json).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "rows": rows}, indent=1))
    drawn = plot(rows, Path(args.plot))
    print(f"wrote {args.json}" + (f" and {args.plot}" if drawn else ""))
