"""Audio input handling (mmdemo.audio.load_audio): every bad-audio class with several cases, and good audio
of every sample type, channel count, rate and container format coming out as 16 kHz float32 mono.

Files are built in tmp_path: WAV with the stdlib `wave` module, everything else encoded with PyAV.
"""

import time
import wave

import av
import numpy as np
import pytest
from conftest import assert_user_message

from mmdemo.audio import MAX_SECONDS, SAMPLE_RATE, load_audio
from mmdemo.errors import InputError

FORBIDDEN = ("ffprobe", "ffmpeg", "FFmpeg", "av.", "Invalid data found", "returned", "soxr")


def sine(rate: int, seconds: float = 1.0, freq: float = 440.0, amp: float = 0.5, channels: int = 1) -> np.ndarray:
    """float64 (n, channels): the same tone on every channel, channel c at amp / (c + 1)."""
    t = np.arange(int(rate * seconds)) / rate
    return np.stack([amp / (c + 1) * np.sin(2 * np.pi * freq * t) for c in range(channels)], axis=1)


def write_pcm(path, x: np.ndarray, rate: int, width: int = 2):
    """Integer PCM WAV of 8, 16, 24 or 32 bits from float (n, channels) in [-1, 1]."""
    scale = 2 ** (8 * width - 1) - 1
    ints = np.round(x * scale).astype(np.int64)
    if width == 1:
        data = (ints + 128).astype(np.uint8).tobytes()
    elif width == 3:
        data = ints.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    else:
        data = ints.astype(f"<i{width}").tobytes()
    with wave.open(str(path), "wb") as f:
        f.setnchannels(x.shape[1])
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes(data)
    return path


def encode(path, x: np.ndarray, rate: int, codec: str, live: bool = False):
    """Encode float (n, 1|2) with PyAV: float WAV (pcm_f32le/pcm_f64le), flac, mp3, vorbis, opus, aac ...
    live=True writes no duration into the header, as browsers' MediaRecorder webm files have none."""
    layout = "mono" if x.shape[1] == 1 else "stereo"
    with av.open(str(path), "w", options={"live": "1"} if live else {}) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        stream.codec_context.options = {"strict": "experimental"}  # FFmpeg's own vorbis encoder
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x.T, dtype=np.float32), format="fltp", layout=layout)
        frame.sample_rate = rate
        converter = av.AudioResampler(format=stream.format.name, layout=layout, rate=rate)
        for f in [*converter.resample(frame), *converter.resample(None), None]:
            for packet in stream.encode(f):
                out.mux(packet)
    return path


def dominant_hz(x: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()])


def rejects(audio, *words: str, **kwargs) -> str:
    """load_audio refuses `audio` with a user-fit message containing every word (case-insensitive)."""
    with pytest.raises(InputError) as e:
        load_audio(audio, **kwargs)
    message = str(e.value)
    assert_user_message(message, *FORBIDDEN)
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in {message!r}"
    return message


