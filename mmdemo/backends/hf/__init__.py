"""The transformers backend: Hugging Face models from the hub (or a local copy), imported lazily.

A catalog entry with `backend = "transformers"` names its `runner`: the class that knows that model
family's processor and output. Runners take the same plain items as every backend and return the
shapes of CONTRACT.md.
"""

import importlib

from mmdemo.registry import ModelInfo

RUNNERS = {  # catalog "runner" -> "module:Class", imported on first use
    "blip-caption": "mmdemo.backends.hf.captioning:BlipCaptioner",
    "git-caption": "mmdemo.backends.hf.captioning:GitCaptioner",
    "blip-vqa": "mmdemo.backends.hf.vqa:BlipVQA",
    "vilt-vqa": "mmdemo.backends.hf.vqa:ViltVQA",
    "image-classifier": "mmdemo.backends.hf.classifiers:HFImageClassifier",
    "clip-zero-shot": "mmdemo.backends.hf.classifiers:HFZeroShotImageClassifier",
    "siglip-zero-shot": "mmdemo.backends.hf.classifiers:HFZeroShotImageClassifier",
    "audio-classifier": "mmdemo.backends.hf.classifiers:HFAudioClassifier",
    "whisper": "mmdemo.backends.hf.speech:HFWhisper",
    "chat-vlm": "mmdemo.backends.hf.chat_vlm:ChatVLM",
}


def load(info: ModelInfo, device: str | None = None):
    runner = info.extra.get("runner")
    if runner not in RUNNERS:
        raise ValueError(f"model {info.name!r} names runner {runner!r}; known runners: {', '.join(RUNNERS) or 'none'}")
    module, cls = RUNNERS[runner].split(":")
    try:
        return getattr(importlib.import_module(module), cls)(info, device)
    except OSError as e:  # not on disk and not downloadable (offline, wrong id or revision)
        where = info.path or f"{info.hub_id}@{info.revision or 'main'}"
        raise ValueError(
            f"Model {info.name!r} ({where}) is not available here: {str(e).splitlines()[0]} "
            f"With network, fetch it once with `mmdemo download {info.name}`; offline hosts can point "
            "the catalog entry's `path` at a local copy."
        ) from None
