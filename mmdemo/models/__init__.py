"""Our own encoder–fusion–decoder models, built by composition from the parts in this package."""

from mmdemo.models.vqa import PRESETS, VQAConfig, VQAModel

__all__ = ["PRESETS", "VQAConfig", "VQAModel"]
