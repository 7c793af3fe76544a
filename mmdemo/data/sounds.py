"""Generated sounds for audio classification: ten classes of 2-second clips at 16 kHz, as many as wanted.

    data = sounds.generate(1000, seed=0)   # Sounds: audio (1000, 32000) float32, labels, label_ids
    python -m mmdemo.data.sounds --out assets/examples/sounds   # one example WAV per class

Every clip holds one sound event (random pitch, loudness, duration 0.5-2 s and onset) over a quiet
background of white or pink noise. Clip i of a seed is drawn from np.random.default_rng([seed, i]), so it
is the same whatever the size asked and two seeds share nothing. Training uses seeds 0, 1, ...;
held-out evaluation uses TEST_SEED, which training refuses; the bundled examples use EXAMPLES_SEED.
Clip i has class i % len(CLASSES), so any multiple of ten clips is exactly balanced.
"""

import argparse
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal

from mmdemo.audio import SAMPLE_RATE

CLIP_SECONDS = 2.0  # every clip's length
EVENT_SECONDS = (0.5, 2.0)  # the sound event's duration, uniform
PEAK_DBFS = (-30.0, -1.0)  # the event's peak level, uniform in dB
SNR_DB = (10.0, 40.0)  # event RMS over background-noise RMS, uniform in dB
FADE_SECONDS = 0.01  # raised-cosine fade in and out of every event (no onset clicks)
TEST_SEED = 1_000_003  # held-out evaluation; never used for training
EXAMPLES_SEED = 2_000_003  # the example clips in assets/examples/sounds
CLASSES = (
    "tone",
    "chord",
    "rising-chirp",
    "falling-chirp",
    "white-noise",
    "pink-noise",
    "clicks",
    "siren",
    "square-wave",
    "beeps",
)


@dataclass
class Sounds:
    audio: np.ndarray  # (N, CLIP_SECONDS * SAMPLE_RATE) float32 in [-1, 1]
    label_ids: np.ndarray  # (N,) index into CLASSES
    labels: list[str]  # (N,) class names

    def __len__(self) -> int:
        return len(self.label_ids)


def generate(n: int, seed: int = 0, start: int = 0) -> Sounds:
    """Clips start .. start+n-1 of `seed`."""
    return clips(np.arange(start, start + n), seed)


def clips(indices, seed: int) -> Sounds:
    """The clips at these indices of `seed` (any order, e.g. a shuffled training batch)."""
    indices = np.asarray(indices, dtype=np.int64)
    audio = np.stack([clip(seed, int(i)) for i in indices]) if len(indices) else np.zeros((0, _clip_len()))
    ids = indices % len(CLASSES)
    return Sounds(audio.astype(np.float32), ids, [CLASSES[i] for i in ids])


def clip(seed: int, index: int) -> np.ndarray:
    """One clip (CLIP_SECONDS at SAMPLE_RATE, float32): an event of class index % 10 over background noise."""
    rng = np.random.default_rng([seed, index])
    n_event = int(rng.uniform(*EVENT_SECONDS) * SAMPLE_RATE)
    event = SOUNDS[CLASSES[index % len(CLASSES)]](rng, n_event)
    event = _fade(event / np.abs(event).max()) * 10 ** (rng.uniform(*PEAK_DBFS) / 20)
    background = _pink(rng, _clip_len()) if rng.random() < 0.5 else rng.standard_normal(_clip_len())
    background *= _rms(event) / _rms(background) / 10 ** (rng.uniform(*SNR_DB) / 20)
    onset = rng.integers(0, _clip_len() - n_event + 1)
    background[onset : onset + n_event] += event
    return (background / max(1.0, np.abs(background).max() / 0.99)).astype(np.float32)


def _clip_len() -> int:
    return int(CLIP_SECONDS * SAMPLE_RATE)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


def _fade(x: np.ndarray) -> np.ndarray:
    k = int(FADE_SECONDS * SAMPLE_RATE)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, k))
    x[:k] *= ramp
    x[-k:] *= ramp[::-1]
    return x


def _t(n: int) -> np.ndarray:
    return np.arange(n) / SAMPLE_RATE


