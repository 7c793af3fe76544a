"""Audio input handling shared by every audio task: decode, check, down-mix and resample (pure functions).

    load_audio("clip.mp3")                            # -> float32 mono array at 16 kHz, in [-1, 1]
    load_audio((44100, int16_array))                  # Gradio's format: (rate, (n,) or (n, channels))
    load_audio({"array": a, "sampling_rate": 22050})  # Hugging Face's format

Every problem raises InputError with a message fit to show a user. Files are decoded with PyAV (its wheels
bundle FFmpeg: no system ffmpeg, so never an "ffprobe not found"), restricted to the demuxers in
AUDIO_FORMATS (an uploaded .m3u8 playlist would otherwise read the local files it names). Resampling is
soxr's (flat to 7 kHz for 16 kHz output, negligible aliasing). av and soxr are imported lazily, so
`import mmdemo` stays light; nothing here imports torch.
"""

import numbers
import struct
from pathlib import Path

import numpy as np

from mmdemo.errors import InputError

SAMPLE_RATE = 16_000  # Hz: the rate our audio models read
MAX_SECONDS = 30.0  # longest clip accepted for classification (refused from the header, before decoding)
MIN_SECONDS = 0.1  # shorter clips hold too little sound to classify
SILENCE_PEAK = 1e-4  # a clip whose peak stays below this (-80 dBFS, ~3 LSB of 16-bit) is silence
RATES = (1_000, 768_000)  # sampling rates accepted, in Hz
MAX_CHANNELS = 64
# FFmpeg demuxers we agree to open: wav, flac, mp3, ogg (vorbis/opus), webm/mkv, mp4/m4a (aac/alac), adts aac, aiff
AUDIO_FORMATS = ("wav", "flac", "mp3", "ogg", "matroska", "webm", "mov", "mp4", "m4a", "aac", "aiff")
FORMAT_NAMES = "WAV, FLAC, MP3, OGG, WebM or M4A"
# decoded audio shorter than this share of the header's duration (less a margin) is a truncated file
TRUNCATED_SHARE, TRUNCATED_MARGIN_S = 0.9, 0.05
_INT_SCALES = {np.dtype(np.int8): 2**7, np.dtype(np.int16): 2**15, np.dtype(np.int32): 2**31}

NOT_AUDIO = f"This file is not audio we can read (or it is damaged); please use {FORMAT_NAMES}."
DAMAGED = "The audio file is damaged or truncated; please upload it again or use another recording."


