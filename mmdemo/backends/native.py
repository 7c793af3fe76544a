"""The native backend: our own PyTorch models, loaded from self-describing checkpoint folders."""

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from mmdemo.audio import resample
from mmdemo.device import resolve_device
from mmdemo.errors import InputError
from mmdemo.models.checkpoint import for_inference, load_checkpoint
from mmdemo.models.text import encode_batch, unknown_words
from mmdemo.registry import ModelInfo


def load(info: ModelInfo, device: str | None = None):
    """The runner for the checkpoint's architecture (config.json names it)."""
    architecture = json.loads((Path(info.path) / "config.json").read_text())["architecture"]
    return RUNNERS[architecture](info, device)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def native_dtype(info: ModelInfo, device: torch.device) -> torch.dtype:
    """The catalog entry's dtype. "auto": fp32, or bf16 on a CPU that computes it natively (AVX512-BF16, AMX) for
    models whose entry says `cpu_bf16 = true`: set where bf16 was measured faster and to agree with fp32. (On an H200
    our VQA model answers 26,600/s in fp32 and 25,600/s in bf16: fp32 stays; scripts/gpu_check.py.)"""
    if info.dtype != "auto":
        return DTYPES[info.dtype]
    native_bf16 = device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return torch.bfloat16 if info.extra.get("cpu_bf16") and native_bf16 else torch.float32


def fit_square(image: Image.Image, size: int) -> Image.Image:
    """Scale to fit size×size without distortion, padding with the image's corner colour."""
    if image.size == (size, size):
        return image
    scale = size / max(image.size)  # scale first, keeping very thin images at least 1 pixel across
    fitted = image.resize(tuple(max(1, round(d * scale)) for d in image.size), Image.Resampling.BILINEAR)
    return ImageOps.pad(fitted, (size, size), Image.Resampling.BILINEAR, color=image.getpixel((0, 0)))


def _square(item: dict, size: int) -> np.ndarray:
    """The item's image fitted to size×size, uint8 (size, size, 3): made by `prepare` when the pipeline ran it."""
    pixels = item.get("pixels")
    return pixels if pixels is not None else np.asarray(fit_square(item["image"], size))


def _pixels(items: list[dict], size: int, device) -> torch.Tensor:
    """uint8 (B, size, size, 3) from the items' images."""
    return torch.from_numpy(np.stack([_square(it, size) for it in items])).to(device)


class SquareImages:
    """`prepare`: each image resized before batching (by its caller, or for a lone small input by the batcher's
    worker: see Pipeline._run); the batch's model call then only stacks them."""

    def prepare(self, item: dict) -> dict:
        return {**item, "pixels": _square(item, self.model.config.image_size)}


class NativeVQA(SquareImages):
    """Answers questions with a VQAModel checkpoint; scores are softmax probabilities."""

    def __init__(self, info: ModelInfo, device: str | None = None):
        self.info = info
        self.device = resolve_device(device)
        self.model, self.tokenizer, self.meta = load_checkpoint(info.path, self.device)
        self.model = for_inference(self.model, native_dtype(info, self.device))
        self.answers = self.model.config.answers
        self.vocab = sorted(w for w in self.tokenizer.get_vocab() if not w.startswith("["))

    def validate(self, item: dict) -> None:
        unknown = unknown_words(self.tokenizer, item["question"])
        if unknown:
            raise InputError(
                f"This model does not know the word{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))}. "
                f"It was trained on simple questions about one shape, using: {' '.join(self.vocab)}."
            )

    @torch.inference_mode()
    def __call__(self, items: list[dict], top_k: int = 5) -> list[list[dict]]:
        images = _pixels(items, self.model.config.image_size, self.device)  # (B, H, W, 3)
        ids, _ = encode_batch(self.tokenizer, [it["question"] for it in items])
        logits = self.model(images, torch.tensor(ids, device=self.device))
        scores, index = logits.float().softmax(-1).topk(min(top_k, len(self.answers)))
        return [
            [{"answer": self.answers[i], "score": s} for s, i in zip(row_s, row_i, strict=True)]
            for row_s, row_i in zip(scores.tolist(), index.tolist(), strict=True)
        ]


