"""Image captioning on generated scenes: train and evaluate our Show-and-Tell-style captioner.

    mmdemo train --task image-to-text --dataset scenes --out runs/captioner
    mmdemo eval  --task image-to-text --dataset scenes --split test --model runs/captioner

Every epoch trains on freshly generated scenes (seeds seed, seed+1, ...); the test split is generated
from scenes.TEST_SEED, which training never uses. Captions are scored against every reference with
pycocoevalcap's BLEU and CIDEr.
"""

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from tqdm import tqdm

from mmdemo.data import scenes
from mmdemo.device import resolve_device
from mmdemo.models.captioner import CAPTIONER_PRESETS, Captioner, CaptionerConfig
from mmdemo.models.text import BOS, EOS, PAD, UNK, build_tokenizer, words_of
from mmdemo.pipelines import pipeline
from mmdemo.recipes.common import (
    RAW,
    Optimization,
    add_eval_args,
    add_train_args,
    save_epoch,
    single_request_ms,
    write_report,
)

TASK = "image-to-text"


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmdemo train", description=__doc__, formatter_class=RAW)
    p.add_argument("--task", default=TASK, choices=[TASK], help="task")
    p.add_argument("--dataset", default="scenes", choices=["scenes"], help="generated scenes (mmdemo.data.scenes)")
    p.add_argument("--preset", default="base", choices=sorted(CAPTIONER_PRESETS), help="model size")
    p.add_argument("--size", type=int, default=10_000, help="scenes generated per epoch")
    p.add_argument("--epochs", type=int, default=12, help="epochs, each on new scenes")
    p.add_argument("--batch-size", type=int, default=64, help="scenes per step")
    p.add_argument("--seed", type=int, default=scenes.TRAIN_SEED, help="seed of the first epoch's scenes and weights")
    add_train_args(p, "runs/captioner")
    return p


def _all_words() -> list[str]:
    """Every word the grammar can produce, so any scene's caption tokenizes."""
    shapes = [scenes.Shape(sh, c, sz, 0) for sh in scenes.SHAPES for c in scenes.COLORS for sz in scenes.SIZES]
    return [cap for n in (1, 2, 3, 4) for cap in scenes.describe(shapes[:n])] + [s.phrase for s in shapes]


def encode(tokenizer, captions: list[str]) -> torch.Tensor:
    """[BOS] words [EOS], right-padded: (N, T)."""
    rows = [[2, *e.ids, 3] for e in tokenizer.encode_batch(captions)]
    width = max(map(len, rows))
    return torch.tensor([r + [0] * (width - len(r)) for r in rows])


def train(argv: list[str] | None = None) -> dict:
    args = train_parser().parse_args(argv)
    torch.manual_seed(args.seed)
    device = resolve_device(args.device)
    tokenizer = build_tokenizer(_all_words(), specials=(PAD, UNK, BOS, EOS))
    words = sorted(tokenizer.get_vocab(), key=tokenizer.token_to_id)
    config = CaptionerConfig(**CAPTIONER_PRESETS[args.preset], vocab_size=len(words), words=words)
    model = Captioner(config).to(device)
    steps = args.epochs * -(-args.size // args.batch_size)
    optim = Optimization(model, args, steps)
    start, bar = time.perf_counter(), tqdm(total=steps, desc="train", unit="step")
    for epoch in range(args.epochs):
        data = scenes.generate(args.size, seed=args.seed + epoch)
        images = torch.from_numpy(np.stack([s.image for s in data]))
        ids = encode(tokenizer, [s.captions[0] for s in data])
        model.train()
        for rows in torch.randperm(len(data)).split(args.batch_size):
            x, y = images[rows].to(device), ids[rows].to(device)
            logits = model(x, y[:, :-1])
            loss = F.cross_entropy(logits.flatten(0, 1), y[:, 1:].flatten(), ignore_index=0)
            optim.step(loss)
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}")
        report = {"epochs": epoch + 1, "final_loss": loss.item(), "train_seconds": time.perf_counter() - start}
        save_epoch(model, args, report, tokenizer)
    bar.close()
    print(json.dumps(report))
    return report


def eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmdemo eval", description=__doc__, formatter_class=RAW)
    p.add_argument("--task", default=TASK, choices=[TASK], help="task")
    p.add_argument("--dataset", default="scenes", choices=["scenes"], help="generated scenes")
    p.add_argument("--split", default="test", choices=["test"], help="the held-out scenes (seed scenes.TEST_SEED)")
    p.add_argument("--seed", type=int, default=scenes.TEST_SEED, help="seed of the evaluation scenes")
    p.add_argument("--limit", type=int, default=1000, help="how many scenes")
    p.add_argument("--num-beams", type=int, default=3, help="beam width (1: greedy)")
    add_eval_args(p, None, 128, 100)
    return p


def caption_metrics(predictions: list[str], references: list[list[str]]) -> dict:
    """BLEU-1..4 and CIDEr (pycocoevalcap) and exact match against any reference, on normalised words."""
    norm = build_tokenizer([])  # lower-cases and drops punctuation, as training did
    hyp = {i: [" ".join(words_of(norm, p))] for i, p in enumerate(predictions)}
    ref = {i: [" ".join(words_of(norm, r)) for r in refs] for i, refs in enumerate(references)}
    bleu, _ = Bleu(4).compute_score(ref, hyp, verbose=0)
    cider, _ = Cider().compute_score(ref, hyp)
    exact = np.mean([hyp[i][0] in ref[i] for i in hyp])
    return {**{f"bleu_{n + 1}": b for n, b in enumerate(bleu)}, "cider": cider, "exact_match": exact}


def evaluate(argv: list[str] | None = None) -> dict:
    args = eval_parser().parse_args(argv)
    data = scenes.generate(args.limit, seed=args.seed)
    captioner = pipeline(args.task, model=args.model, device=args.device)
    captioner.batch_size = args.batch_size
    images = [s.image for s in data]
    start = time.perf_counter()
    outputs = captioner(images, num_beams=args.num_beams)
    batched_s = time.perf_counter() - start
    latencies = single_request_ms(
        lambda im: captioner(im, num_beams=args.num_beams), [(im,) for im in images], args.latency_samples
    )
    metrics = caption_metrics([o[0]["generated_text"] for o in outputs], [s.captions for s in data])
    for n in (1, 2, 3, 4):
        subset = [i for i, s in enumerate(data) if len(s.shapes) == n]
        sub = caption_metrics([outputs[i][0]["generated_text"] for i in subset], [data[i].captions for i in subset])
        metrics[f"exact_match_{n}_shapes"] = sub["exact_match"]
    metrics["captions_per_s_batched"] = len(data) / batched_s
    return write_report(args, captioner.info.name, len(data), metrics, latencies)
