"""Pieces every recipe shares: optimizers, the learning-rate schedule, latency and the eval report."""

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
RAW = argparse.RawDescriptionHelpFormatter  # keeps the usage examples of module docstrings as written


def warmup_cosine(steps: int, warmup: float = 0.1):
    """Linear warm-up over the first `warmup` of the steps, then cosine decay to zero (a LambdaLR factor)."""
    w = max(1, int(steps * warmup))
    return lambda s: min(1.0, (s + 1) / w) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))


def single_request_ms(run: Callable[..., object], inputs: Sequence[tuple], n: int) -> list[float]:
    """Wall time of `run(*args)` for the first n inputs, one at a time, in milliseconds."""
    times = []
    for args in list(inputs)[:n]:
        start = time.perf_counter()
        run(*args)
        times.append((time.perf_counter() - start) * 1000)
    return times


def write_report(args: argparse.Namespace, model: str, n: int, metrics: dict, latencies: list[float]) -> dict:
    """Print the CONTRACT.md eval report and write it to args.json when given."""
    report = {
        "task": args.task,
        "dataset": args.dataset,
        "split": args.split,
        "model": model,
        "n": n,
        "metrics": {k: float(v) for k, v in metrics.items()},
        "latency_ms": {f"p{q}": float(np.percentile(latencies, q)) if latencies else None for q in (50, 95)},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return report
