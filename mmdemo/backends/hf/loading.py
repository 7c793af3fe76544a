"""Loading Hugging Face models and processors: where from (hub id at a pinned revision, or a local
folder), in which dtype, on which device. The one place that calls `from_pretrained`."""

import os
from pathlib import Path

import torch

from mmdemo.device import resolve_device
from mmdemo.registry import ModelInfo

# No int8: dynamic quantisation scales activations over the whole batch, so with dynamic batching a user's caption
# would depend on the other users' images batched with it (tiny BLIP: batched captions differ from one at a time)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
GENERATION_SECONDS = 60.0  # a generation stops after this long, whatever its length: a shared slot is not held forever


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def source(info: ModelInfo) -> tuple[str, dict]:
    """What to pass to from_pretrained: a local folder as it is, or a hub id at its pinned revision."""
    if info.path and Path(info.path).is_dir():
        return info.path, {}
    if not info.hub_id:
        raise ValueError(f"model {info.name!r} has neither a local folder nor a hub id")
    kwargs = {"revision": info.revision} if info.revision else {}
    return info.hub_id, {**kwargs, "local_files_only": offline()}


def pick_dtype(name: str, device: torch.device, cpu_bf16: bool = False) -> torch.dtype:
    """ "auto": bf16 on GPUs that have it (else fp16); on CPU fp32, or bf16 for models whose catalog entry says
    `cpu_bf16 = true` where the CPU computes bf16 natively (AVX512-BF16, AMX); or the dtype named."""
    if name != "auto":
        return DTYPES[name]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if cpu_bf16 and device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_model(model_cls, info: ModelInfo, device: str | None = None, **kwargs):
    """model_cls.from_pretrained at the right place, dtype and device, in eval mode; generation capped in time."""
    where = resolve_device(device)
    name, options = source(info)
    dtype = pick_dtype(info.dtype, where, bool(info.extra.get("cpu_bf16")))
    if info.extra.get("device_map") and where.type == "cuda":  # larger than one GPU: accelerate spreads it
        model = model_cls.from_pretrained(name, dtype=dtype, device_map=info.extra["device_map"], **options, **kwargs)
        where = model.device
    else:
        model = model_cls.from_pretrained(name, dtype=dtype, **options, **kwargs).to(where)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.max_time = GENERATION_SECONDS
    return model.eval(), where


def load_processor(processor_cls, info: ModelInfo, **kwargs):
    name, options = source(info)
    return processor_cls.from_pretrained(name, **options, **kwargs)
