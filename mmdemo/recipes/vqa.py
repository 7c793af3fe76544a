"""Visual question answering on easy-VQA: train and evaluate our VQA model.

mmdemo train --task visual-question-answering --dataset easy-vqa --out runs/vqa
mmdemo eval  --task visual-question-answering --dataset easy-vqa --split test --model runs/vqa
"""

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mmdemo.data import easyvqa
from mmdemo.device import resolve_device
from mmdemo.models import PRESETS, VQAConfig, VQAModel
from mmdemo.models.fusion import FUSIONS
from mmdemo.models.text import build_tokenizer, encode_batch
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

TASK = "visual-question-answering"


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmdemo train", description=__doc__, formatter_class=RAW)
    p.add_argument("--task", default=TASK, choices=[TASK], help="task")
    p.add_argument("--dataset", default="easy-vqa", choices=["easy-vqa"], help="training data (its train split)")
    p.add_argument("--preset", default="base", choices=sorted(PRESETS), help="model size")
    p.add_argument("--fusion", default="product", choices=sorted(FUSIONS), help="fusion strategy")
    p.add_argument("--rnn", default="gru", choices=["gru", "lstm"], help="question encoder")
    p.add_argument("--epochs", type=int, default=8, help="passes over the training images")
    p.add_argument("--batch-size", type=int, default=32, help="images per step (with all their questions)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="weight decay")
    p.add_argument("--seed", type=int, default=0, help="random seed (weights, shuffling, augmentation)")
    p.add_argument("--limit", type=int, default=None, help="train on the first N questions only (smoke runs)")
    add_train_args(p, "runs/vqa")
    return p


def augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flips of uint8 (B, H, W, 3): easy-VQA's shapes and answers are mirror-symmetric."""
    flip = torch.rand(images.size(0), generator=gen) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(2), images)


def batches(groups: list[np.ndarray], batch_size: int, rng: np.random.Generator):
    """Shuffled image rows, and for each batch the question rows that belong to them."""
    order = rng.permutation(len(groups))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        q = np.concatenate([groups[r] for r in rows])
        local = np.concatenate([np.full(len(groups[r]), i) for i, r in enumerate(rows)])
        yield rows, q, local


def train(argv: list[str] | None = None) -> dict:
    args = train_parser().parse_args(argv)
    torch.manual_seed(args.seed)
    rng, gen = np.random.default_rng(args.seed), torch.Generator().manual_seed(args.seed)
    device = resolve_device(args.device)

    data = easyvqa.load("train", limit=args.limit)
    tokenizer = build_tokenizer(data.questions)
    answers = easyvqa.answer_set()
    config = VQAConfig(
        **PRESETS[args.preset], fusion=args.fusion, rnn=args.rnn, vocab_size=tokenizer.get_vocab_size(), answers=answers
    )
    model = VQAModel(config).to(device)

    ids, _ = encode_batch(tokenizer, data.questions)
    ids = torch.tensor(ids)
    targets = torch.tensor([answers.index(a) for a in data.answers])
    images = torch.from_numpy(data.images)
    groups = [np.flatnonzero(data.image_index == r) for r in range(len(images))]

    steps = args.epochs * -(-len(groups) // args.batch_size)
    optim = Optimization(model, args, steps)
    start = time.perf_counter()
    bar = tqdm(total=steps, desc="train", unit="step")
    for epoch in range(args.epochs):
        model.train()
        seen = correct = 0
        for rows, q, local in batches(groups, args.batch_size, rng):
            x = augment(images[rows], gen).to(device)
            logits = model(x, ids[q].to(device), torch.from_numpy(local).to(device))
            y = targets[q].to(device)
            loss = F.cross_entropy(logits, y)
            optim.step(loss)
            seen += len(q)
            correct += (logits.argmax(1) == y).sum().item()
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}", acc=f"{correct / seen:.4f}")
        report = {"epochs": epoch + 1, "train_accuracy": correct / seen, "train_seconds": time.perf_counter() - start}
        save_epoch(model, args, report, tokenizer)
    bar.close()
    print(json.dumps(report))
    return report


def eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmdemo eval", description=__doc__, formatter_class=RAW)
    p.add_argument("--task", default=TASK, choices=[TASK], help="task")
    p.add_argument("--dataset", default="easy-vqa", choices=["easy-vqa"], help="evaluation data")
    p.add_argument("--split", default="test", choices=easyvqa.SPLITS, help="dataset split")
    p.add_argument("--limit", type=int, default=None, help="evaluate the first N questions only")
    add_eval_args(p, None, 256, 200)
    return p


def evaluate(argv: list[str] | None = None) -> dict:
    args = eval_parser().parse_args(argv)
    data = easyvqa.load(args.split, limit=args.limit)
    vqa = pipeline(args.task, model=args.model, device=args.device)
    vqa.batch_size = args.batch_size
    images = [data.images[i] for i in data.image_index]

    start = time.perf_counter()
    predictions = [r[0]["answer"] for r in vqa(images, data.questions, top_k=1)]
    batched_s = time.perf_counter() - start
    latencies = single_request_ms(vqa, zip(images, data.questions, strict=True), args.latency_samples)

    metrics = {
        **label_metrics(data.answers, predictions),
        "answers_per_s_batched": len(data) / batched_s,
    }
    types = np.array([easyvqa.question_type(q) for q in data.questions])
    hits = np.array(predictions) == np.array(data.answers)
    for t in sorted(set(types)):
        metrics[f"accuracy_{t.replace('/', '_').replace(' ', '_')}"] = hits[types == t].mean()
    return write_report(args, vqa.info.name, len(data), metrics, latencies)
