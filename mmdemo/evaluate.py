"""Evaluate a model through the pipeline: `mmdemo eval --task visual-question-answering --dataset easy-vqa`."""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from mmdemo.data import easyvqa
from mmdemo.pipelines import pipeline


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="mmdemo eval", description=__doc__)
    p.add_argument(
        "--task", default="visual-question-answering", choices=["visual-question-answering"], help="task to evaluate"
    )
    p.add_argument("--dataset", default="easy-vqa", choices=["easy-vqa"], help="evaluation data")
    p.add_argument("--split", default="test", choices=easyvqa.SPLITS, help="dataset split")
    p.add_argument("--model", default=None, help="catalog name or checkpoint folder (default: the task's default)")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N questions only")
    p.add_argument("--batch-size", type=int, default=256, help="questions per batch")
    p.add_argument("--latency-samples", type=int, default=200, help="single requests timed for the latency percentiles")
    p.add_argument("--device", default=None, help="cpu, cuda ... (default: best available)")
    p.add_argument("--json", default=None, help="write the report (CONTRACT.md format) to this file")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    data = easyvqa.load(args.split, limit=args.limit)
    vqa = pipeline(args.task, model=args.model, device=args.device)
    vqa.batch_size = args.batch_size
    images = [data.images[i] for i in data.image_index]

    start = time.perf_counter()
    predictions = [r[0]["answer"] for r in vqa(images, data.questions, top_k=1)]
    batched_s = time.perf_counter() - start

    latencies = []
    for image, question in list(zip(images, data.questions, strict=True))[: args.latency_samples]:
        t = time.perf_counter()
        vqa(image, question)
        latencies.append((time.perf_counter() - t) * 1000)

    metrics = {
        "accuracy": accuracy_score(data.answers, predictions),
        "macro_f1": f1_score(data.answers, predictions, average="macro"),
        "errors": int(sum(p != a for p, a in zip(predictions, data.answers, strict=True))),
        "answers_per_s_batched": len(data) / batched_s,
    }
    types = np.array([easyvqa.question_type(q) for q in data.questions])
    hits = np.array(predictions) == np.array(data.answers)
    for t in sorted(set(types)):
        metrics[f"accuracy_{t.replace('/', '_').replace(' ', '_')}"] = float(hits[types == t].mean())
    report = {
        "task": args.task,
        "dataset": args.dataset,
        "split": args.split,
        "model": vqa.info.name,
        "n": len(data),
        "metrics": {k: float(v) for k, v in metrics.items()},
        "latency_ms": {f"p{q}": float(np.percentile(latencies, q)) if latencies else None for q in (50, 95)},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
