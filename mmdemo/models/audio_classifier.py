"""The audio classifier: log-mel spectrogram -> CNN encoder (the image one, on one channel) -> pooling -> MLP.

The front end has no trained weights: its constants live in the config and its mel filterbank is a buffer
saved with the weights, so a checkpoint computes exactly the features it was trained on.
"""

from dataclasses import dataclass, field

import torch
from torch import nn

from mmdemo.audio import SAMPLE_RATE, mel_filterbank
from mmdemo.models.decoders import ClassifierDecoder
from mmdemo.models.encoders import CNNImageEncoder


@dataclass
class AudioClassifierConfig:
    sample_rate: int = SAMPLE_RATE  # Hz; callers resample to this before the model
    n_fft: int = 512  # STFT size and Hann window length (32 ms at 16 kHz)
    hop_length: int = 256  # samples between frames (16 ms at 16 kHz)
    n_mels: int = 48  # mel bands (Slaney scale and area normalisation, librosa's default)
    fmin: float = 0.0  # lowest mel band edge, Hz
    fmax: float = 8000.0  # highest mel band edge, Hz
    top_db: float = 80.0  # dynamic range kept below each clip's loudest bin; also sets the feature scale
    cnn_channels: tuple[int, ...] = (16, 32, 64)  # one conv+pool stage per entry
    decoder_hidden: int = 128  # hidden layer of the label MLP
    dropout: float = 0.1  # dropout in the decoder
    labels: list[str] = field(default_factory=list)  # class names, index = logit


PRESETS = {
    "tiny": dict(n_mels=16, cnn_channels=(4, 8), decoder_hidden=16),
    "small": dict(cnn_channels=(8, 16, 32), decoder_hidden=64),
    "base": dict(),
}


class AudioClassifier(nn.Module):
    """Exposes log_mel / encode_audio / classify / forward; takes float waveforms at config.sample_rate."""

    def __init__(self, config: AudioClassifierConfig):
        super().__init__()
        self.config = c = config
        fbank = mel_filterbank(c.sample_rate, c.n_fft, c.n_mels, c.fmin, c.fmax)
        self.register_buffer("mel_filters", torch.from_numpy(fbank))  # (n_mels, n_fft // 2 + 1), saved
        self.register_buffer("window", torch.hann_window(c.n_fft), persistent=False)
        self.encoder = CNNImageEncoder(tuple(c.cnn_channels), in_channels=1)
        self.decoder = ClassifierDecoder(2 * self.encoder.out_dim, c.decoder_hidden, len(c.labels), c.dropout)
        self.min_frames = 2 ** len(c.cnn_channels)  # every pooling stage needs at least 2 frames

    def log_mel(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, T) float -> (B, 1, n_mels, frames) in [-1, 1]: log power relative to each clip's loudest bin."""
        spec = torch.stft(
            waveforms.float(), self.config.n_fft, self.config.hop_length, window=self.window, return_complex=True
        )
        mel = self.mel_filters @ spec.abs().pow(2)  # (B, n_mels, frames)
        db = 10 * torch.log10(mel.clamp(min=1e-10))
        db = db - db.amax(dim=(1, 2), keepdim=True)  # loudness-invariant: 0 dB at the loudest bin
        feats = db.clamp(min=-self.config.top_db) / (self.config.top_db / 2) + 1  # (B, n_mels, frames)
        if feats.size(-1) < self.min_frames:  # very short clips: pad with the floor (-1)
            feats = nn.functional.pad(feats, (0, self.min_frames - feats.size(-1)), value=-1.0)
        return feats.unsqueeze(1)

    def encode_audio(self, features: torch.Tensor) -> torch.Tensor:
        """log-mel (B, 1, n_mels, frames) -> a clip vector (B, 2C): mean and max of the CNN's feature grid."""
        tokens = self.encoder(features)  # (B, N, C)
        return torch.cat([tokens.mean(1), tokens.amax(1)], dim=-1)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """log-mel features -> logits (B, num_labels); training runs this on precomputed features."""
        return self.decoder(self.encode_audio(features))

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Waveforms (B, T) at config.sample_rate -> logits (B, num_labels)."""
        return self.classify(self.log_mel(waveforms))
