"""Property-based tests (hypothesis) of the validators every entry point shares: whatever comes in, the answer is
a clean value or an InputError with a message fit for a user, never another exception.

Derandomized and without an example database, so CI sees the same examples on every run; example counts are kept
small so the file runs in well under a minute on two cores.
"""

import string
import warnings

import numpy as np
import pytest
from conftest import assert_user_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from mmdemo.audio import MAX_SECONDS, SAMPLE_RATE, load_audio
from mmdemo.errors import InputError
from mmdemo.feedback.records import FIELDS, TEXT_CAPS, check_record
from mmdemo.inputs import MAX_QUESTION_CHARS, MAX_SIDE, clean_question, load_image

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FORBIDDEN = ("ffprobe", "ffmpeg", "FFmpeg", "soxr", "Errno")


def refusal_is_for_users(e: InputError, tmp_path=None) -> None:
    assert_user_message(str(e), *FORBIDDEN, *([str(tmp_path)] if tmp_path else []))


@pytest.fixture(autouse=True)
def _quiet():
    """Pillow and numpy warn about odd inputs (corrupt EXIF, overflowing casts): a warning is not a failure here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ---------------------------------------------------------------- questions

# text that reaches every branch: controls, NUL, surrogates, spaces of every kind, RTL, emoji, markup
QUESTION_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec=None),
        st.sampled_from("\x00\x1b\x7f\x85\u200b\u200e\u202e\u2028\ufeff\ud800\udfff \t\n\r\u00a0\u3000<>&\"'=*_#"),
    ),
    max_size=700,
)


@FUZZ
@given(QUESTION_TEXT)
def test_clean_question_gives_clean_text_or_a_user_message(question):
    try:
        text = clean_question(question)
    except InputError as e:
        refusal_is_for_users(e)
        return
    assert isinstance(text, str) and 0 < len(text) <= MAX_QUESTION_CHARS
    assert text == text.strip() and "  " not in text
    assert all(c == " " or c.isprintable() for c in text), repr(text)
    text.encode("utf-8")  # no lone surrogates


@FUZZ
@given(st.one_of(st.none(), st.integers(), st.floats(), st.binary(), st.lists(st.text(max_size=5), max_size=3)))
def test_clean_question_refuses_what_is_not_text(value):
    with pytest.raises(InputError) as e:
        clean_question(value)
    refusal_is_for_users(e.value)


# ---------------------------------------------------------------- images


def assert_model_ready(out) -> None:
    assert isinstance(out, Image.Image) and out.mode == "RGB"
    assert min(out.size) >= 1 and max(out.size) <= MAX_SIDE
    assert np.asarray(out).shape == (out.height, out.width, 3)


def image_bytes():
    """Random bytes, and real small images with random bytes flipped, cut or appended (closer to the decoders)."""

    @st.composite
    def damaged(draw):
        fmt = draw(st.sampled_from(["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"]))
        w, h = draw(st.integers(1, 24)), draw(st.integers(1, 24))
        seed = draw(st.integers(0, 2**16))
        image = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))
        import io

        buf = io.BytesIO()
        image.save(buf, fmt)
        data = bytearray(buf.getvalue())
        for _ in range(draw(st.integers(0, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        cut = draw(st.integers(0, len(data)))
        return bytes(data[:cut]) + draw(st.binary(max_size=16))

    return st.one_of(st.binary(max_size=2048), damaged())


@FUZZ
@given(data=image_bytes(), suffix=st.sampled_from([".png", ".jpg", ".gif", ".webp", ".bin", ""]))
def test_load_image_on_any_file(tmp_path_factory, data, suffix):
    folder = tmp_path_factory.mktemp("img")
    path = folder / f"upload{suffix}"
    path.write_bytes(data)
    try:
        out = load_image(path)
    except InputError as e:
        refusal_is_for_users(e, folder)
        return
    assert_model_ready(out)


IMAGE_DTYPES = st.one_of(
    hnp.unsigned_integer_dtypes(),
    hnp.integer_dtypes(),
    hnp.floating_dtypes(),
    hnp.boolean_dtypes(),
    hnp.complex_number_dtypes(),
    st.just(np.dtype(object)),
)


@FUZZ
@given(
    hnp.arrays(
        dtype=IMAGE_DTYPES,
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=12),
        elements={"allow_nan": True, "allow_infinity": True},
    )
)
def test_load_image_on_any_array(array):
    try:
        out = load_image(array)
    except InputError as e:
        refusal_is_for_users(e)
        return
    assert_model_ready(out)
    assert array.ndim in (2, 3) and out.size == (array.shape[1], array.shape[0])


# ---------------------------------------------------------------- audio


def assert_audio_ready(x, sampling_rate: int = SAMPLE_RATE) -> None:
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 1
    assert len(x) > 0 and np.isfinite(x).all()
    assert len(x) <= (MAX_SECONDS + 1) * sampling_rate


def audio_bytes():
    """Random bytes, and a real WAV with random header fields and random bytes flipped or cut."""

    @st.composite
    def wav(draw):
        import struct

        rate = draw(st.sampled_from([0, 1, 8000, 16000, 44100, 2**31, 2**32 - 1]))
        channels = draw(st.integers(0, 8))
        bits = draw(st.sampled_from([0, 8, 16, 24, 32, 64, 12]))
        tag = draw(st.sampled_from([1, 3, 6, 7, 0xFFFE, 99]))
        samples = draw(st.binary(min_size=0, max_size=4000))
        declared = draw(st.sampled_from([len(samples), 0, 0xFFFFFFFF, 10**9]))
        block = channels * bits // 8
        fmt = struct.pack("<HHIIHH", tag, channels, rate % 2**32, rate * block % 2**32, block % 2**16, bits)
        data = bytearray(
            b"RIFF" + struct.pack("<I", 36 + len(samples)) + b"WAVEfmt \x10\x00\x00\x00" + fmt + b"data"
            + struct.pack("<I", declared) + samples
        )  # fmt: skip
        for _ in range(draw(st.integers(0, 3))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data[: draw(st.integers(0, len(data)))])

    return st.one_of(st.binary(max_size=2048), wav())


@FUZZ
@given(data=audio_bytes(), suffix=st.sampled_from([".wav", ".mp3", ".webm", ".ogg", ".m3u8", ""]))
def test_load_audio_on_any_file(tmp_path_factory, data, suffix):
    folder = tmp_path_factory.mktemp("audio")
    path = folder / f"upload{suffix}"
    path.write_bytes(data)
    try:
        x = load_audio(path)
    except InputError as e:
        refusal_is_for_users(e, folder)
        return
    assert_audio_ready(x)


AUDIO_DTYPES = st.one_of(
    st.sampled_from([np.dtype(t) for t in ("int8", "uint8", "int16", "int32", "float16", "float32", "float64")]),
    st.sampled_from([np.dtype(t) for t in ("int64", "uint16", "bool", "complex64", "object")]),
)
RATES = st.one_of(
    st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000]),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([None, "16000", True, 0]),
)


@st.composite
def audio_arrays(draw):
    dtype = draw(AUDIO_DTYPES)
    n = draw(st.sampled_from([0, 1, 10, 1600, 4000, 16000]))
    shape = draw(st.sampled_from([(n,), (n, 1), (n, 2), (n, 6), (2, n), (n, 0), (n, 2, 2), ()]))
    if dtype.kind in "iub":
        values = np.random.default_rng(n).integers(0, 2, size=shape) if dtype.kind == "b" else None
        info = np.iinfo(dtype) if dtype.kind != "b" else None
        a = values.astype(bool) if values is not None else np.random.default_rng(n).integers(
            info.min, info.max, size=shape, dtype=dtype, endpoint=True
        )  # fmt: skip
    else:
        scale = draw(st.sampled_from([0.0, 1e-6, 0.5, 1.0, 40.0, 1e30]))
        a = np.array(np.random.default_rng(n).standard_normal(shape) * scale, dtype=dtype)
        if a.size and draw(st.booleans()):
            a.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 0.0]))
    return a


@FUZZ
@given(rate=RATES, array=audio_arrays(), as_dict=st.booleans(), target=st.sampled_from([8000, 16000, 22050]))
def test_load_audio_on_any_array(rate, array, as_dict, target):
    audio = {"array": array, "sampling_rate": rate} if as_dict else (rate, array)
    try:
        x = load_audio(audio, sampling_rate=target)
    except InputError as e:
        refusal_is_for_users(e)
        return
    assert_audio_ready(x, target)
    samples = max(array.shape)  # (n,), (n, channels) or (channels, n), with n > channels once long enough
    assert abs(len(x) - samples * target / int(rate)) <= 2


@FUZZ
@given(st.one_of(st.none(), st.integers(), st.text(max_size=20), st.binary(max_size=20), st.tuples(st.integers())))
def test_load_audio_refuses_what_is_not_audio(value):
    with pytest.raises(InputError) as e:
        load_audio(value)
    refusal_is_for_users(e.value)


# ---------------------------------------------------------------- feedback records

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
ANY_VALUE = st.one_of(
    JSON,
    st.text(alphabet=st.characters(codec=None), max_size=300),
    st.sampled_from([1, -1, 0, 2, True, False, 1.0, "1", b"x", {1, 2}, ("a",), object()]),
)
FIELD_NAMES = st.one_of(st.sampled_from(FIELDS), st.text(max_size=12), st.integers(), st.none())


@FUZZ
@given(st.one_of(st.dictionaries(FIELD_NAMES, ANY_VALUE, max_size=8), st.text(max_size=50), st.lists(st.integers())))
def test_check_record_gives_columns_or_a_user_message(record):
    try:
        values = check_record(record)
    except InputError as e:
        refusal_is_for_users(e)
        return
    assert isinstance(values, dict) and set(values) == set(FIELDS)
    assert values["task"].strip() and values["key"].strip()
    assert values["rating"] in (None, 1, -1) and type(values["rating"]) in (type(None), int)
    for name, cap in TEXT_CAPS.items():
        assert values[name] is None or (isinstance(values[name], str) and len(values[name]) <= cap)


@FUZZ
@given(
    task=st.text(alphabet=string.ascii_letters + "-", min_size=1, max_size=30).filter(str.strip),
    question=st.text(alphabet=st.characters(codec=None), max_size=300),
    rating=st.sampled_from([None, 1, -1]),
    output=JSON,
)
def test_check_record_keeps_valid_records(task, question, rating, output):
    valid = "\x00" not in question and not any(0xD800 <= ord(c) <= 0xDFFF for c in question)  # no NUL, no surrogate
    record = {"task": task, "question": question, "rating": rating, "output": output}
    try:
        values = check_record(record)
    except InputError as e:
        refusal_is_for_users(e)
        # refused only for a NUL or lone surrogate in the question, or NaN/infinity in the output
        assert not valid or "JSON" in str(e)
        return
    assert values["task"] == task and values["question"] == question and values["rating"] == rating