def load_audio(audio, sampling_rate: int = SAMPLE_RATE, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """A file path, a (rate, array) tuple or {"array", "sampling_rate"} -> float32 mono at `sampling_rate`."""
    if isinstance(audio, (str, Path)):
        mono, rate = decode_file(Path(audio), max_seconds)
    elif isinstance(audio, tuple) and len(audio) == 2:
        rate = _check_rate(audio[0])
        mono = _from_array(audio[1], rate, max_seconds)
    elif isinstance(audio, dict) and {"array", "sampling_rate"} <= audio.keys():
        rate = _check_rate(audio["sampling_rate"])
        mono = _from_array(audio["array"], rate, max_seconds)
    else:
        raise InputError(
            "Expected audio as a file, a (sampling_rate, array) pair or {'array', 'sampling_rate'}; "
            f"got {type(audio).__name__}."
        )
    return resample(_check_signal(mono, rate), rate, sampling_rate)


def _check_rate(rate) -> int:
    if isinstance(rate, float) and rate.is_integer():
        rate = int(rate)
    if isinstance(rate, bool) or not isinstance(rate, numbers.Integral):
        raise InputError(f"The sampling rate must be a whole number of Hz, got {rate!r}.")
    if not RATES[0] <= rate <= RATES[1]:
        raise InputError(f"The sampling rate {int(rate)} Hz is not usable; use {RATES[0]:,} to {RATES[1]:,} Hz.")
    return int(rate)


def _from_array(a, rate: int, max_seconds: float) -> np.ndarray:
    """A (n,) or (n, channels) array of int8/int16/int32/uint8/float samples -> float32 mono (n,)."""
    if not isinstance(a, np.ndarray):
        raise InputError(f"The audio samples must be a numpy array, got {type(a).__name__}.")
    if a.ndim == 2 and a.shape[1] > MAX_CHANNELS >= a.shape[0]:
        a = a.T  # (channels, n), as PyAV and torchaudio lay it out
    if a.ndim not in (1, 2) or (a.ndim == 2 and a.shape[1] > MAX_CHANNELS):
        raise InputError(f"Audio must be an array of shape (samples,) or (samples, channels); got {a.shape}.")
    if a.shape[0] == 0 or a.size == 0:
        raise InputError("The audio is empty (no samples).")
    _check_duration(a.shape[0] / rate, max_seconds)
    return downmix(to_float(a))


def to_float(a: np.ndarray) -> np.ndarray:
    """Samples of any supported type -> float32, integers scaled to [-1, 1]."""
    if a.dtype == np.uint8:  # 8-bit WAV: unsigned, silence at 128
        return (a.astype(np.float32) - 128) / 128
    if a.dtype in _INT_SCALES:
        return a.astype(np.float32) / _INT_SCALES[a.dtype]
    if a.dtype.kind != "f":
        raise InputError(f"Audio samples of type {a.dtype} are not supported; use int16, int32 or float.")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise InputError("The audio contains invalid samples (NaN or infinity).")
    return a


def downmix(a: np.ndarray) -> np.ndarray:
    """(n, channels) -> (n,) by averaging, which never exceeds full scale (FFmpeg's (L+R)/sqrt(2) can)."""
    return a if a.ndim == 1 else a.mean(axis=1, dtype=np.float32)


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """float32 mono at `rate` -> at `target`, with soxr's high-quality filter."""
    if rate == target:
        return np.ascontiguousarray(x, dtype=np.float32)
    import soxr

    return soxr.resample(x, rate, target).astype(np.float32, copy=False)


def _check_duration(seconds: float | None, max_seconds: float) -> None:
    """seconds=None: the length is unknown but past the limit (found while decoding)."""
    if seconds is None or seconds > max_seconds:
        length = f"{seconds:.1f} s" if seconds is not None else f"over {max_seconds:g} s"
        raise InputError(f"The recording is too long ({length}); the limit is {max_seconds:g} s.")


def _check_signal(x: np.ndarray, rate: int) -> np.ndarray:
    """Mono float32 -> the same, checked for length and sound; float input louder than full scale is scaled."""
    if len(x) < MIN_SECONDS * rate:
        raise InputError(
            f"The recording is too short ({len(x) / rate:.2f} s); please use at least {MIN_SECONDS:g} s of sound."
        )
    peak = float(np.abs(x).max())
    if peak < SILENCE_PEAK:
        raise InputError("The recording is silent; please record or upload a clip with some sound in it.")
    return x / peak if peak > 1.0 else x


def decode_file(path: Path, max_seconds: float = MAX_SECONDS) -> tuple[np.ndarray, int]:
    """An audio file -> (float32 mono samples, sampling rate), refusing long files from their header."""
    if not path.is_file():
        raise InputError(f"No audio file at {path.name!r}.")
    if path.stat().st_size == 0:
        raise InputError("The audio file is empty (0 bytes).")
    import av

    options = {"format_whitelist": ",".join(AUDIO_FORMATS)}
    try:
        container = av.open(str(path), options=options)
    except (av.FFmpegError, OSError, ValueError):  # garbage, a format we do not open, or cut short
        raise InputError(NOT_AUDIO) from None
    with container:
        if not container.streams.audio:
            raise InputError(NOT_AUDIO)
        stream = container.streams.audio[0]
        if stream.codec_context is None:  # a codec FFmpeg does not know (a WAV of format 99, say)
            raise InputError(NOT_AUDIO)
        if not stream.rate:
            raise InputError(DAMAGED)
        rate = _check_rate(stream.rate)
        declared = _declared_seconds(path, container, stream)
        if declared is not None:
            _check_duration(declared, max_seconds)
        try:
            mono = _decode_stream(container, stream, max_seconds)
        except InputError:
            raise
        except (av.FFmpegError, ValueError):
            raise InputError(DAMAGED) from None
    if declared is not None and len(mono) / rate < declared * TRUNCATED_SHARE - TRUNCATED_MARGIN_S:
        raise InputError(DAMAGED)
    if len(mono) == 0:
        raise InputError("The audio file contains no sound samples.")
    return mono, rate


def _decode_stream(container, stream, max_seconds: float) -> np.ndarray:
    """Decode frame by frame, down-mixing each (memory: one mono clip), stopping past max_seconds."""
    chunks, n, limit = [], 0, int(max_seconds * stream.rate) + 1
    for frame in container.decode(stream):
        a = frame.to_ndarray()  # planar: (channels, n); packed: (1, n * channels)
        a = a.T if frame.format.is_planar else a.reshape(-1, frame.layout.nb_channels)
        chunks.append(downmix(to_float(a)))
        n += len(chunks[-1])
        if n > limit:
            _check_duration(None, max_seconds)
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def _declared_seconds(path: Path, container, stream) -> float | None:
    """The duration the file's header declares (None when it declares none, e.g. browser webm recordings)."""
    if container.format.name == "wav":  # FFmpeg trusts the file size over the header: read the header itself
        declared = _wav_data_seconds(path)
        if declared is not None:
            return declared
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # FFmpeg's AV_TIME_BASE
    return None


def _wav_data_seconds(path: Path) -> float | None:
    """Seconds of audio a RIFF/WAVE header's data chunk declares; None for streamed (size unknown) files."""
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        byte_rate = None
        for _ in range(64):  # a few chunks at most precede the data
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            kind, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if kind == b"fmt " and size >= 16:
                fmt = f.read(16)
                if len(fmt) < 16:
                    return None
                byte_rate = struct.unpack("<I", fmt[8:12])[0]
                f.seek(size - 16 + size % 2, 1)
            elif kind == b"data":
                streamed = size in (0, 0xFFFFFFFF)
                return None if streamed or not byte_rate else size / byte_rate
            else:
                f.seek(size + size % 2, 1)
    return None


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular filters (n_mels, n_fft // 2 + 1) on the Slaney mel scale with Slaney area normalisation:
    what librosa.filters.mel computes by default (htk=False, norm="slaney"), without its numba dependency."""
    fft_hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))  # (n_mels + 2,)
    width = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    rising, falling = -ramps[:-2] / width[:-1, None], ramps[2:] / width[1:, None]
    weights = np.maximum(0, np.minimum(rising, falling))  # (n_mels, n_freqs)
    return (weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]).astype(np.float32)


# The Slaney mel scale: linear below 1 kHz (200/3 Hz a mel), logarithmic above (27 mels an octave of 6.4)
_MEL_HZ, _LOG_HZ, _LOG_STEP = 200.0 / 3, 1000.0, np.log(6.4) / 27


def _hz_to_mel(hz):
    hz = np.asarray(hz, dtype=np.float64)
    log_part = _LOG_HZ / _MEL_HZ + np.log(np.maximum(hz, _LOG_HZ) / _LOG_HZ) / _LOG_STEP
    return np.where(hz >= _LOG_HZ, log_part, hz / _MEL_HZ)


def _mel_to_hz(mel):
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= _LOG_HZ / _MEL_HZ, _LOG_HZ * np.exp(_LOG_STEP * (mel - _LOG_HZ / _MEL_HZ)), mel * _MEL_HZ)
