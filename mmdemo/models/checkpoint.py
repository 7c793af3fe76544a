"""Self-describing checkpoints: a folder with config.json, model.safetensors and (for models that read
text) tokenizer.json. config.json names the architecture and holds its config dataclass."""

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from torch import nn

from mmdemo.models.audio_classifier import AudioClassifier, AudioClassifierConfig
from mmdemo.models.captioner import Captioner, CaptionerConfig
from mmdemo.models.encoders import CNNImageEncoder, MaxPool2x2
from mmdemo.models.image_classifier import ImageClassifier, ImageClassifierConfig
from mmdemo.models.vqa import VQAConfig, VQAModel

ARCHITECTURES = {  # config.json "architecture" -> (config dataclass, model class)
    "mmdemo-vqa": (VQAConfig, VQAModel),
    "mmdemo-audio-classifier": (AudioClassifierConfig, AudioClassifier),
    "mmdemo-captioner": (CaptionerConfig, Captioner),
    "mmdemo-image-classifier": (ImageClassifierConfig, ImageClassifier),
}


def architecture_of(model: nn.Module) -> str:
    return next(name for name, (_, cls) in ARCHITECTURES.items() if isinstance(model, cls))


def save_checkpoint(
    model: nn.Module, out_dir: str | Path, tokenizer: Tokenizer | None = None, extra: dict | None = None
) -> Path:
    """Write everything needed to rebuild `model`; `extra` (metrics, data, seed) goes into config.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"architecture": architecture_of(model), "config": asdict(model.config), **(extra or {})}
    (out / "config.json").write_text(json.dumps(meta, indent=2) + "\n")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    if tokenizer is not None:
        tokenizer.save(str(out / "tokenizer.json"))
    return out


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, Tokenizer | None, dict]:
    """Rebuild the model (strict weight loading), its tokenizer if it has one, and config.json's contents."""
    path = Path(path)
    meta = json.loads((path / "config.json").read_text())
    config_cls, model_cls = ARCHITECTURES[meta["architecture"]]
    model = model_cls(config_cls(**meta["config"]))
    model.load_state_dict(load_file(str(path / "model.safetensors")), strict=True)
    tok_file = path / "tokenizer.json"
    tokenizer = Tokenizer.from_file(str(tok_file)) if tok_file.exists() else None
    return model.to(device).eval(), tokenizer, meta


def for_inference(model: nn.Module, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The same function, faster to run (eval mode only): each convolution's batch norm folded into its weights,
    each ReLU followed by max pooling moved after it (the same values: ReLU is monotonic; it then sees a quarter of
    the pixels), 2×2 max pooling as MaxPool2x2, convolution weights channels-last (the layout images arrive in), and
    the CNN encoders cast to `dtype`. The small linear and recurrent layers stay fp32: in bf16 on a CPU, each of their
    small matrix products costs more than it saves (the VQA model answers one question in 2.1 ms all bf16, 1.5 ms
    so)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if isinstance(module[i], nn.Conv2d) and isinstance(module[i + 1], nn.BatchNorm2d):
                    module[i] = fuse_conv_bn_eval(module[i], module[i + 1])
                    module[i + 1] = nn.Identity()
                if isinstance(module[i], nn.ReLU) and isinstance(module[i + 1], nn.MaxPool2d):
                    module[i], module[i + 1] = module[i + 1], module[i]
            for i, layer in enumerate(module):
                if isinstance(layer, nn.MaxPool2d) and (layer.kernel_size, layer.stride, layer.padding) == (2, 2, 0):
                    module[i] = MaxPool2x2()
    for module in model.modules():
        if isinstance(module, CNNImageEncoder):
            module.to(dtype)
    return model.to(memory_format=torch.channels_last)
