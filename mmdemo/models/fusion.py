"""Interchangeable fusion strategies: image tokens + question vectors -> fused vectors (Q, D).

Every strategy has the same constructor and call signature, so the top model takes any of them.
Each first summarises every image once (`image_side`), then pairs the summaries with the questions
(`combine`): an image with ten questions costs one summary, not ten.
"""

import torch
from torch import nn


class Fusion(nn.Module):
    def forward(self, image: torch.Tensor, text: torch.Tensor, image_index: torch.Tensor | None = None):
        """image (B, N, Dv) tokens, text (Q, Dq), image_index (Q,) or None when Q == B -> (Q, D)."""
        summary = self.image_side(image)
        return self.combine(summary if image_index is None else summary[image_index], text)


class ConcatFusion(Fusion):
    """Concatenate the pooled image vector and the question vector, then mix with a linear layer."""

    def __init__(self, image_dim: int, text_dim: int, dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(image_dim + text_dim, dim), nn.ReLU())

    def image_side(self, image):
        return image.amax(1)  # (B, Dv): max over the grid keeps small shapes visible

    def combine(self, image, text):
        return self.proj(torch.cat([image, text], dim=-1))


class WeightedSumFusion(Fusion):
    """Project both to the same space and add them with a learned mixing weight."""

    def __init__(self, image_dim: int, text_dim: int, dim: int):
        super().__init__()
        self.image_proj = nn.Linear(image_dim, dim)
        self.text_proj = nn.Linear(text_dim, dim)
        self.mix = nn.Parameter(torch.zeros(()))  # sigmoid(0) = 0.5: equal weights at the start

    def image_side(self, image):
        return self.image_proj(image.amax(1))  # (B, D)

    def combine(self, image, text):
        w = torch.sigmoid(self.mix)
        return torch.relu(w * image + (1 - w) * self.text_proj(text))


class ProductFusion(Fusion):
    """Element-wise product (FiLM-style gating): the question scales and shifts every channel at every
    grid position, then a max over the grid asks "is it anywhere?"."""

    def __init__(self, image_dim: int, text_dim: int, dim: int):
        super().__init__()
        self.image_proj = nn.Linear(image_dim, dim)
        self.film = nn.Linear(text_dim, 2 * dim)  # -> scale and shift
        self.out = nn.Linear(dim, dim)

    def image_side(self, image):
        return self.image_proj(image)  # (B, N, D)

    def combine(self, image, text):
        scale, shift = self.film(text).unsqueeze(1).chunk(2, dim=-1)  # (Q, 1, D) each
        return torch.relu(self.out(torch.relu((1 + scale) * image + shift).amax(1)))  # (Q, D)


class AttentionFusion(Fusion):
    """The question attends over the image grid (multi-head), and gates what it found."""

    def __init__(self, image_dim: int, text_dim: int, dim: int, heads: int = 4, max_tokens: int = 256):
        super().__init__()
        self.heads = heads
        self.pos = nn.Parameter(torch.zeros(1, max_tokens, image_dim))  # learned grid positions
        self.kv = nn.Linear(image_dim, 2 * dim)
        self.query = nn.Linear(text_dim, dim)
        self.out = nn.Linear(dim, dim)
        self.gate = nn.Linear(text_dim, dim)

    def image_side(self, image):
        k, v = self.kv(image + self.pos[:, : image.size(1)]).chunk(2, dim=-1)  # (B, N, D) each
        return torch.stack([k, v], dim=1)  # (B, 2, N, D)

    def combine(self, image, text):
        q = self.query(text)  # (Q, D)
        k, v = (self._split(t) for t in image.unbind(1))  # (Q, heads, N, D/heads)
        found = nn.functional.scaled_dot_product_attention(self._split(q.unsqueeze(1)), k, v)  # (Q, heads, 1, D/h)
        found = self.out(found.flatten(1))  # (Q, D)
        return torch.tanh(found) * torch.sigmoid(self.gate(text))

    def _split(self, x):
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (Q, N, D) -> (Q, heads, N, D/heads)


FUSIONS = {
    "concat": ConcatFusion,
    "sum": WeightedSumFusion,
    "product": ProductFusion,
    "attention": AttentionFusion,
}