def check_tone(x: np.ndarray, amp: float = 0.5, tol: float = 0.03, lossy: bool = False):
    """x is one second of 440 Hz at peak `amp`, as float32 mono at 16 kHz (lossy codecs pad a little)."""
    assert x.dtype == np.float32 and x.ndim == 1 and x.flags.c_contiguous
    assert 0 <= len(x) - SAMPLE_RATE <= 0.1 * SAMPLE_RATE if lossy else len(x) == SAMPLE_RATE
    core = x[len(x) // 4 : -len(x) // 4] if lossy else x  # lossy codecs overshoot at the abrupt ends
    assert np.abs(core).max() == pytest.approx(amp, abs=tol)
    assert dominant_hz(x) == pytest.approx(440, abs=5)


# ---------------------------------------------------------------- good audio


@pytest.mark.parametrize("width", [1, 2, 3, 4])
@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_integer_wav_of_every_width_and_rate(tmp_path, width, rate):
    x = load_audio(write_pcm(tmp_path / "a.wav", sine(rate), rate, width))
    check_tone(x, tol=0.02 if width > 1 else 0.03)


@pytest.mark.parametrize("codec", ["pcm_f32le", "pcm_f64le"])
def test_float_wav(tmp_path, codec):
    check_tone(load_audio(encode(tmp_path / "f.wav", sine(44100), 44100, codec)))


@pytest.mark.parametrize(
    ("name", "codec", "rate"),
    [
        ("a.flac", "flac", 44100),
        ("a.mp3", "libmp3lame", 44100),
        ("vorbis.ogg", "vorbis", 44100),
        ("opus.ogg", "libopus", 48000),
        ("browser.webm", "libopus", 48000),
        ("a.m4a", "aac", 44100),
    ],
)
def test_compressed_formats_decode_without_a_system_ffmpeg(tmp_path, name, codec, rate):
    x = load_audio(encode(tmp_path / name, sine(rate, channels=2), rate, codec))
    # the two channels (0.5 and 0.25) are averaged
    check_tone(x, amp=0.375, tol=0.06, lossy=True)


@pytest.mark.parametrize("channels", [2, 4, 6])
def test_multichannel_files_are_averaged(tmp_path, channels):
    x = load_audio(write_pcm(tmp_path / "m.wav", sine(48000, channels=channels), 48000))
    expected = np.mean([0.5 / (c + 1) for c in range(channels)])
    check_tone(x, amp=expected, tol=0.01)


def test_downmix_averages_instead_of_summing():
    left, right = sine(16000, amp=0.9), sine(16000, amp=0.9)
    x = load_audio((16000, np.concatenate([left, right], axis=1).astype(np.float32)))
    assert np.abs(x).max() == pytest.approx(0.9, abs=1e-3)  # (L+R)/sqrt(2) would give 1.27


@pytest.mark.parametrize(
    ("dtype", "scale"),
    [(np.int16, 2**15 - 1), (np.int32, 2**31 - 1), (np.int8, 2**7 - 1), (np.float32, 1.0), (np.float64, 1.0)],
)
@pytest.mark.parametrize("channels", [1, 2])
def test_gradio_tuples_of_every_sample_type(dtype, scale, channels):
    a = (sine(22050, channels=channels) * scale).astype(dtype)
    a = a[:, 0] if channels == 1 else a  # Gradio: (n,) mono, (n, channels) otherwise
    expected = 0.5 if channels == 1 else 0.375
    check_tone(load_audio((22050, a)), amp=expected, tol=0.02)


def test_unsigned_8_bit_arrays_are_centred():
    a = np.round(sine(16000)[:, 0] * 127 + 128).astype(np.uint8)
    check_tone(load_audio((16000, a)), tol=0.02)


def test_dict_input_and_channels_first_arrays():
    x = load_audio({"array": sine(48000, channels=2).T.copy(), "sampling_rate": 48000})  # (channels, n)
    check_tone(x, amp=0.375, tol=0.01)
    np.testing.assert_allclose(load_audio({"array": sine(16000)[:, 0], "sampling_rate": 16000.0}), sine(16000)[:, 0])


def test_sampling_rate_parameter_and_numpy_rate():
    x = load_audio((np.int64(44100), sine(44100)[:, 0]), sampling_rate=8000)
    assert len(x) == 8000 and dominant_hz(x, 8000) == pytest.approx(440, abs=5)


def test_resampling_removes_what_lies_above_the_new_nyquist_frequency():
    """A 12 kHz tone at 48 kHz cannot exist at 16 kHz: soxr filters it out instead of aliasing it to 4 kHz."""
    a = sine(48000, freq=440, amp=0.1) + sine(48000, freq=12000, amp=0.5)
    x = load_audio((48000, a.astype(np.float32)))
    assert np.abs(x).max() == pytest.approx(0.1, abs=0.01)
    spectrum = np.abs(np.fft.rfft(x))
    assert spectrum[4000] < spectrum[440] * 1e-3  # 1 Hz bins: nothing at the 4 kHz alias


def test_clipped_and_too_loud_audio():
    clipped = np.clip(sine(16000, amp=3.0)[:, 0], -1, 1)
    assert np.abs(load_audio((16000, (clipped * 32767).astype(np.int16)))).max() == pytest.approx(1.0, abs=1e-3)
    loud = load_audio((16000, sine(16000, amp=4.0)[:, 0].astype(np.float32)))  # float beyond full scale
    assert np.abs(loud).max() == pytest.approx(1.0, abs=1e-6)


def test_short_but_long_enough_and_quiet_but_not_silent():
    assert len(load_audio((16000, sine(16000, seconds=0.1)[:, 0]))) == 1600
    quiet = load_audio((16000, (sine(16000, amp=0.001)[:, 0] * 32767).astype(np.int16)))  # -66 dBFS: still sound
    assert 0.0009 < np.abs(quiet).max() < 0.0011


# ---------------------------------------------------------------- bad audio: each class, several cases


@pytest.mark.parametrize(
    "array",
    [
        np.array([0.1, np.nan] * 8000, dtype=np.float32),
        np.array([0.1, np.inf] * 8000, dtype=np.float64),
        np.full((16000, 2), -np.inf, dtype=np.float32),
        np.full(16000, np.nan, dtype=np.float16),
    ],
)
def test_nan_and_infinity_are_refused(array):
    rejects((16000, array), "NaN")


def test_nan_inside_a_float_wav_file(tmp_path):
    x = sine(16000)
    x[100:200] = np.nan
    rejects(str(encode(tmp_path / "nan.wav", x, 16000, "pcm_f32le")), "NaN")


@pytest.mark.parametrize(
    "audio",
    [
        (16000, np.zeros(0, np.int16)),
        (16000, np.zeros((0, 2), np.float32)),
        {"array": np.zeros(0), "sampling_rate": 16000},
        (16000, np.zeros((16000, 0), np.float32)),
    ],
)
def test_empty_arrays(audio):
    rejects(audio, "empty")


def test_empty_and_zero_frame_files(tmp_path):
    (tmp_path / "empty.wav").write_bytes(b"")
    rejects(str(tmp_path / "empty.wav"), "empty")
    write_pcm(tmp_path / "zero.wav", np.zeros((0, 1)), 16000)
    rejects(tmp_path / "zero.wav", "no sound")


@pytest.mark.parametrize("seconds", [0.0, 1 / 16000, 0.02, 0.09])
def test_too_short_arrays(seconds):
    n = max(1, int(seconds * 44100))
    rejects((44100, np.full(n, 0.5, np.float32)), "too short")


def test_too_short_files(tmp_path):
    rejects(write_pcm(tmp_path / "s.wav", sine(8000, seconds=0.05), 8000), "too short")
    rejects(encode(tmp_path / "s.flac", sine(44100, seconds=0.05), 44100, "flac"), "too short")


@pytest.mark.parametrize(
    "array",
    [
        np.zeros(16000, np.int16),
        np.zeros((16000, 2), np.float32),
        np.full(16000, 128, np.uint8),  # 8-bit silence sits at 128
        np.random.default_rng(0).integers(-1, 2, 16000).astype(np.int16),  # 1-LSB dither
        np.full(16000, 1e-6, np.float64),
    ],
)
def test_silence_is_refused(array):
    rejects((16000, array), "silent")


def test_silent_file(tmp_path):
    rejects(write_pcm(tmp_path / "quiet.wav", np.zeros((16000, 2)), 16000), "silent")


@pytest.mark.parametrize("rate", [0, -16000, 16000.5, "16000", None, True, 10, 10_000_000])
def test_unusable_sampling_rates(rate):
    rejects((rate, sine(16000)[:, 0]), "sampling rate")
    rejects({"array": sine(16000)[:, 0], "sampling_rate": rate}, "sampling rate")


@pytest.mark.parametrize(
    "audio",
    [
        None,
        42,
        b"RIFF....WAVE",
        [0.1, 0.2, 0.3],
        (16000,),
        (16000, np.zeros(16000), "extra"),
        {"array": np.zeros(16000)},
        {"sampling_rate": 16000},
    ],
)
def test_things_that_are_not_audio_inputs(audio):
    rejects(audio, "expected audio")


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((16000, 2, 2), np.float32),
        np.zeros((), np.float32),
        np.zeros((100, 100), np.float32),  # 100 'channels'
        np.arange(16000, dtype=np.int64),
        np.zeros(16000, dtype=np.complex64),
        np.array(["a"] * 16000),
        [0.0] * 16000,
    ],
)
def test_arrays_of_the_wrong_shape_or_type(array):
    rejects((16000, array))


