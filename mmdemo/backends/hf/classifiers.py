"""Classifier runners for the transformers backend: images (ViT, ConvNeXt ...), images against labels the user
types (CLIP, SigLIP), and sounds (AST). Each takes the pipeline's plain items and returns
[{"label", "score"}, ...] best first per item, as CONTRACT.md says.

Scores follow transformers' own pipelines: softmax over the classes, or sigmoid for a model whose config says
it is multi-label; CLIP's softmax runs over the candidate labels, SigLIP scores each label on its own (sigmoid).
"""

import numpy as np
import torch
from transformers import (
    ASTFeatureExtractor,
    ASTForAudioClassification,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoProcessor,
)

from mmdemo.audio import resample
from mmdemo.errors import InputError
from mmdemo.registry import ModelInfo

from .captioning import ImagePixels, pixel_batch
from .loading import load_model, load_processor

HYPOTHESIS = "a photo of {}."  # how a candidate label becomes a sentence for the text encoder
SIGLIP_TEXT_LENGTH = 64  # SigLIP was trained on text padded to 64 tokens, and scores change with other padding


def ranked(probs: torch.Tensor, labels: list[str], top_k: int | None) -> list[list[dict]]:
    """(B, C) probabilities -> per row the top_k (None: all) labels and scores, best first, as plain Python."""
    scores, index = probs.float().topk(min(top_k or len(labels), len(labels)))
    return [
        [{"label": labels[i], "score": s} for s, i in zip(row_s, row_i, strict=True)]
        for row_s, row_i in zip(scores.tolist(), index.tolist(), strict=True)
    ]


def class_probs(logits: torch.Tensor, config) -> torch.Tensor:
    """Sigmoid for a multi-label model (each class on its own), softmax otherwise, as transformers' pipelines."""
    if getattr(config, "problem_type", None) == "multi_label_classification":
        return logits.float().sigmoid()
    return logits.float().softmax(-1)


def id2labels(config) -> list[str]:
    return [config.id2label[i] for i in range(len(config.id2label))]


class HFImageClassifier(ImagePixels):
    """An image classifier (AutoModelForImageClassification) with its image processor; labels from id2label."""

    def __init__(self, info: ModelInfo, device: str | None = None):
        self.info = info
        self.model, self.device = load_model(AutoModelForImageClassification, info, device)
        self.processor = load_processor(AutoImageProcessor, info)
        self.labels = id2labels(self.model.config)

    def validate(self, item: dict) -> None:
        pass

    @torch.inference_mode()
    def __call__(self, items: list[dict], top_k: int = 5) -> list[list[dict]]:
        pixels = pixel_batch(self.processor, items, self.device)
        logits = self.model(pixel_values=pixels.to(self.device, self.model.dtype)).logits  # (B, classes)
        return ranked(class_probs(logits, self.model.config), self.labels, top_k)


class HFZeroShotImageClassifier:
    """Scores images against labels the user types (CLIP, SigLIP): one text pass per call, images batched."""

    def __init__(self, info: ModelInfo, device: str | None = None):
        self.info = info
        self.model, self.device = load_model(AutoModel, info, device)
        self.processor = load_processor(AutoProcessor, info)
        self.siglip = "siglip" in self.model.config.model_type

    def validate(self, item: dict) -> None:
        pass

    def text_inputs(self, labels: list[str]) -> dict:
        sentences = [HYPOTHESIS.format(label) for label in labels]
        if self.siglip:
            options = {"padding": "max_length", "max_length": SIGLIP_TEXT_LENGTH, "truncation": True}
        else:
            options = {"padding": True, "truncation": True}
        return self.processor.tokenizer(sentences, return_tensors="pt", **options)

    @torch.inference_mode()
    def __call__(self, items: list[dict], candidate_labels: list[str], top_k: int | None = None) -> list[list[dict]]:
        text = {k: v.to(self.device) for k, v in self.text_inputs(candidate_labels).items()}
        pixels = self.processor.image_processor(images=[it["image"] for it in items], return_tensors="pt")
        pixels = pixels["pixel_values"].to(self.device, self.model.dtype)
        logits = self.model(**text, pixel_values=pixels).logits_per_image  # (B images, labels)
        probs = logits.float().sigmoid() if self.siglip else logits.float().softmax(-1)
        return ranked(probs, list(candidate_labels), top_k)


class HFAudioClassifier:
    """Audio Spectrogram Transformer: each clip becomes its own fixed-length log-mel patch grid, so clips of any
    length share a batch without changing each other's result."""

    def __init__(self, info: ModelInfo, device: str | None = None):
        self.info = info
        self.model, self.device = load_model(ASTForAudioClassification, info, device)
        self.processor = load_processor(ASTFeatureExtractor, info)
        self.labels = id2labels(self.model.config)
        self.rate = self.processor.sampling_rate

    def validate(self, item: dict) -> None:
        # the filterbank reads 25 ms windows: a shorter clip has no frame at all
        if len(item["audio"]) < 0.025 * item["sampling_rate"]:
            raise InputError("The recording is too short for this model; please use a longer clip.")

    @torch.inference_mode()
    def __call__(self, items: list[dict], top_k: int = 5) -> list[list[dict]]:
        clips = [np.asarray(resample(it["audio"], it["sampling_rate"], self.rate), np.float32) for it in items]
        features = self.processor(clips, sampling_rate=self.rate, return_tensors="pt")["input_values"]
        logits = self.model(input_values=features.to(self.device, self.model.dtype)).logits  # (B, classes)
        return ranked(class_probs(logits, self.model.config), self.labels, top_k)
