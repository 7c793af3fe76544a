"""The VQA model: CNN image encoder + recurrent question encoder -> fusion -> answer classifier."""

from dataclasses import dataclass, field

import torch
from torch import nn

from mmdemo.models.decoders import ClassifierDecoder
from mmdemo.models.encoders import CNNImageEncoder, RNNTextEncoder, normalize_pixels
from mmdemo.models.fusion import FUSIONS


@dataclass
class VQAConfig:
    image_size: int = 64  # images are resized to image_size x image_size before the CNN
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)  # per-channel normalisation of [0, 1] pixels
    image_std: tuple[float, ...] = (0.25, 0.25, 0.25)
    cnn_channels: tuple[int, ...] = (32, 64, 64)  # one conv+pool stage per entry
    vocab_size: int = 32  # word vocabulary, [PAD]=0 and [UNK]=1 included
    embed_dim: int = 64  # word embedding size
    text_hidden: int = 128  # RNN state size
    rnn: str = "gru"  # "gru" or "lstm"
    fusion: str = "product"  # one of FUSIONS: concat, sum, product, attention
    fusion_dim: int = 128  # width of the fused vector
    decoder_hidden: int = 128  # hidden layer of the answer MLP
    dropout: float = 0.1  # dropout in the decoder
    answers: list[str] = field(default_factory=list)  # answer vocabulary, index = logit


PRESETS = {
    "tiny": dict(cnn_channels=(8, 16), embed_dim=16, text_hidden=16, fusion_dim=16, decoder_hidden=16),
    "small": dict(cnn_channels=(16, 32, 64), embed_dim=32, text_hidden=64, fusion_dim=64, decoder_hidden=64),
    "base": dict(),
}


class VQAModel(nn.Module):
    """Composed from built parts; exposes encode_image / encode_text / forward / answer."""

    def __init__(self, config: VQAConfig):
        super().__init__()
        self.config = config
        self.image_encoder = CNNImageEncoder(tuple(config.cnn_channels))
        self.text_encoder = RNNTextEncoder(config.vocab_size, config.embed_dim, config.text_hidden, config.rnn)
        fusion_cls = FUSIONS[config.fusion]
        self.fusion = fusion_cls(self.image_encoder.out_dim, self.text_encoder.out_dim, config.fusion_dim)
        self.decoder = ClassifierDecoder(config.fusion_dim, config.decoder_hidden, len(config.answers), config.dropout)
        mean = torch.tensor(config.image_mean).view(1, 3, 1, 1)
        std = torch.tensor(config.image_std).view(1, 3, 1, 1)
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) at image_size -> image tokens (B, N, C)."""
        return self.image_encoder(normalize_pixels(images, self.pixel_mean, self.pixel_std))

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """right-padded token ids (Q, T) -> question vectors (Q, H); each distinct question is read once."""
        unique, inverse = torch.unique(ids, dim=0, return_inverse=True)
        return self.text_encoder(unique, (unique != 0).sum(1))[1][inverse]

    def forward(self, images: torch.Tensor, ids: torch.Tensor, image_index: torch.Tensor | None = None):
        """Answer logits (Q, A) for Q questions about B images.

        image_index (Q,) says which image each question is about, so that every image goes through
        the CNN once however many questions it has; None means one question per image.
        """
        tokens = self.encode_image(images)  # (B, N, C)
        return self.decoder(self.fusion(tokens, self.encode_text(ids), image_index))
