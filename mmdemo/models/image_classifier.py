"""An image classifier from the same parts: the CNN image encoder, pooled, and the MLP decoder."""

from dataclasses import dataclass, field

import torch
from torch import nn

from mmdemo.models.decoders import ClassifierDecoder
from mmdemo.models.encoders import CNNImageEncoder, normalize_pixels


@dataclass
class ImageClassifierConfig:
    image_size: int = 64  # images are fitted to image_size x image_size before the CNN
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)  # per-channel normalisation of [0, 1] pixels
    image_std: tuple[float, ...] = (0.25, 0.25, 0.25)
    cnn_channels: tuple[int, ...] = (32, 64, 64)  # one conv+pool stage per entry
    hidden: int = 128  # hidden layer of the MLP decoder
    dropout: float = 0.1  # dropout in the decoder
    labels: list[str] = field(default_factory=list)  # class names, index = logit


IMAGE_CLASSIFIER_PRESETS = {
    "tiny": dict(cnn_channels=(8, 16), hidden=16),
    "base": dict(),
}


class ImageClassifier(nn.Module):
    def __init__(self, config: ImageClassifierConfig):
        super().__init__()
        self.config = config
        self.image_encoder = CNNImageEncoder(tuple(config.cnn_channels))
        self.decoder = ClassifierDecoder(
            2 * self.image_encoder.out_dim, config.hidden, len(config.labels), config.dropout
        )
        self.register_buffer("pixel_mean", torch.tensor(config.image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.image_std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> logits (B, classes); max and mean pooling over the grid."""
        pixels = normalize_pixels(images, self.pixel_mean, self.pixel_std)
        tokens = self.image_encoder(pixels)  # (B, N, C)
        return self.decoder(torch.cat([tokens.amax(1), tokens.mean(1)], dim=-1))
