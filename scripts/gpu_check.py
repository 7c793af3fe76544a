"""Every GPU check of issue 7 in one run (about 3 minutes on one H200): prints one table and writes JSON.

    python scripts/gpu_check.py --json gpu.json

Models have their real architectures and sizes with random weights, built here (no download): a BLIP-base
captioner (ViT-B/16 at 384 px + BERT-base decoder) and a ViT-B/16 classifier; plus our own VQA model. Each is served
the way the app serves it: `mmdemo.pipeline` (bf16 on the GPU, the image processor on the GPU where it can, dynamic
batching across threads, MMDEMO_MAX_BATCH inputs per model call). Figures:

- naive: plain transformers, fp32, one image at a time (the reference usage);
- single: one client, one request at a time, through the pipeline (p50 is the single-request latency);
- load: many threads calling the pipeline at once for a fixed time (dynamic batching);
- list: the pipeline called with a list of images (the Python API's own batching).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("MMDEMO_MAX_BATCH", "256")  # inputs per model call: a GPU wants large batches
os.environ.setdefault("MMDEMO_BATCH_WAIT_MS", "5")
os.environ["MMDEMO_HUB"] = "off"
os.environ["HF_HUB_OFFLINE"] = "1"

import torch  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runs from a checkout, mmdemo installed or not
PHOTOS = sorted((ROOT / "assets/examples/photos").glob("*.jpg"))
ROWS: list[dict] = []
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # CPU only for a dry run of this script (--quick)
QUICK = 1  # divides every request count (--quick: 64)


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def row(model: str, path: str, clients: int, latencies: list[float], seconds: float, **extra) -> None:
    ms = sorted(x * 1000 for x in latencies)
    r = {
        "model": model,
        "path": path,
        "clients": clients,
        "n": len(ms),
        "throughput": round(len(ms) / seconds, 1),
        "p50_ms": round(statistics.median(ms), 2) if ms else None,
        "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 2) if ms else None,
        **extra,
    }
    ROWS.append(r)
    more = "  ".join(f"{k} {v}" for k, v in extra.items())
    print(
        f"{model:16} {path:7} {clients:>4} clients {r['n']:>7} req {r['throughput']:>9.1f} /s "
        f"p50 {r['p50_ms']:>8} ms p95 {r['p95_ms']:>8} ms  {more}",
        flush=True,
    )


def sequential(call, inputs: list, n: int) -> tuple[list[float], float]:
    latencies, start = [], time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        call(inputs[i % len(inputs)])
        sync()
        latencies.append(time.perf_counter() - t)
    return latencies, time.perf_counter() - start


def under_load(call, inputs: list, clients: int, seconds: float) -> tuple[list[float], float]:
    """`clients` threads calling `call` back to back for `seconds`; every latency of a finished call."""
    latencies, lock, stop = [], threading.Lock(), time.perf_counter() + seconds
    errors: list[str] = []

    def worker(k: int) -> None:
        i = k
        while time.perf_counter() < stop:
            t = time.perf_counter()
            try:
                call(inputs[i % len(inputs)])
            except Exception as e:  # reported, not hidden
                errors.append(repr(e)[:200])
                return
            with lock:
                latencies.append(time.perf_counter() - t)
            i += clients

    clients = max(2, clients // QUICK)
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print(f"  {len(errors)} errors, first: {errors[0]}")
    return latencies, time.perf_counter() - start


def batch_stats(pipe) -> dict:
    sizes = getattr(pipe.backend, "_batcher", None)
    sizes = sizes.batch_sizes if sizes else []
    return {"mean_batch": round(statistics.mean(sizes), 1) if sizes else None, "max_batch": max(sizes, default=None)}


def check_blip(folder: Path, seconds: float) -> None:
    from transformers import BlipForConditionalGeneration, BlipProcessor

    import mmdemo

    images = [Image.open(p).convert("RGB") for p in PHOTOS]
    params = {"max_new_tokens": 20}
    model = BlipForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).to(DEVICE).eval()
    processor = BlipProcessor.from_pretrained(folder)

    def naive(image):
        with torch.no_grad():
            inputs = processor(images=image, return_tensors="pt").to(DEVICE)
            model.generate(**inputs, **params, do_sample=False)

    naive(images[0])
    row("blip-base", "naive", 1, *sequential(naive, images, 30 // QUICK + 1), dtype="fp32")
    model = None  # freed before the pipeline loads its own copy
    pipe = mmdemo.pipeline("image-to-text", "bench-blip-base")
    pipe(images, **params)  # warm: load, kernels, allocator
    row(
        "blip-base",
        "single",
        1,
        *sequential(lambda im: pipe(im, **params), images, 50 // QUICK + 1),
        dtype=str(pipe.backend.model.dtype),
    )
    row(
        "blip-base",
        "single",
        1,
        *sequential(lambda p: pipe(str(p), **params), PHOTOS, 30 // QUICK + 1),
        input="jpeg file",
    )
    breakdown(pipe, images, params)
    for clients in (64, 512):
        pipe.backend._batcher.batch_sizes.clear()
        row(
            "blip-base",
            "load",
            clients,
            *under_load(lambda im: pipe(im, **params), images, clients, seconds),
            **batch_stats(pipe),
        )
    n = 2048 // QUICK
    start = time.perf_counter()
    out = pipe([images[i % len(images)] for i in range(n)], **params)
    row("blip-base", "list", 1, [0.0] * len(out), time.perf_counter() - start)
    print(f"  caption of {PHOTOS[0].name}: {out[0][0]['generated_text'][:60]!r}")


def breakdown(pipe, images: list, params: dict) -> None:
    """Where a caption's time goes: the image processor (CPU, per image) and generate alone at batch 1 and 256."""
    backend = pipe.backend
    processor = type(backend.processor.image_processor).__name__
    print(f"  attention: {backend.model.config._attn_implementation}  processor: {processor}")
    from mmdemo.backends.hf.captioning import pixel_batch

    items = [backend.prepare({"image": images[i % len(images)]}) for i in range(256 // QUICK)]
    for size in (1, len(items)):
        start = time.perf_counter()
        pixels = pixel_batch(backend.processor.image_processor, items[:size], backend.device)
        pixels = pixels.to(backend.device, backend.model.dtype)
        sync()
        print(f"  pixels, batch {size}: {(time.perf_counter() - start) * 1000:.1f} ms (after prepare in the callers)")
        with torch.inference_mode():
            backend.model.generate(pixel_values=pixels, do_sample=False, **params)
            sync()
            start = time.perf_counter()
            ids = backend.model.generate(pixel_values=pixels, do_sample=False, **params)
            sync()
        ms = (time.perf_counter() - start) * 1000
        print(f"  generate, batch {size}: {ms:.1f} ms for {ids.shape[1]} tokens ({ms / ids.shape[1]:.2f} ms a step)")


def check_vit(folder: Path, seconds: float) -> None:
    from transformers import ViTForImageClassification, ViTImageProcessor

    import mmdemo

    images = [Image.open(p).convert("RGB") for p in PHOTOS]
    model = ViTForImageClassification.from_pretrained(folder, dtype=torch.float32).to(DEVICE).eval()
    processor = ViTImageProcessor.from_pretrained(folder)

    def naive(image):
        with torch.no_grad():
            model(**processor(images=image, return_tensors="pt").to(DEVICE)).logits.softmax(-1).topk(5)

    naive(images[0])
    row("vit-b16", "naive", 1, *sequential(naive, images, 50 // QUICK + 1), dtype="fp32")
    model = None  # freed before the pipeline loads its own copy
    pipe = mmdemo.pipeline("image-classification", "bench-vit-b16")
    pipe(images * 64)  # warm
    row("vit-b16", "single", 1, *sequential(pipe, images, 100 // QUICK + 1), dtype=str(pipe.backend.model.dtype))
    print(f"  attention: {pipe.backend.model.config._attn_implementation}")
    for clients in (256, 1024):
        pipe.backend._batcher.batch_sizes.clear()
        row("vit-b16", "load", clients, *under_load(pipe, images, clients, seconds), **batch_stats(pipe))
    for size in (None, 224):
        batch = [images[i % len(images)] for i in range(16_384 // QUICK)]
        if size:
            batch = [im.resize((size, size)) for im in batch[: len(images)]] * (16_384 // QUICK // len(images))
        start = time.perf_counter()
        out = pipe(batch)
        row("vit-b16", "list", 1, [0.0] * len(out), time.perf_counter() - start, input=f"{size or 'photo'} px")


def check_vqa(seconds: float) -> None:
    """Our VQA model on the GPU: bf16 against fp32 on the whole easy-VQA test split, then served under load."""
    import dataclasses

    from easy_vqa import get_test_image_paths, get_test_questions

    import mmdemo
    from mmdemo.backends import load_backend
    from mmdemo.inputs import clean_question, load_image
    from mmdemo.registry import find_model

    questions, truth, ids = get_test_questions()
    paths = get_test_image_paths()
    items = [
        {"image": load_image(paths[i]), "question": clean_question(q)} for q, i in zip(questions, ids, strict=True)
    ]
    info = find_model("visual-question-answering", "mmdemo-vqa-easy")
    answers = {}
    for dtype in ("float32", "bfloat16"):
        backend = load_backend(dataclasses.replace(info, dtype=dtype), DEVICE)
        backend(items[: 256 // QUICK])
        start = time.perf_counter()
        out = [r for s in range(0, len(items), 1024) for r in backend(items[s : s + 1024], top_k=1)]
        sync()
        answers[dtype] = [r[0]["answer"] for r in out]
        acc = sum(a == t for a, t in zip(answers[dtype], truth, strict=True)) / len(items)
        row("vqa", "backend", 1, [0.0] * len(out), time.perf_counter() - start, dtype=dtype, accuracy=round(acc, 4))
    same = sum(a == b for a, b in zip(answers["float32"], answers["bfloat16"], strict=True))
    print(f"  vqa bf16 vs fp32 on the GPU: {same}/{len(items)} answers identical")
    pipe = mmdemo.pipeline("visual-question-answering", "mmdemo-vqa-easy")
    pairs = [(it["image"], it["question"]) for it in items[:512]]
    pipe(*pairs[0])
    row("vqa", "single", 1, *sequential(lambda r: pipe(*r), pairs, 200 // QUICK + 1))
    row("vqa", "load", 256, *under_load(lambda r: pipe(*r), pairs, 256, seconds), **batch_stats(pipe))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=10, help="length of each load phase")
    p.add_argument("--json", default="gpu_check.json")
    p.add_argument("--checks", default="blip,vit,vqa")
    p.add_argument("--quick", action="store_true", help="64 times fewer requests (a dry run of the script on a CPU)")
    args = p.parse_args()
    global QUICK
    QUICK = 64 if args.quick else 1
    import transformers

    from mmdemo.bench import bench_catalog, random_blip_base, random_vit_b16

    name = torch.cuda.get_device_name() if DEVICE == "cuda" else "CPU (dry run)"
    print(f"{name}  torch {torch.__version__}  transformers {transformers.__version__}  "
          f"MMDEMO_MAX_BATCH {os.environ['MMDEMO_MAX_BATCH']}", flush=True)  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="mmdemo-gpu-"))
    checks = args.checks.split(",")
    folders = {}
    if "blip" in checks:
        folders["bench-blip-base"] = random_blip_base(work / "blip-base")
    if "vit" in checks:
        folders["bench-vit-b16"] = random_vit_b16(work / "vit-b16")
    os.environ["MMDEMO_CATALOG"] = str(bench_catalog(folders, work / "catalog.toml"))
    print(f"built {', '.join(folders)} in {work}", flush=True)
    for name, check in (("blip", check_blip), ("vit", check_vit)):
        if name in checks:
            check(folders[f"bench-{'blip-base' if name == 'blip' else 'vit-b16'}"], args.seconds)
    if "vqa" in checks:
        check_vqa(args.seconds)
    Path(args.json).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "device": name, "rows": ROWS}, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
