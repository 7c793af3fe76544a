"""Answer decoders: map a fused vector to scores over a fixed answer set."""

import torch
from torch import nn


class ClassifierDecoder(nn.Module):
    """A two-layer MLP over the fused vector: one logit per answer."""

    def __init__(self, dim: int, hidden: int, num_answers: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_answers))

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        return self.net(fused)  # (B, num_answers)
