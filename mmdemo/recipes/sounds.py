"""Audio classification on generated sounds (mmdemo.data.sounds): train and evaluate our audio classifier.

mmdemo train --task audio-classification --dataset sounds --out runs/sounds
mmdemo eval  --task audio-classification --dataset sounds --split test --model runs/sounds --json eval.json

Training clips come from --seed (default 0); the test split is the held-out seed sounds.TEST_SEED,
which training refuses. The front end has no weights, so training computes every clip's log-mel
features once and then trains the CNN and classifier on them.
"""

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mmdemo.data import sounds
from mmdemo.device import resolve_device
from mmdemo.models.audio_classifier import PRESETS, AudioClassifier, AudioClassifierConfig
from mmdemo.pipelines import pipeline
from mmdemo.recipes.common import (
    RAW,
    Optimization,
    add_eval_args,
    add_train_args,
    label_metrics,
    save_epoch,
    single_request_ms,
    write_report,
)

TASK = "audio-classification"
SPLIT_SEEDS = {"train": 0, "test": sounds.TEST_SEED}  # default seed of each split


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmdemo train", description=__doc__, formatter_class=RAW)
    p.add_argument("--task", default=TASK, choices=[TASK], help="task")
    p.add_argument("--dataset", default="sounds", choices=["sounds"], help="training data (generated clips)")
    p.add_argument("--preset", default="base", choices=sorted(PRESETS), help="model size")
    p.add_argument("--size", type=int, default=4000, help="training clips (a multiple of 10 is class-balanced)")
    p.add_argument("--seed", type=int, default=0, help="seed of the training clips, the weights and shuffling")
    p.add_argument("--epochs", type=int, default=4, help="passes over the training clips")
    p.add_argument("--batch-size", type=int, default=64, help="clips per step")
    p.add_argument("--weight-decay", type=float, default=0.0, help="weight decay")
    add_train_args(p, "runs/sounds")
    return p


@torch.no_grad()
def features(model: AudioClassifier, size: int, seed: int, device, chunk: int = 256) -> torch.Tensor:
    """Log-mel features (size, 1, n_mels, frames) of clips 0..size-1, kept in float16 to halve memory."""
    parts = []
    for start in tqdm(range(0, size, chunk), desc="features", unit="chunk"):
        audio = sounds.generate(min(chunk, size - start), seed, start).audio
        parts.append(model.log_mel(torch.from_numpy(audio).to(device)).half().cpu())
    return torch.cat(parts)


def train(argv: list[str] | None = None) -> dict:
    args = train_parser().parse_args(argv)
    if args.seed in (sounds.TEST_SEED, sounds.EXAMPLES_SEED):
        raise ValueError(f"seed {args.seed} is held out for evaluation and examples; train on another seed")
    torch.manual_seed(args.seed)
    rng, device = np.random.default_rng(args.seed), resolve_device(args.device)

    model = AudioClassifier(AudioClassifierConfig(**PRESETS[args.preset], labels=list(sounds.CLASSES))).to(device)
    start = time.perf_counter()
    feats = features(model, args.size, args.seed, device)
    targets = torch.from_numpy(np.arange(args.size) % len(sounds.CLASSES))

    steps = args.epochs * -(-args.size // args.batch_size)
    optim = Optimization(model, args, steps)
    bar = tqdm(total=steps, desc="train", unit="step")
    for epoch in range(args.epochs):
        model.train()
        seen = correct = 0
        for rows in np.array_split(rng.permutation(args.size), steps // args.epochs):
            x, y = feats[rows].to(device).float(), targets[rows].to(device)
            logits = model.classify(x)
            loss = F.cross_entropy(logits, y)
            optim.step(loss)
            seen += len(rows)
            correct += (logits.argmax(1) == y).sum().item()
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}", acc=f"{correct / seen:.4f}")
        report = {"epochs": epoch + 1, "train_accuracy": correct / seen, "train_seconds": time.perf_counter() - start}
        save_epoch(model, args, report)
    bar.close()
    print(json.dumps(report))
    return report


def eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmdemo eval", description=__doc__, formatter_class=RAW)
    p.add_argument("--task", default=TASK, choices=[TASK], help="task")
    p.add_argument("--dataset", default="sounds", choices=["sounds"], help="evaluation data (generated clips)")
    p.add_argument("--split", default="test", choices=sorted(SPLIT_SEEDS), help="test: the held-out seed")
    p.add_argument("--seed", type=int, default=None, help="seed of the clips (default: the split's)")
    p.add_argument("--size", "--limit", type=int, default=2000, help="clips to evaluate")
    add_eval_args(p, None, 64, 100)
    return p


def evaluate(argv: list[str] | None = None) -> dict:
    args = eval_parser().parse_args(argv)
    seed = SPLIT_SEEDS[args.split] if args.seed is None else args.seed
    data = sounds.generate(args.size, seed)
    classifier = pipeline(args.task, model=args.model, device=args.device)
    classifier.batch_size = args.batch_size
    clips = [{"array": a, "sampling_rate": sounds.SAMPLE_RATE} for a in data.audio]

    start = time.perf_counter()
    predictions = [r[0]["label"] for r in classifier(clips, top_k=1)]
    batched_s = time.perf_counter() - start
    latencies = single_request_ms(classifier, [(c,) for c in clips], args.latency_samples)

    hits = np.array(predictions) == np.array(data.labels)
    metrics = {
        **label_metrics(data.labels, predictions),
        "clips_per_s_batched": len(data) / batched_s,
        "seed": seed,
    }
    for label in (c for c in sounds.CLASSES if c in data.labels):
        metrics[f"accuracy_{label.replace('-', '_')}"] = hits[np.array(data.labels) == label].mean()
    return write_report(args, classifier.info.name, len(data), metrics, latencies)