def _log_uniform(rng, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _tone(rng, n):
    return np.sin(2 * np.pi * _log_uniform(rng, 150, 3000) * _t(n) + rng.uniform(0, 2 * np.pi))


def _chord(rng, n):
    """A major or minor triad, sometimes with the root's octave."""
    root = _log_uniform(rng, 150, 1000)
    steps = [0, 4 if rng.random() < 0.5 else 3, 7] + ([12] if rng.random() < 0.5 else [])
    phases = rng.uniform(0, 2 * np.pi, len(steps))
    return sum(np.sin(2 * np.pi * root * 2 ** (s / 12) * _t(n) + p) for s, p in zip(steps, phases, strict=True))


def _chirp(rng, n, rising: bool):
    low = _log_uniform(rng, 150, 1000)
    high = min(low * rng.uniform(2.5, 8), 7000)
    f0, f1 = (low, high) if rising else (high, low)
    method = "linear" if rng.random() < 0.5 else "logarithmic"
    return signal.chirp(_t(n), f0, n / SAMPLE_RATE, f1, method=method, phi=rng.uniform(0, 360))


def _pink(rng, n):
    """Gaussian noise shaped to 1/f power in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    return np.fft.irfft(spectrum / np.sqrt(np.maximum(f, 20.0)), n)


def _clicks(rng, n):
    """Short decaying noise bursts, 3-25 a second, slightly irregular."""
    x = np.zeros(n)
    burst = rng.standard_normal(int(0.003 * SAMPLE_RATE)) * np.exp(-np.arange(int(0.003 * SAMPLE_RATE)) / 8)
    period = SAMPLE_RATE / rng.uniform(3, 25)
    pos = rng.uniform(0, period)
    while pos < n - len(burst):
        x[int(pos) : int(pos) + len(burst)] += burst
        pos += period * rng.uniform(0.8, 1.2)
    if not x.any():  # a very slow rate on a short event: one click
        x[: len(burst)] = burst
    return x


def _siren(rng, n):
    """A tone whose pitch swings up and down at least twice during the event."""
    centre = _log_uniform(rng, 500, 1500)
    rate = rng.uniform(max(1.5, 2 * SAMPLE_RATE / n), 8)
    freq = centre * (1 + rng.uniform(0.2, 0.5) * np.sin(2 * np.pi * rate * _t(n) + rng.uniform(0, 2 * np.pi)))
    return np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE)


def _square(rng, n):
    """A band-limited square wave: odd harmonics at 1/k up to 7 kHz."""
    f = _log_uniform(rng, 100, 1000)
    phase = 2 * np.pi * f * _t(n) + rng.uniform(0, 2 * np.pi)
    return sum(np.sin(k * phase) / k for k in range(1, int(7000 / f) + 1, 2))


def _beeps(rng, n):
    """A tone switched on and off: at least two beeps."""
    period = rng.uniform(0.1, min(0.3, n / SAMPLE_RATE / 2.5))
    on = (_t(n) % period) < period * rng.uniform(0.3, 0.6)
    gate = np.convolve(on.astype(float), np.hanning(81) / np.hanning(81).sum(), mode="same")  # 5 ms edges
    return _tone(rng, n) * gate


SOUNDS = {  # class -> (rng, n samples) -> float array (n,), any scale
    "tone": _tone,
    "chord": _chord,
    "rising-chirp": lambda rng, n: _chirp(rng, n, rising=True),
    "falling-chirp": lambda rng, n: _chirp(rng, n, rising=False),
    "white-noise": lambda rng, n: rng.standard_normal(n),
    "pink-noise": _pink,
    "clicks": _clicks,
    "siren": _siren,
    "square-wave": _square,
    "beeps": _beeps,
}


def write_wav(path: Path, audio: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """float mono in [-1, 1] -> 16-bit PCM WAV."""
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


def write_examples(out: Path, seed: int = EXAMPLES_SEED) -> list[Path]:
    """One WAV per class (the first clips of `seed`) and a README saying where they come from."""
    out.mkdir(parents=True, exist_ok=True)
    data = generate(len(CLASSES), seed)
    paths = []
    for audio, label in zip(data.audio, data.labels, strict=True):
        paths.append(out / f"{label}.wav")
        write_wav(paths[-1], audio)
    (out / "README.md").write_text(
        f"Example clips, one per class: generated by `mmdemo.data.sounds` with seed {seed} "
        f"(`python -m mmdemo.data.sounds --out {out.as_posix()} --seed {seed}`), 16 kHz 16-bit mono WAV, "
        "no third-party material; same licence as mmdemo (MIT).\n"
    )
    return paths


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m mmdemo.data.sounds", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the example WAV files")
    p.add_argument("--seed", type=int, default=EXAMPLES_SEED, help="seed of the clips")
    args = p.parse_args(argv)
    for path in write_examples(args.out, args.seed):
        print(path)


if __name__ == "__main__":
    main()
