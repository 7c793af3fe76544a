"""Image classification on generated scenes: train and evaluate our CNN classifier.

    mmdemo train --task image-classification --dataset scenes --out runs/scene-classifier
    mmdemo eval  --task image-classification --dataset scenes --split test --model runs/scene-classifier

Scenes hold one shape; the label is its colour and shape ("red circle", 24 classes). Every epoch trains on
freshly generated scenes; the test split comes from scenes.TEST_SEED, which training never uses.
"""

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mmdemo.data import scenes
from mmdemo.device import resolve_device
from mmdemo.models.image_classifier import IMAGE_CLASSIFIER_PRESETS, ImageClassifier, ImageClassifierConfig
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

TASK = "image-classification"


def labelled(size: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    data = scenes.generate(size, seed=seed, min_shapes=1, max_shapes=1)
    return torch.from_numpy(np.stack([s.image for s in data])), [s.label for s in data]


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmdemo train", description=__doc__, formatter_class=RAW)
    p.add_argument("--task", default=TASK, choices=[TASK], help="task")
    p.add_argument("--dataset", default="scenes", choices=["scenes"], help="generated one-shape scenes")
    p.add_argument("--preset", default="base", choices=sorted(IMAGE_CLASSIFIER_PRESETS), help="model size")
    p.add_argument("--size", type=int, default=5_000, help="scenes generated per epoch")
    p.add_argument("--epochs", type=int, default=4, help="epochs, each on new scenes")
    p.add_argument("--batch-size", type=int, default=64, help="scenes per step")
    p.add_argument("--seed", type=int, default=scenes.TRAIN_SEED, help="seed of the first epoch's scenes and weights")
    add_train_args(p, "runs/scene-classifier")
    return p


def train(argv: list[str] | None = None) -> dict:
    args = train_parser().parse_args(argv)
    torch.manual_seed(args.seed)
    device = resolve_device(args.device)
    config = ImageClassifierConfig(**IMAGE_CLASSIFIER_PRESETS[args.preset], labels=scenes.LABELS)
    model = ImageClassifier(config).to(device)
    steps = args.epochs * -(-args.size // args.batch_size)
    optim = Optimization(model, args, steps)
    start, bar = time.perf_counter(), tqdm(total=steps, desc="train", unit="step")
    for epoch in range(args.epochs):
        images, labels = labelled(args.size, args.seed + epoch)
        targets = torch.tensor([scenes.LABELS.index(label) for label in labels])
        model.train()
        seen = correct = 0
        for rows in torch.randperm(len(labels)).split(args.batch_size):
            x, y = images[rows].to(device), targets[rows].to(device)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optim.step(loss)
            seen, correct = seen + len(y), correct + (logits.argmax(1) == y).sum().item()
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
    p.add_argument("--dataset", default="scenes", choices=["scenes"], help="generated one-shape scenes")
    p.add_argument("--split", default="test", choices=["test"], help="the held-out scenes (seed scenes.TEST_SEED)")
    p.add_argument("--seed", type=int, default=scenes.TEST_SEED, help="seed of the evaluation scenes")
    p.add_argument("--limit", type=int, default=2000, help="how many scenes")
    add_eval_args(p, "mmdemo-scene-classifier", 256, 100)
    return p


def evaluate(argv: list[str] | None = None) -> dict:
    args = eval_parser().parse_args(argv)
    images, labels = labelled(args.limit, args.seed)
    classifier = pipeline(args.task, model=args.model, device=args.device)
    classifier.batch_size = args.batch_size
    arrays = list(images.numpy())
    start = time.perf_counter()
    predictions = [r[0]["label"] for r in classifier(arrays, top_k=1)]
    batched_s = time.perf_counter() - start
    latencies = single_request_ms(classifier, [(a,) for a in arrays], args.latency_samples)
    metrics = {
        **label_metrics(labels, predictions),
        "images_per_s_batched": len(labels) / batched_s,
    }
    return write_report(args, classifier.info.name, len(labels), metrics, latencies)
