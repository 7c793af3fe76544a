"""A Show-and-Tell-style captioner: CNN image encoder -> LSTM decoder, with greedy and beam search."""

from dataclasses import dataclass, field

import torch
from torch import nn

from mmdemo.models.encoders import CNNImageEncoder, normalize_pixels


@dataclass
class CaptionerConfig:
    image_size: int = 64  # images are fitted to image_size x image_size before the CNN
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)  # per-channel normalisation of [0, 1] pixels
    image_std: tuple[float, ...] = (0.25, 0.25, 0.25)
    cnn_channels: tuple[int, ...] = (32, 64, 64)  # one conv+pool stage per entry
    vocab_size: int = 64  # words, specials included: [PAD]=0 [UNK]=1 [BOS]=2 [EOS]=3
    embed_dim: int = 64  # word embedding size
    hidden: int = 256  # LSTM state size
    max_length: int = 32  # longest caption generated, in words
    words: list[str] = field(default_factory=list)  # id -> word, for decoding


CAPTIONER_PRESETS = {
    "tiny": dict(cnn_channels=(8, 16), embed_dim=16, hidden=32),
    "base": dict(),
}
BOS, EOS = 2, 3


class Captioner(nn.Module):
    """The image grid, flattened so the decoder knows where each shape is, sets the LSTM's first state and
    is read again at every step."""

    def __init__(self, config: CaptionerConfig):
        super().__init__()
        self.config = config
        self.image_encoder = CNNImageEncoder(tuple(config.cnn_channels))
        grid = (config.image_size // 2 ** len(config.cnn_channels)) ** 2
        self.image_proj = nn.Linear(grid * self.image_encoder.out_dim, config.hidden)
        self.init_state = nn.Linear(config.hidden, 2 * config.hidden)
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=0)
        self.lstm = nn.LSTM(config.embed_dim + config.hidden, config.hidden, batch_first=True)
        self.head = nn.Linear(config.hidden, config.vocab_size)
        self.register_buffer("pixel_mean", torch.tensor(config.image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.image_std).view(1, 3, 1, 1), persistent=False)

    def encode_image(self, images: torch.Tensor):
        """uint8 (B, H, W, 3) -> decoder context: the image vector (B, hidden) and the LSTM's first (h, c)."""
        pixels = normalize_pixels(images, self.pixel_mean, self.pixel_std)
        image = torch.relu(self.image_proj(self.image_encoder(pixels).flatten(1)))  # (B, hidden)
        h, c = torch.tanh(self.init_state(image)).chunk(2, dim=-1)
        return image, (h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous())

    def _inputs(self, ids: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Each step reads its word and the image again: (B, T) -> (B, T, embed + hidden)."""
        return torch.cat([self.embed(ids), image.unsqueeze(1).expand(-1, ids.size(1), -1)], dim=-1)

    def forward(self, images: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: ids (B, T) start with [BOS] -> next-word logits (B, T, vocab)."""
        image, state = self.encode_image(images)
        steps, _ = self.lstm(self._inputs(ids, image), state)
        return self.head(steps)

    def _step(self, ids: torch.Tensor, image: torch.Tensor, state):
        out, state = self.lstm(self._inputs(ids.unsqueeze(1), image), state)
        return self.head(out.squeeze(1)).log_softmax(-1), state  # (N, vocab)

    @torch.no_grad()
    def generate(self, images: torch.Tensor, num_beams: int = 1, max_new_tokens: int | None = None):
        """Word ids of each image's best caption (without [BOS]/[EOS]), and its log-probability."""
        steps = min(max_new_tokens or self.config.max_length, self.config.max_length)
        b, k = images.size(0), num_beams
        image, (h, c) = self.encode_image(images)
        image = image.repeat_interleave(k, 0)  # (B*K, H): the beams of an image are adjacent
        state = (h.repeat_interleave(k, 1), c.repeat_interleave(k, 1))
        ids = torch.full((b * k,), BOS, device=images.device)
        score = torch.zeros(b, k, device=images.device)
        score[:, 1:] = float("-inf")  # all beams start identical: keep one
        seqs = torch.zeros(b * k, 0, dtype=torch.long, device=images.device)
        done = torch.zeros(b * k, dtype=torch.bool, device=images.device)
        for _ in range(steps):
            logp, state = self._step(ids, image, state)
            logp[:, :EOS] = float("-inf")  # never [PAD], [UNK] or [BOS] mid-caption
            logp[done] = float("-inf")
            logp[done, 0] = 0.0  # a finished beam only extends with padding, at no cost
            total = (score.view(-1, 1) + logp).view(b, -1)  # (B, K*vocab)
            score, flat = total.topk(k, dim=-1)
            beam = (flat // logp.size(-1) + torch.arange(b, device=images.device).view(-1, 1) * k).view(-1)
            ids = (flat % logp.size(-1)).view(-1)
            seqs = torch.cat([seqs[beam], ids.unsqueeze(1)], dim=1)
            state = (state[0][:, beam], state[1][:, beam])
            done = done[beam] | (ids == EOS) | (ids == 0)
            if done.all():
                break
        best = score.argmax(-1) + torch.arange(b, device=images.device) * k
        out = [[i for i in row if i > EOS] for row in seqs[best].tolist()]
        return out, score.max(-1).values.tolist()

    @torch.no_grad()
    def greedy_words(self, image: torch.Tensor, max_new_tokens: int | None = None):
        """One image's (1, H, W, 3) greedy caption, a word id at a time, as generate(num_beams=1) finds it."""
        context, state = self.encode_image(image)
        token = torch.full((1,), BOS, device=image.device)
        for _ in range(min(max_new_tokens or self.config.max_length, self.config.max_length)):
            logp, state = self._step(token, context, state)
            logp[:, :EOS] = float("-inf")
            token = logp.argmax(-1)
            if token.item() == EOS:
                return
            yield token.item()

    def decode(self, ids: list[int]) -> str:
        return " ".join(self.config.words[i] for i in ids)