class NativeModel(SquareImages):
    """A checkpoint loaded once on its device; images need no check beyond the pipeline's."""

    def __init__(self, info: ModelInfo, device: str | None = None):
        self.info = info
        self.device = resolve_device(device)
        self.model, self.tokenizer, self.meta = load_checkpoint(info.path, self.device)
        self.model = for_inference(self.model, native_dtype(info, self.device))

    def validate(self, item: dict) -> None:
        pass


class NativeCaptioner(NativeModel):
    @torch.inference_mode()
    def __call__(self, items: list[dict], num_beams: int = 3, max_new_tokens: int = 30) -> list[list[dict]]:
        images = _pixels(items, self.model.config.image_size, self.device)
        ids, _ = self.model.generate(images, num_beams=num_beams, max_new_tokens=max_new_tokens)
        return [[{"generated_text": self.model.decode(row)}] for row in ids]

    @torch.inference_mode()
    def stream(self, item: dict, max_new_tokens: int = 30):
        """One image's greedy caption, the text so far after each word."""
        words = []
        for word in self.model.greedy_words(_pixels([item], self.model.config.image_size, self.device), max_new_tokens):
            words.append(word)
            yield self.model.decode(words)


class NativeImageClassifier(NativeModel):
    @torch.inference_mode()
    def __call__(self, items: list[dict], top_k: int = 5) -> list[list[dict]]:
        labels = self.model.config.labels
        logits = self.model(_pixels(items, self.model.config.image_size, self.device))
        scores, index = logits.float().softmax(-1).topk(min(top_k, len(labels)))
        return [
            [{"label": labels[i], "score": s} for s, i in zip(row_s, row_i, strict=True)]
            for row_s, row_i in zip(scores.tolist(), index.tolist(), strict=True)
        ]


class NativeAudioClassifier:
    """Labels sounds with an AudioClassifier checkpoint; scores are softmax probabilities.

    Clips of equal length share a forward pass; padding a shorter clip would change its features (each clip
    is scaled to its own loudest bin, and convolutions see the padding), so batching never changes a result.
    """

    def __init__(self, info: ModelInfo, device: str | None = None):
        self.info = info
        self.device = resolve_device(device)
        self.model, _, self.meta = load_checkpoint(info.path, self.device)
        self.model = for_inference(self.model, native_dtype(info, self.device))
        self.labels, self.rate = self.model.config.labels, self.model.config.sample_rate

    def validate(self, item: dict) -> None:
        if len(item["audio"]) * self.rate < (self.model.config.n_fft // 2 + 1) * item["sampling_rate"]:
            raise InputError("The recording is too short for this model; please use a longer clip.")

    @torch.inference_mode()
    def __call__(self, items: list[dict], top_k: int = 5) -> list[list[dict]]:
        clips = [resample(it["audio"], it["sampling_rate"], self.rate) for it in items]
        by_length: dict[int, list[int]] = {}
        for n, clip in enumerate(clips):
            by_length.setdefault(len(clip), []).append(n)
        results: list = [None] * len(clips)
        for rows in by_length.values():
            logits = self.model(torch.from_numpy(np.stack([clips[r] for r in rows])).to(self.device))  # (b, labels)
            scores, index = logits.float().softmax(-1).topk(min(top_k, len(self.labels)))
            for r, row_s, row_i in zip(rows, scores.tolist(), index.tolist(), strict=True):
                results[r] = [{"label": self.labels[i], "score": s} for s, i in zip(row_s, row_i, strict=True)]
        return results


RUNNERS = {  # checkpoint architecture -> runner class
    "mmdemo-vqa": NativeVQA,
    "mmdemo-audio-classifier": NativeAudioClassifier,
    "mmdemo-captioner": NativeCaptioner,
    "mmdemo-image-classifier": NativeImageClassifier,
}