def test_too_long_arrays_are_refused_before_any_work():
    rejects((48000, np.zeros(int(48000 * (MAX_SECONDS + 1)), np.int16)), "too long", "30 s")
    rejects((16000, sine(16000, seconds=6)[:, 0]), "too long", "5 s", max_seconds=5)


def test_long_files_are_refused_from_the_header(tmp_path):
    """A WAV declaring an hour is refused from its 44-byte header, long before any decoding."""
    rate, seconds = 48000, 3600
    path = tmp_path / "hour.wav"
    write_pcm(path, sine(rate, seconds=1.0), rate)
    data = bytearray(path.read_bytes())
    data[40:44] = (rate * 2 * seconds).to_bytes(4, "little")  # data chunk size
    path.write_bytes(bytes(data))
    start = time.perf_counter()
    rejects(path, "too long", "3600")
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(("name", "codec", "rate"), [("long.wav", None, 8000), ("long.flac", "flac", 8000)])
def test_real_long_files_are_refused_quickly(tmp_path, name, codec, rate):
    x = sine(rate, seconds=MAX_SECONDS + 10)
    path = write_pcm(tmp_path / name, x, rate) if codec is None else encode(tmp_path / name, x, rate, codec)
    start = time.perf_counter()
    rejects(path, "too long", "40.0 s")
    assert time.perf_counter() - start < 0.5


