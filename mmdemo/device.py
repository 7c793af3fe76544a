"""Device and dtype resolution: the one place that decides where models run."""

import torch


def resolve_device(device: str | None = None) -> torch.device:
    """`device` if given ("cpu", "cuda", "cuda:1", "mps"), else CUDA when present, else CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
