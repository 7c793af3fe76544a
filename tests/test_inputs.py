"""Bad input is refused with mmdemo.InputError and a message fit for a user; odd but legal images load as RGB."""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import QUESTION, assert_user_message
from PIL import Image

import mmdemo
from mmdemo.inputs import MAX_IMAGE_PIXELS, MAX_QUESTION_CHARS, clean_question, load_image

NOT_AN_IMAGE = "not an image we can read"
DAMAGED = "damaged or truncated"


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def noise(w: int = 48, h: int = 40, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose header claims width×height (a decompression bomb as far as the header goes)."""
    data = bytearray(encoded(Image.new("L", (8, 8)), "PNG"))
    ihdr = b"IHDR" + struct.pack(">II", width, height) + bytes(data[24:29])
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    return bytes(data)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def refused(image, tmp_path: Path, match: str) -> str:
    with pytest.raises(mmdemo.InputError, match=match) as e:
        load_image(image)
    assert isinstance(e.value, ValueError)
    assert_user_message(str(e.value), str(tmp_path))
    return str(e.value)


# ---- files that are not (good) images -------------------------------------------------------------

PNG, JPEG = encoded(noise(), "PNG"), encoded(noise(), "JPEG", quality=90)


@pytest.mark.parametrize(
    ("name", "data", "match"),
    [
        ("text.png", b"hello, this is a text file\n" * 20, NOT_AN_IMAGE),
        ("page.png", b"<!doctype html><html><body><script>alert(1)</script></body></html>", NOT_AN_IMAGE),
        ("drawing.png", b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><rect/></svg>', NOT_AN_IMAGE),
        ("doc.jpg", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", NOT_AN_IMAGE),
        ("random.png", bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)), NOT_AN_IMAGE),
        ("empty.png", b"", "empty"),
        ("truncated.png", PNG[: len(PNG) // 2], DAMAGED),
        ("truncated.jpg", JPEG[: len(JPEG) // 2], DAMAGED),
        ("header-only.png", PNG[:40], f"{NOT_AN_IMAGE}|{DAMAGED}"),
        ("header-only.jpg", JPEG[:24], f"{NOT_AN_IMAGE}|{DAMAGED}"),
        ("corrupt.png", PNG[:80] + bytes(300) + PNG[380:], DAMAGED),
        ("corrupt.jpg", JPEG[:400] + bytes(range(256)) * 3 + JPEG[1168:], f"{NOT_AN_IMAGE}|{DAMAGED}"),
        ("truncated.gif", encoded(noise(), "GIF")[:1200], DAMAGED),
        ("truncated.webp", encoded(noise(), "WEBP")[:200], DAMAGED),
        ("image.ico", encoded(noise(32, 32), "ICO"), NOT_AN_IMAGE),  # a real image, outside the allow-list
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else "",
)
def test_bad_image_files_are_refused(tmp_path, name, data, match):
    refused(write(tmp_path, name, data), tmp_path, match)


def test_missing_file_is_refused_without_the_server_path(tmp_path):
    message = refused(tmp_path / "nowhere.png", tmp_path, "No image file")
    assert "nowhere.png" in message
    refused(str(tmp_path / "nowhere.jpg"), tmp_path, "No image file")
    refused(tmp_path, tmp_path, "No image file")  # a folder is not an image file either


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("size", [(100_000, 100_000), (8_000, 6_000), (MAX_IMAGE_PIXELS + 1, 1)])
def test_decompression_bomb_is_refused(tmp_path, size):
    # 8000×6000 lies between Pillow's warning and its error: our own limit must catch it
    assert size[0] * size[1] > MAX_IMAGE_PIXELS
    message = refused(write(tmp_path, "bomb.png", png_declaring(*size)), tmp_path, "too large")
    assert f"{MAX_IMAGE_PIXELS:,}" in message


def test_too_many_pixels_in_memory_is_refused(tmp_path):
    refused(Image.new("1", (8_000, 6_000)), tmp_path, "too large")


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((4, 4, 5), np.uint8),
        np.zeros((4, 4, 3, 2), np.uint8),
        np.zeros((4,), np.uint8),
        np.zeros((0, 4, 3), np.uint8),
        np.full((4, 4, 3), np.nan, np.float32),
        np.full((4, 4, 3), np.inf, np.float64),
    ],
    ids=["5-channels", "4-d", "1-d", "zero-height", "nan", "inf"],
)
def test_bad_arrays_are_refused(tmp_path, array):
    refused(array, tmp_path, "image|NaN|infinite")


@pytest.mark.parametrize("value", [None, 42, {"path": "x.png"}])
def test_non_images_are_refused(tmp_path, value):
    refused(value, tmp_path, "Expected an image")


def test_an_image_files_bytes_decode_as_the_file_does(tmp_path, example_image):
    from_bytes = load_image(example_image.read_bytes())
    assert from_bytes.mode == "RGB" and np.array_equal(np.asarray(from_bytes), np.asarray(load_image(example_image)))
    refused(b"\x89PNG", tmp_path, "not an image we can read")
    refused(b"", tmp_path, "empty")


def test_zero_sized_pil_image_is_refused(tmp_path):
    refused(Image.new("RGB", (0, 5)), tmp_path, "empty")


# ---- odd but legal images --------------------------------------------------------------------------


def modes() -> dict[str, Image.Image]:
    base = noise(24, 16)
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(base.size))
    i16 = Image.fromarray(np.linspace(0, 65535, 24 * 16).reshape(16, 24).astype(np.uint16))
    p_transparent = base.convert("P")
    p_transparent.info["transparency"] = 0
    return {
        "P": base.convert("P"),
        "P-transparent": p_transparent,
        "RGBA": rgba,
        "LA": rgba.convert("LA"),
        "PA": base.convert("PA"),
        "L": base.convert("L"),
        "1": base.convert("1"),
        "I;16": i16,
        "I": i16.convert("I"),
        "F": i16.convert("F"),
        "CMYK": base.convert("CMYK"),
        "YCbCr": base.convert("YCbCr"),
    }


@pytest.mark.parametrize("mode", list(modes()))
def test_every_mode_loads_as_rgb(mode):
    image = modes()[mode]
    out = load_image(image)
    assert out.mode == "RGB" and out.size == image.size
    a = np.asarray(out)
    assert a.dtype == np.uint8 and a.shape == (16, 24, 3)
    assert a.std() > 0, "the picture was lost"


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("P", "PNG"),
        ("RGBA", "PNG"),
        ("LA", "PNG"),
        ("L", "PNG"),
        ("1", "PNG"),
        ("I;16", "PNG"),
        ("CMYK", "JPEG"),
        ("CMYK", "TIFF"),
        ("RGBA", "WEBP"),
        ("L", "BMP"),
    ],
)
def test_every_mode_loads_as_rgb_from_a_file(tmp_path, mode, fmt):
    path = write(tmp_path, f"image.{fmt.lower()}", encoded(modes()[mode], fmt))
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (24, 16)
    assert np.asarray(out).std() > 0


def test_sixteen_bit_uses_the_full_range():
    a = np.asarray(load_image(modes()["I;16"]))
    assert a.min() == 0 and a.max() == 255  # stretched to 8 bits, not clipped to white


def test_transparency_is_flattened_onto_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # red, fully transparent
    rgba.putpixel((0, 0), (0, 0, 255, 255))  # one opaque blue pixel
    a = np.asarray(load_image(rgba))
    assert tuple(a[0, 0]) == (0, 0, 255)
    assert tuple(a[3, 3]) == (255, 255, 255)


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (20, 10), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    path = tmp_path / "animated.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with Image.open(path) as im:
        assert im.n_frames == 3
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (20, 10)
    assert tuple(np.asarray(out)[5, 10]) == (255, 0, 0)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (30, 10), (0, 128, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert load_image(path).size == (10, 30)


@pytest.mark.parametrize("shape", [(20, 30), (20, 30, 1), (20, 30, 4)])
def test_gray_and_rgba_arrays_load_as_rgb(shape):
    out = load_image(np.full(shape, 200, np.uint8))
    assert out.mode == "RGB" and out.size == (30, 20)


def test_float_arrays_in_unit_range_are_scaled():
    out = load_image(np.full((5, 5, 3), 0.5, np.float32))
    assert np.asarray(out)[0, 0, 0] == 127


@pytest.mark.parametrize("size", [(1, 1), (1, 2000), (2000, 1), (3, 700)])
def test_tiny_and_extreme_aspect_images_are_answered(tiny_vqa, size):
    result = tiny_vqa(Image.new("RGB", size, (200, 30, 30)), QUESTION, top_k=2)
    assert len(result) == 2 and result[0]["score"] >= result[1]["score"]


# ---- questions -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "match"),
    [
        ("", "type a question"),
        ("   \t\n  ", "type a question"),
        ("\x00\x01\u200b", "type a question"),
        ("what " * 120, f"too long.*{MAX_QUESTION_CHARS}"),
        ("x" * (MAX_QUESTION_CHARS + 1), "too long"),
        (None, "must be text"),
        (42, "must be text"),
        (b"what shape?", "must be text"),
        ([42], "must be text"),
    ],
    ids=["empty", "whitespace", "control-only", "long-words", "long-run", "none", "int", "bytes", "list-of-int"],
)
def test_bad_questions_are_refused(tiny_vqa, example_image, tmp_path, question, match):
    with pytest.raises(mmdemo.InputError, match=match) as e:
        tiny_vqa(str(example_image), question)
    assert_user_message(str(e.value), str(tmp_path))


def test_question_at_the_length_limit_is_accepted():
    assert len(clean_question("a" * MAX_QUESTION_CHARS)) == MAX_QUESTION_CHARS


def test_questions_are_cleaned():
    assert clean_question("  what\tshape\x00is\n\n it?  ") == "what shape is it?"


@pytest.mark.parametrize(
    ("question", "words"),
    [
        ("what is the zebra?", ["zebra"]),
        ("What Colour is the shape, dude?", ["Colour", "dude"]),
        ("is the éléphant red?", ["éléphant"]),
    ],
)
def test_unknown_words_are_named(tiny_vqa, example_image, question, words):
    with pytest.raises(mmdemo.InputError, match="does not know") as e:
        tiny_vqa(str(example_image), question)
    message = str(e.value)
    for word in words:
        assert repr(word) in message
    assert "shape" in message  # and the words it does know
    assert_user_message(message)


def test_known_words_in_any_case_and_punctuation_are_fine(tiny_vqa, example_image):
    assert len(tiny_vqa(str(example_image), "  WHAT Shape is in the image?!  ", top_k=1)) == 1


@pytest.mark.parametrize(("images", "questions"), [(2, 3), (3, 1), (1, 2), (0, 1)])
def test_mismatched_list_lengths_are_refused(tiny_vqa, example_image, images, questions):
    with pytest.raises(mmdemo.InputError, match=f"{images} images but {questions} questions"):
        tiny_vqa([str(example_image)] * images, [QUESTION] * questions)


@pytest.mark.parametrize("top_k", [0, -1, 2.5, "3", None, True])
def test_bad_top_k_is_refused(tiny_vqa, example_image, top_k):
    with pytest.raises(mmdemo.InputError, match="top_k") as e:
        tiny_vqa(str(example_image), QUESTION, top_k=top_k)
    assert_user_message(str(e.value))


def test_bad_item_in_a_list_is_named_by_position(tiny_vqa, example_image, tmp_path):
    bad = write(tmp_path, "bad.png", b"nope")
    with pytest.raises(mmdemo.InputError, match=NOT_AN_IMAGE):
        tiny_vqa([str(example_image), str(bad)], QUESTION)
    with pytest.raises(mmdemo.InputError, match="^Input 3: Please type a question"):
        tiny_vqa([str(example_image)] * 3, [QUESTION, QUESTION, " "])