def test_long_recordings_without_a_declared_duration_stop_decoding_at_the_limit(tmp_path):
    """A webm whose header gives no duration (as browsers record it) is cut off once past the limit."""
    path = encode(tmp_path / "long.webm", sine(48000, seconds=12), 48000, "libopus", live=True)
    assert av.open(str(path)).duration is None
    rejects(path, "too long", "over 5 s", max_seconds=5)
    assert len(load_audio(path, max_seconds=15)) == 12 * SAMPLE_RATE


def _png(path):
    from PIL import Image

    Image.new("RGB", (32, 32), "red").save(path, format="PNG")
    return path


def _jpeg(path):
    from PIL import Image

    Image.new("RGB", (32, 32), "blue").save(path, format="JPEG")
    return path


def _bytes(data: bytes):
    return lambda path: path.write_bytes(data)


NOT_AUDIO = {
    "png.wav": _png,
    "jpeg.wav": _jpeg,
    "text.wav": _bytes(b"hello, this is not a recording\n" * 20),
    "page.mp3": _bytes(b"<html><script>alert(1)</script></html>"),
    "random.wav": _bytes(np.random.default_rng(1).bytes(4000)),
    "pdf.ogg": _bytes(b"%PDF-1.4\n" + b"0" * 2000),
}


@pytest.mark.parametrize("name", sorted(NOT_AUDIO))
def test_files_that_are_not_audio(tmp_path, name):
    NOT_AUDIO[name](tmp_path / name)
    rejects(tmp_path / name, "not audio", "WAV")


def test_playlists_cannot_make_us_read_local_files(tmp_path):
    """FFmpeg's HLS demuxer would follow a .m3u8 to the local files it names: only audio demuxers may open."""
    target = write_pcm(tmp_path / "secret.wav", sine(16000), 16000)
    playlist = tmp_path / "list.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{target}\n#EXT-X-ENDLIST\n")
    rejects(playlist, "not audio")
    rejects(playlist.rename(tmp_path / "list.wav"), "not audio")


def test_video_without_sound(tmp_path):
    path = tmp_path / "silent-film.mkv"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    rejects(path.rename(tmp_path / "film.webm"), "not audio")


@pytest.mark.parametrize(
    ("name", "codec", "rate"),
    [
        ("cut.wav", None, 44100),
        ("cut.flac", "flac", 44100),
        ("cut.mp3", "libmp3lame", 44100),
        ("cut.ogg", "libopus", 48000),
        ("cut.webm", "libopus", 48000),
        ("cut.m4a", "aac", 44100),
    ],
)
def test_truncated_files(tmp_path, name, codec, rate):
    x = sine(rate, seconds=2.0, channels=2)
    path = tmp_path / name
    write_pcm(path, x, rate) if codec is None else encode(path, x, rate, codec)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    rejects(path, "damaged")


@pytest.mark.parametrize("keep", [44, 45, 1000])
def test_wav_cut_right_after_its_header(tmp_path, keep):
    path = write_pcm(tmp_path / "cut.wav", sine(16000), 16000)
    path.write_bytes(path.read_bytes()[:keep])
    rejects(path, "damaged")


def test_corrupted_middle_of_an_ogg_file(tmp_path):
    path = encode(tmp_path / "c.ogg", sine(48000, seconds=2.0), 48000, "libopus")
    data = bytearray(path.read_bytes())
    data[len(data) // 4 : len(data) // 4 + 400] = bytes(400)
    path.write_bytes(bytes(data))
    rejects(path, "damaged")


def test_missing_file_message_names_no_server_folder(tmp_path):
    message = rejects(str(tmp_path / "nowhere" / "clip.wav"), "no audio file", "clip.wav")
    assert str(tmp_path) not in message
    rejects(tmp_path, "no audio file")  # a folder
