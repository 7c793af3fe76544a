"""Speech recognition runner for the transformers backend: Whisper (WhisperForConditionalGeneration), English,
greedy decoding, one 30 s window per clip (the pipeline refuses longer clips). Returns {"text": str} per item."""

import numpy as np
import torch
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from mmdemo.audio import SAMPLE_RATE, resample
from mmdemo.errors import InputError
from mmdemo.registry import ModelInfo

from .loading import load_model, load_processor
from .streaming import stream_generate

LANGUAGE = "en"  # multilingual checkpoints are told the language; English-only (.en) ones take no language token


class HFWhisper:
    """Transcribes English speech; clips are padded to one window each, so batching never changes a result."""

    def __init__(self, info: ModelInfo, device: str | None = None):
        self.info = info
        self.model, self.device = load_model(WhisperForConditionalGeneration, info, device)
        self.processor = load_processor(WhisperProcessor, info)
        self.rate = self.processor.feature_extractor.sampling_rate
        multilingual = getattr(self.model.generation_config, "is_multilingual", False)
        self.options = {"language": LANGUAGE, "task": "transcribe"} if multilingual else {}
        # openai/whisper's own limit (sample_len): half the decoder's positions, 224 tokens, ample for one 30 s window
        self.max_new_tokens = self.model.config.max_target_positions // 2

    def validate(self, item: dict) -> None:
        audio = item["audio"]
        if not (isinstance(audio, np.ndarray) and audio.ndim == 1 and len(audio)):
            raise InputError("Expected mono audio with at least one sample.")

    def features(self, items: list[dict]) -> torch.Tensor:
        """(B, mels, frames) log-mel windows on the model's device; items are at SAMPLE_RATE unless they say so."""
        clips = [resample(it["audio"], it.get("sampling_rate", SAMPLE_RATE), self.rate) for it in items]
        features = self.processor(clips, sampling_rate=self.rate, return_tensors="pt")["input_features"]
        return features.to(self.device, self.model.dtype)

    @torch.inference_mode()
    def __call__(self, items: list[dict]) -> list[dict]:
        ids = self.model.generate(
            self.features(items), num_beams=1, do_sample=False, max_new_tokens=self.max_new_tokens, **self.options
        )
        texts = self.processor.batch_decode(ids, skip_special_tokens=True)
        return [{"text": text.strip()} for text in texts]

    def stream(self, item: dict):
        """One clip's transcript, the text so far after each new token (closing the iterator stops the model)."""
        inputs = {"input_features": self.features([item])}
        options = {"num_beams": 1, "do_sample": False, "max_new_tokens": self.max_new_tokens, **self.options}
        yield from stream_generate(self.model, self.processor.tokenizer, inputs, **options)
