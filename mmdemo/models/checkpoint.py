"""Self-describing checkpoints: a folder with config.json, model.safetensors and tokenizer.json."""

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from mmdemo.models.vqa import VQAConfig, VQAModel

ARCHITECTURES = {"mmdemo-vqa": (VQAConfig, VQAModel)}


def save_checkpoint(model: VQAModel, tokenizer: Tokenizer, out_dir: str | Path, extra: dict | None = None) -> Path:
    """Write everything needed to rebuild `model`; `extra` (metrics, data, seed) goes into config.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"architecture": "mmdemo-vqa", "config": asdict(model.config), **(extra or {})}
    (out / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    tokenizer.save(str(out / "tokenizer.json"))
    return out


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[VQAModel, Tokenizer, dict]:
    """Rebuild the model (strict weight loading), its tokenizer, and config.json's contents."""
    path = Path(path)
    meta = json.loads((path / "config.json").read_text())
    config_cls, model_cls = ARCHITECTURES[meta["architecture"]]
    model = model_cls(config_cls(**meta["config"]))
    model.load_state_dict(load_file(str(path / "model.safetensors")), strict=True)
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    return model.to(device).eval(), tokenizer, meta
