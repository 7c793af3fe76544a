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


class Optimization:
    """The optimizer named by args.optimizer at args.lr, under a warm-up/cosine schedule of `steps`."""

    def __init__(self, model: torch.nn.Module, args: argparse.Namespace, steps: int):
        decay = getattr(args, "weight_decay", 0.0)
        self.opt = OPTIMIZERS[args.optimizer](model.parameters(), lr=args.lr, weight_decay=decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, warmup_cosine(steps))

    def step(self, loss: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()


def add_train_args(p: argparse.ArgumentParser, out: str) -> None:
    """The flags every `mmdemo train` recipe takes besides its own."""
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (warm-up, then cosine decay)")
    p.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS), help="optimizer")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: best available)")
    p.add_argument("--out", default=out, help="checkpoint folder (written after every epoch)")


def save_epoch(model: torch.nn.Module, args: argparse.Namespace, report: dict, tokenizer=None) -> None:
    """The checkpoint after an epoch, with the arguments and the report so far in its config.json."""
    from mmdemo.models.checkpoint import save_checkpoint

    save_checkpoint(model.eval(), args.out, tokenizer, {"training": {**vars(args), **report}})


def add_eval_args(p: argparse.ArgumentParser, model: str | None, batch_size: int, latency_samples: int) -> None:
    """The flags every `mmdemo eval` recipe takes."""
    p.add_argument("--model", default=model, help="catalog name or checkpoint folder (default: the task's default)")
    p.add_argument("--batch-size", type=int, default=batch_size, help="inputs per batch")
    p.add_argument("--latency-samples", type=int, default=latency_samples, help="single requests timed for p50/p95")
    p.add_argument("--device", default=None, help="cpu, cuda ... (default: best available)")
    p.add_argument("--json", default=None, help="write the report (CONTRACT.md format) to this file")


def label_metrics(truth: list[str], predictions: list[str]) -> dict:
    """Accuracy and macro-F1 (scikit-learn), and the number of errors."""
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": accuracy_score(truth, predictions),
        "macro_f1": f1_score(truth, predictions, average="macro"),
        "errors": sum(p != t for p, t in zip(predictions, truth, strict=True)),
    }


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
