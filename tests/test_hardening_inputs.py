"""Hardening of the pipeline-layer validators against every class of bad input in RELIABILITY.md.

tests/test_inputs.py and tests/test_audio_inputs.py hold the first cases of each class; these add the rest:
images outside the allow-list, bombs in every container, huge photos shrunk to MAX_SIDE, every PIL mode from
files and arrays, broken EXIF, animated WebP; crafted WAV headers, playlists and concat lists, odd rates and codecs;
hostile and exotic text. Every refusal is an InputError with a message fit to show a user.
"""

import io
import struct
import time
import wave
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import QUESTION, assert_user_message
from PIL import Image, JpegImagePlugin

from mmdemo.audio import MAX_SECONDS, SAMPLE_RATE, load_audio
from mmdemo.errors import InputError
from mmdemo.inputs import MAX_IMAGE_PIXELS, MAX_QUESTION_CHARS, MAX_SIDE, clean_question, load_image

NOT_AN_IMAGE = "not an image we can read"
DAMAGED = "damaged or truncated"
AUDIO_FORBIDDEN = ("ffprobe", "ffmpeg", "FFmpeg", "av.", "Invalid data found", "soxr")


def refused(load, value, match: str, *forbidden: str) -> str:
    with pytest.raises(InputError, match=match) as e:
        load(value)
    message = str(e.value)
    assert_user_message(message, *forbidden)
    return message


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def noise(w: int = 48, h: int = 40, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit colour); `rows` are the filtered scanlines."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


# ---------------------------------------------------------------- images: not images, or not ours


WAV_BYTES = b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80>\x00\x00\x00}\x00\x00\x02\x00\x10\x00data"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("sound.png", WAV_BYTES + bytes(4000)),
        ("page.jpg", b"<html><head><title>x</title></head><body onload=alert(1)>hi</body></html>"),
        ("page.html", b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>"),
        (
            "drawing.svg",
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        ),
        ("script.gif", b"GIF89a/*\x00\x00*/=1;alert(1)//"),  # a GIF/JS polyglot header with nothing after it
        ("archive.png", b"PK\x03\x04" + bytes(200)),
        ("program.jpg", b"\x7fELF\x02\x01\x01" + bytes(200)),
        ("text.webp", "what is this? ✓ ünïcödé\n".encode() * 50),
        ("nul.bmp", bytes(1000)),
        ("one-byte.png", b"\x89"),
        ("magic-only.png", b"\x89PNG\r\n\x1a\n"),
        ("magic-only.jpg", b"\xff\xd8\xff"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_more_files_that_are_not_images(tmp_path, name, data):
    refused(load_image, write(tmp_path, name, data), f"{NOT_AN_IMAGE}|{DAMAGED}|empty", str(tmp_path))


def psd_header() -> bytes:
    """The start of a Photoshop file: 8BPS, version 1, 3 channels, 16×16, 8 bits, RGB, then empty sections."""
    return b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 16, 16, 8, 3) + bytes(12) + b"\x00\x00" + bytes(16 * 16 * 3)


@pytest.mark.parametrize("fmt", ["ICO", "PPM", "TGA", "PCX", "SGI", "IM", "JPEG2000", "EPS", "DDS", "QOI", "PSD"])
def test_formats_outside_the_allow_list_are_refused(tmp_path, fmt):
    """Real images Pillow could decode, refused because every decoder is attack surface we do not need."""
    data = psd_header() if fmt == "PSD" else encoded(noise(32, 32), fmt)
    path = write(tmp_path, f"image.{fmt.lower()}", data)
    with Image.open(path) as im:  # Pillow itself knows the format
        assert im.format == fmt
    message = refused(load_image, path, NOT_AN_IMAGE, str(tmp_path))
    assert "PNG" in message and "JPEG" in message  # says what to use instead
    refused(load_image, path.rename(tmp_path / "renamed.png"), NOT_AN_IMAGE)  # the name does not matter


# ---------------------------------------------------------------- images: decompression bombs in every container


def gif_declaring(width: int, height: int) -> bytes:
    data = bytearray(encoded(Image.new("L", (8, 8)), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)  # logical screen
    start = data.index(b",")  # image descriptor: the frame's own size follows its position
    data[start + 5 : start + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def tiff_declaring(width: int, height: int) -> bytes:
    data = bytearray(encoded(Image.new("L", (8, 8)), "TIFF"))
    ifd = struct.unpack("<I", data[4:8])[0]
    for n in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
        entry = ifd + 2 + 12 * n
        tag, kind = struct.unpack("<HH", data[entry : entry + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength
            value = width if tag == 256 else height
            data[entry + 8 : entry + 12] = struct.pack("<H2x" if kind == 3 else "<I", value)
    return bytes(data)


TINY_EXIF = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x00\x00"  # an empty IFD: makes Pillow write a VP8X chunk


def webp_declaring(width: int, height: int) -> bytes:
    data = bytearray(encoded(Image.new("RGBA", (8, 8), (1, 2, 3, 4)), "WEBP", lossless=True, exif=TINY_EXIF))
    at = data.index(b"VP8X") + 8 + 4  # flags (4 bytes), then canvas width - 1 and height - 1 (24 bits each)
    data[at : at + 6] = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return bytes(data)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    ("name", "make", "size"),
    [
        ("bomb.gif", gif_declaring, (65_535, 65_535)),  # past twice Pillow's limit: its own error
        ("bomb.gif", gif_declaring, (8_000, 6_000)),  # between Pillow's warning and error: ours
        ("bomb.tif", tiff_declaring, (60_000, 60_000)),
        ("bomb.tif", tiff_declaring, (8_000, 6_000)),
        ("bomb.webp", webp_declaring, (16_000, 16_000)),
        ("wide.gif", gif_declaring, (65_535, 700)),
    ],
    ids=["gif-huge", "gif-between", "tiff-huge", "tiff-between", "webp", "gif-wide"],
)
def test_decompression_bombs_in_other_containers_are_refused_from_the_header(tmp_path, name, make, size):
    assert size[0] * size[1] > MAX_IMAGE_PIXELS
    start = time.perf_counter()
    # libwebp itself refuses a canvas larger than the picture in it: damaged, rather than too large
    match = f"too large|{DAMAGED}" if name.endswith(".webp") else "too large"
    message = refused(load_image, write(tmp_path, name, make(*size)), match, str(tmp_path))
    assert time.perf_counter() - start < 0.5, "decoded before refusing"
    assert f"{MAX_IMAGE_PIXELS:,}" in message or name.endswith(".webp")


def test_bomb_arrays_and_pil_images_are_refused():
    refused(load_image, np.zeros((1, MAX_IMAGE_PIXELS + 1), np.uint8), "too large")
    refused(load_image, Image.new("L", (7_000, 7_000)), "too large")


def test_zero_sized_images_in_files_are_refused(tmp_path):
    zero_wide = png(0, 4, 8, 0, b"")
    refused(load_image, write(tmp_path, "zero.png", zero_wide), f"{NOT_AN_IMAGE}|{DAMAGED}|empty", str(tmp_path))
    refused(load_image, write(tmp_path, "zero.gif", gif_declaring(0, 0)), f"{NOT_AN_IMAGE}|{DAMAGED}|empty")
    refused(load_image, np.zeros((5, 0), np.uint8), "empty")


# ---------------------------------------------------------------- images: huge but legal photos are shrunk


def photo(w: int, h: int) -> Image.Image:
    """A smooth w×h picture (compresses well, so the test stays fast) with a feature near each corner."""
    x, y = np.meshgrid(np.linspace(0, 255, w, dtype=np.float32), np.linspace(0, 255, h, dtype=np.float32))
    a = np.stack([x, y, 255 - x], axis=2).astype(np.uint8)
    return Image.fromarray(a)


def assert_fitted(out: Image.Image, size: tuple[int, int]) -> None:
    assert out.mode == "RGB"
    assert max(out.size) == MAX_SIDE
    assert out.width / out.height == pytest.approx(size[0] / size[1], rel=2e-3)


@pytest.fixture(scope="module")
def big_photo() -> Image.Image:
    return photo(6000, 4000)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_huge_photos_are_shrunk_to_max_side_keeping_their_aspect(tmp_path, big_photo, fmt):
    path = write(
        tmp_path, f"big.{fmt.lower()}", encoded(big_photo, fmt, **({"compress_level": 1} if fmt == "PNG" else {}))
    )
    out = load_image(path)
    assert_fitted(out, (6000, 4000))
    assert out.size == (MAX_SIDE, 1365)
    # the picture is the same picture: the left edge is still blue-ish, the right edge red-ish
    a = np.asarray(out).astype(int)
    assert a[600, 5, 2] > 200 > a[600, -5, 2] and a[600, -5, 0] > 200


def test_huge_jpeg_is_decoded_at_reduced_scale(tmp_path, big_photo, monkeypatch):
    """Image.draft makes libjpeg decode 6000×4000 at 1/2 scale (3000×2000): a quarter of the memory and time."""
    drafts = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        drafts.append((size, original(self, mode, size)))
        return drafts[-1][1]

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    out = load_image(write(tmp_path, "big.jpg", encoded(big_photo, "JPEG")))
    assert_fitted(out, (6000, 4000))
    (requested, (_, box)), *_ = drafts
    assert max(requested) == MAX_SIDE and box[2:] == (3000, 2000)


def test_huge_rotated_jpeg_is_shrunk_and_turned(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    out = load_image(write(tmp_path, "portrait.jpg", encoded(photo(4800, 3200), "JPEG", exif=exif)))
    assert out.size == (1365, MAX_SIDE)


@pytest.mark.parametrize("kind", ["array", "pil", "gif", "tiff", "webp"])
def test_huge_images_of_every_kind_are_shrunk(tmp_path, kind):
    image = photo(3000, 900)
    source = {
        "array": np.asarray(image),
        "pil": image,
        "gif": write(tmp_path, "big.gif", encoded(image.convert("P"), "GIF")),
        "tiff": write(tmp_path, "big.tif", encoded(image, "TIFF")),
        "webp": write(tmp_path, "big.webp", encoded(image, "WEBP", quality=50)),
    }[kind]
    assert_fitted(load_image(source), (3000, 900))
    if kind == "pil":
        assert image.size == (3000, 900), "the caller's image was changed"


@pytest.mark.parametrize("size", [(4000, 1), (1, 4000), (40_000, 3), (2049, 2049)])
def test_extreme_aspect_ratios_shrink_without_vanishing(tmp_path, size):
    out = load_image(write(tmp_path, "strip.png", encoded(Image.new("RGB", size, (10, 200, 30)), "PNG")))
    assert max(out.size) == MAX_SIDE and min(out.size) >= 1
    assert tuple(np.asarray(out)[0, 0]) == (10, 200, 30)


@pytest.mark.parametrize("size", [(1, 1), (1, 7), (7, 1), (48, 40), (MAX_SIDE, 3), (3, MAX_SIDE)])
@pytest.mark.parametrize("kind", ["png", "array", "pil"])
def test_images_within_max_side_keep_every_pixel(tmp_path, size, kind):
    image = noise(*size, seed=size[0] * 7 + size[1])
    source = {"png": write(tmp_path, "small.png", encoded(image, "PNG")), "array": np.asarray(image), "pil": image}
    out = load_image(source[kind])
    assert out.size == size
    np.testing.assert_array_equal(np.asarray(out), np.asarray(image))


# ---------------------------------------------------------------- images: every mode, from files and arrays


def base() -> Image.Image:
    return noise(24, 16, seed=3)


@pytest.mark.parametrize("mode", ["La", "RGBa", "HSV", "LAB", "RGBX", "I;16B", "I;16L", "L"])
def test_rarer_pil_modes_load_as_rgb(mode):
    image = base().convert("RGBA").convert(mode) if mode in ("La", "RGBa") else None
    if mode.startswith("I;16"):
        image = Image.frombytes(
            mode, (24, 16), np.arange(24 * 16, dtype=">u2" if mode.endswith("B") else "<u2").tobytes()
        )
    image = image or base().convert(mode)
    out = load_image(image)
    assert out.mode == "RGB" and out.size == (24, 16)
    assert np.asarray(out).std() > 0


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("LAB", "TIFF"), ("I;16", "TIFF"), ("I", "TIFF"), ("F", "TIFF"), ("1", "TIFF"), ("LA", "TIFF"), ("RGBA", "TIFF"),
     ("P", "GIF"), ("P", "BMP"), ("1", "BMP"), ("L", "GIF"), ("LA", "WEBP"), ("P", "WEBP"), ("I;16", "PNG"),
     ("YCbCr", "JPEG"), ("L", "JPEG"), ("RGBA", "GIF")],
)  # fmt: skip
def test_every_mode_from_a_file(tmp_path, mode, fmt):
    image = base()
    image = Image.fromarray(np.asarray(image.convert("L")).astype(np.uint16) * 257) if mode == "I;16" else image
    image = image.convert(mode) if mode != "I;16" else image
    out = load_image(write(tmp_path, f"image.{fmt.lower()}", encoded(image, fmt)))
    assert out.mode == "RGB" and out.size == (24, 16)
    assert np.asarray(out).std() > 0


def test_sixteen_bit_grey_png_keeps_its_range(tmp_path):
    """What Gradio gets wrong (saturating to white): a dark 16-bit ramp stays a ramp."""
    values = np.linspace(0, 4000, 32 * 8).reshape(8, 32).astype(">u2")  # all below 8-bit white in 16-bit terms
    rows = b"".join(b"\x00" + row.tobytes() for row in values)
    a = np.asarray(load_image(write(tmp_path, "grey16.png", png(32, 8, 16, 0, rows))))
    assert a.min() == 0 and a.max() == 255 and len(np.unique(a)) > 100


def test_sixteen_bit_colour_png(tmp_path):
    rgb = np.zeros((8, 8, 3), ">u2")
    rgb[..., 0], rgb[..., 2] = 0xFFFF, 0x8000  # red full, blue half
    rows = b"".join(b"\x00" + row.tobytes() for row in rgb)
    out = load_image(write(tmp_path, "rgb16.png", png(8, 8, 16, 2, rows)))
    assert out.mode == "RGB" and tuple(np.asarray(out)[4, 4]) == (255, 0, 128)


def test_sixteen_bit_colour_png_with_alpha(tmp_path):
    rgba = np.zeros((4, 4, 4), ">u2")
    rgba[..., 1] = 0xFFFF  # green ...
    rgba[0, 0, 3] = 0xFFFF  # ... opaque in one corner only
    rows = b"".join(b"\x00" + row.tobytes() for row in rgba)
    a = np.asarray(load_image(write(tmp_path, "rgba16.png", png(4, 4, 16, 6, rows))))
    assert tuple(a[0, 0]) == (0, 255, 0) and tuple(a[3, 3]) == (255, 255, 255)


@pytest.mark.parametrize(
    ("array", "pixel"),
    [
        (np.full((4, 4), 0xFFFF, np.uint16), 255),  # 16-bit: its top byte, not saturated
        (np.full((4, 4), 0x8000, np.uint16), 127),
        (np.full((4, 4, 3), 0x4000, np.uint16), 63),
        (np.ones((4, 4), bool), 255),  # a mask: white, not 1/255 grey
        (np.full((4, 4), 200, np.int64), 200),  # numpy's default integer, 0..255
        (np.full((4, 4), -5, np.int8), 0),  # clipped, not wrapped
        (np.full((4, 4), 300.0, np.float32), 255),  # float beyond 1: taken as 0..255
        (np.full((4, 4), 0.25, np.float16), 63),
        (np.full((4, 4, 1), 0.5, np.float64), 127),
    ],
    ids=["u16-max", "u16-half", "u16-rgb", "bool", "int64", "int8-negative", "float-255", "float16", "float-hw1"],
)
def test_arrays_of_every_numeric_type(array, pixel):
    a = np.asarray(load_image(array))
    assert a.dtype == np.uint8 and a.shape[2] == 3 and (a == pixel).all(), a[0, 0]


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((4, 4, 3), np.complex64),
        np.array([["a", "b"], ["c", "d"]]),
        np.zeros((4, 4), object),
        np.zeros((4, 4), "datetime64[s]"),
        np.zeros((4, 4, 2), np.uint8),
        np.zeros((0, 0), np.uint8),
        np.float32(3.0).reshape(()),
    ],
    ids=["complex", "str", "object", "datetime", "2-channels", "0x0", "scalar"],
)
def test_arrays_that_are_not_pictures(array):
    refused(load_image, array, "image|empty|array")


# ---------------------------------------------------------------- images: EXIF, animation, alpha


def with_exif(fmt: str, exif: bytes) -> bytes:
    """A 30×10 green image with raw EXIF bytes (a TIFF structure, without the 'Exif' prefix)."""
    image = Image.new("RGB", (30, 10), (0, 128, 0))
    if fmt == "PNG":
        return encoded(image, "PNG", exif=exif)
    data = encoded(image, "JPEG")
    payload = b"Exif\x00\x00" + exif
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def orientation(value_type: int, count: int, value: bytes, next_ifd: bytes = bytes(4)) -> bytes:
    """A little-endian TIFF header with one IFD holding one Orientation (0x0112) entry."""
    return b"II*\x00\x08\x00\x00\x00\x01\x00" + struct.pack("<HHI", 0x0112, value_type, count) + value + next_ifd


BROKEN_EXIF = {
    "random": np.random.default_rng(0).bytes(200),
    "empty": b"",
    "header-only": b"II*\x00",
    "offset-past-end": b"II*\x00\xff\xff\xff\x7f",
    "huge-entry-count": b"II*\x00\x08\x00\x00\x00\xff\xff",
    "big-endian-garbage": b"MM\x00*" + np.random.default_rng(1).bytes(60),
    "orientation-9": orientation(3, 1, b"\x09\x00\x00\x00"),
    "orientation-0": orientation(3, 1, b"\x00\x00\x00\x00"),
    "orientation-text": orientation(2, 4, b"abc\x00"),
    "orientation-bad-type": orientation(99, 1, b"\x06\x00\x00\x00"),
    "ifd-loop": orientation(3, 1, b"\x01\x00\x00\x00", next_ifd=b"\x08\x00\x00\x00"),
}


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("case", list(BROKEN_EXIF))
def test_broken_exif_is_ignored_and_the_picture_kept(tmp_path, fmt, case):
    out = load_image(write(tmp_path, f"exif.{fmt.lower()}", with_exif(fmt, BROKEN_EXIF[case])))
    assert out.mode == "RGB" and out.size == (30, 10)
    assert np.asarray(out)[5, 15].tolist() == pytest.approx([0, 128, 0], abs=3)


@pytest.mark.parametrize(("value", "size"), [(1, (30, 10)), (3, (30, 10)), (6, (10, 30)), (8, (10, 30)), (5, (10, 30))])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_every_exif_orientation_is_applied(tmp_path, fmt, value, size):
    out = load_image(
        write(tmp_path, "o." + fmt.lower(), with_exif(fmt, orientation(3, 1, struct.pack("<HH", value, 0))))
    )
    assert out.size == size


def frames(size=(20, 10)) -> list[Image.Image]:
    return [Image.new("RGB", size, c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]


@pytest.mark.parametrize(("fmt", "tol"), [("WEBP", 8), ("PNG", 0), ("GIF", 0), ("TIFF", 0)])
def test_animated_images_give_their_first_frame(tmp_path, fmt, tol):
    path = tmp_path / f"animated.{fmt.lower()}"
    first, *rest = frames()
    first.save(
        path,
        fmt,
        save_all=True,
        append_images=rest,
        duration=100,
        loop=0,
        **({"lossless": True} if fmt == "WEBP" else {}),
    )
    with Image.open(path) as im:
        assert getattr(im, "n_frames", 1) == 3
    out = load_image(path)
    assert out.size == (20, 10)
    assert np.asarray(out)[5, 10].tolist() == pytest.approx([255, 0, 0], abs=tol)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "GIF", "TIFF"])
def test_alpha_is_flattened_onto_white_from_files(tmp_path, fmt):
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # red, fully transparent ...
    rgba.paste((0, 0, 255, 255), (0, 0, 4, 8))  # ... but for an opaque blue left half
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    a = np.asarray(load_image(write(tmp_path, f"alpha.{fmt.lower()}", encoded(rgba, fmt, **kwargs))))
    assert tuple(a[4, 1]) == (0, 0, 255)
    assert tuple(a[4, 6]) == (255, 255, 255)


def test_half_transparent_pixels_blend_with_white():
    a = np.asarray(load_image(Image.new("RGBA", (2, 2), (0, 0, 0, 128))))
    assert a[0, 0].tolist() == pytest.approx([127, 127, 127], abs=1)
    assert np.asarray(load_image(np.zeros((2, 2, 4), np.uint8)))[0, 0].tolist() == [255, 255, 255]  # RGBA array


# ---------------------------------------------------------------- audio


def wav_header(rate: int, channels: int = 1, bits: int = 16, fmt_tag: int = 1, data_size: int = 0) -> bytes:
    """A 44-byte RIFF/WAVE header written by hand, so any field may hold any value."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate % 2**32, rate * block % 2**32, block, bits)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_size)
        + b"WAVEfmt \x10\x00\x00\x00"
        + fmt
        + b"data"
        + struct.pack("<I", data_size)
    )


def tone(rate: int, seconds: float = 1.0, amp: float = 0.5, freq: float = 440.0) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)


def audio_refused(audio, *words: str, **kwargs) -> str:
    with pytest.raises(InputError) as e:
        load_audio(audio, **kwargs)
    message = str(e.value)
    assert_user_message(message, *AUDIO_FORBIDDEN)
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in {message!r}"
    return message


def test_two_hour_wav_is_refused_from_its_header_without_being_read(tmp_path):
    """A real 1.4 GB two-hour WAV (sparse on disk) is refused in milliseconds: nothing past the header is read."""
    rate, seconds = 48_000, 2 * 3600
    size = rate * 2 * 2 * seconds  # 16-bit stereo
    path = tmp_path / "two-hours.wav"
    with path.open("wb") as f:
        f.write(wav_header(rate, channels=2, data_size=size))
        f.truncate(44 + size)
    assert path.stat().st_size == 44 + size and path.stat().st_blocks * 512 < 10_000_000  # sparse
    start = time.perf_counter()
    message = audio_refused(path, "too long", "7200", f"{MAX_SECONDS:g} s")
    assert time.perf_counter() - start < 0.5
    assert str(tmp_path) not in message


@pytest.mark.parametrize("seconds", [MAX_SECONDS + 0.5, 3600 * 10, 2**31 // 32000])
def test_long_wav_headers_with_little_data_are_refused_quickly(tmp_path, seconds):
    data = (tone(16_000, 0.5) * 32767).astype("<i2").tobytes()
    path = write(tmp_path, "long.wav", wav_header(16_000, data_size=int(seconds * 32_000)) + data)
    start = time.perf_counter()
    audio_refused(path, "too long")
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(
    ("header", "words"),
    [
        (wav_header(0), ["not audio"]),
        (wav_header(-1), ["not audio"]),  # a 'negative' rate: 0xFFFFFFFF
        (wav_header(2_000_000), ["sampling rate", "2000000"]),
        (wav_header(16_000, channels=0), ["damaged"]),
        (wav_header(16_000, bits=0), ["not audio"]),
        (wav_header(16_000, fmt_tag=99), ["not audio"]),  # a codec FFmpeg does not know
        (wav_header(16_000, bits=64), ["damaged"]),  # 64-bit integers: no numpy layout for them in PyAV
    ],
    ids=["rate-0", "rate-negative", "rate-2MHz", "no-channels", "0-bit", "unknown-codec", "s64"],
)
def test_crafted_wav_headers_are_refused(tmp_path, header, words):
    data = (tone(16_000) * 32767).astype("<i2").tobytes()
    riff_size = struct.pack("<I", len(header) - 8 + len(data))
    path = write(tmp_path, "crafted.wav", header[:4] + riff_size + header[8:40] + struct.pack("<I", len(data)) + data)
    audio_refused(path, *words)


@pytest.mark.parametrize("rate", [8_000, 11_025, 44_100, 96_000, 192_000])
def test_odd_and_high_rates_from_files_and_arrays(tmp_path, rate):
    x = tone(rate)
    with wave.open(str(tmp_path / "a.wav"), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(rate)
        f.writeframes((x * 32767).astype("<i2").tobytes())
    for audio in (tmp_path / "a.wav", (rate, x.astype(np.float32)), {"array": x, "sampling_rate": rate}):
        out = load_audio(audio)
        assert out.dtype == np.float32 and out.shape == (SAMPLE_RATE,)
        assert np.abs(out).max() == pytest.approx(0.5, abs=0.02)


def encode(path: Path, x: np.ndarray, rate: int, codec: str, fmt: str | None = None) -> Path:
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        stream.codec_context.options = {"strict": "experimental"}  # FFmpeg's own vorbis encoder
        frame = av.AudioFrame.from_ndarray(x[None].astype(np.float32), format="fltp", layout="mono")
        frame.sample_rate = rate
        converter = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)
        for f in [*converter.resample(frame), *converter.resample(None), None]:
            for packet in stream.encode(f):
                out.mux(packet)
    return path


@pytest.mark.parametrize(
    ("name", "codec", "fmt"),
    [
        ("alaw.wav", "pcm_alaw", None),
        ("mulaw.wav", "pcm_mulaw", None),
        ("a.aiff", "pcm_s16be", None),
        ("alac.m4a", "alac", None),
        ("adts.aac", "aac", "adts"),
        ("opus.webm", "libopus", None),
        ("opus.mka", "libopus", None),
        ("mp3.mp3", "libmp3lame", None),
    ],
)
def test_more_codecs_and_containers(tmp_path, name, codec, fmt):
    rate = 48_000 if "opus" in codec else 44_100
    out = load_audio(encode(tmp_path / name, tone(rate), rate, codec, fmt))
    assert out.dtype == np.float32 and out.ndim == 1 and np.isfinite(out).all()
    assert abs(len(out) - SAMPLE_RATE) < 0.1 * SAMPLE_RATE
    assert np.abs(out[4000:12000]).max() == pytest.approx(0.5, abs=0.06)


def test_one_frame_and_one_millisecond_files_are_too_short(tmp_path):
    one = (np.array([16000], "<i2")).tobytes()
    audio_refused(write(tmp_path, "one.wav", wav_header(16_000, data_size=2) + one), "too short")
    ms = (tone(16_000, 0.001) * 32767).astype("<i2").tobytes()
    audio_refused(write(tmp_path, "ms.wav", wav_header(16_000, data_size=len(ms)) + ms), "too short")


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("list.m3u8", "#EXTM3U\n#EXTINF:1,\nfile://{target}\n#EXT-X-ENDLIST\n"),
        ("list.webm", "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{target}\n#EXT-X-ENDLIST\n"),
        ("list.mp3", "#EXTM3U\n#EXTINF:1,\n{target}\n"),
        ("concat.wav", "ffconcat version 1.0\nfile '{target}'\n"),
        ("list.pls", "[playlist]\nFile1={target}\nNumberOfEntries=1\n"),
        ("stream.sdp", "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 5004 RTP/AVP 0\n"),
        ("master.m3u8", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n{target}\n"),
    ],
)
def test_playlists_and_indirections_are_refused_not_followed(tmp_path, name, text):
    target = tmp_path / "secret.wav"
    x = (tone(16_000) * 32767).astype("<i2").tobytes()
    target.write_bytes(wav_header(16_000, data_size=len(x)) + x)
    path = tmp_path / name
    path.write_text(text.format(target=target))
    message = audio_refused(path, "not audio")
    assert "secret" not in message and str(tmp_path) not in message


@pytest.mark.parametrize(
    "audio",
    [
        (16_000, np.full(16_000, np.nan, np.float32)),
        (16_000, np.array([0.5, -np.inf] * 8000, np.float64)),
        (16_000, np.full((16_000, 6), np.inf, np.float32)),
        (16_000, np.full(16_000, 1e300)),  # finite in float64, infinite in float32
    ],
    ids=["nan", "-inf", "inf-6ch", "overflow"],
)
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_invalid_samples_are_refused(audio):
    audio_refused(audio, "NaN")


def test_six_channel_arrays_and_channels_first_are_averaged():
    x = np.stack([tone(16_000, amp=0.6)] * 3 + [np.zeros(16_000)] * 3, axis=1)  # (n, 6): half the channels silent
    np.testing.assert_allclose(np.abs(load_audio((16_000, x.astype(np.float32)))).max(), 0.3, atol=1e-3)
    np.testing.assert_allclose(np.abs(load_audio((16_000, x.T.astype(np.float32)))).max(), 0.3, atol=1e-3)


def test_full_scale_square_wave_and_dc_offset_are_kept():
    square = np.sign(tone(16_000)).astype(np.float32)
    assert np.abs(load_audio((16_000, square))).max() == pytest.approx(1.0)
    clipped = np.full(16_000, 32767, np.int16)  # a stuck, clipped input: loud, not silent
    assert load_audio((16_000, clipped)).min() > 0.99


# ---------------------------------------------------------------- text


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("ما لون الشكل؟", "ما لون الشكل؟"),  # Arabic, right to left
        ("מה הצורה?", "מה הצורה?"),  # Hebrew
        ("what colour is 🟥 here? 👍🏽", "what colour is 🟥 here? 👍🏽"),
        ("東京の画像は何ですか", "東京の画像は何ですか"),
        ("<script>alert(1)</script> what shape?", "<script>alert(1)</script> what shape?"),
        ('<img src=x onerror="alert(1)"> **bold** [link](javascript:alert(1))', None),
        ("=HYPERLINK(\"http://x\")", None),  # formula text: plain text here (exports escape it)
        ("what\x00shape\x1b[31m?", "what shape [31m?"),
        ("a\u202eb\u2066c", "a b c"),  # bidi overrides and isolates: gone (no Trojan-source reordering)
        ("what\u00a0shape\u3000is\u2028it\u2029?", "what shape is it ?"),
        ("what\x85\x9fshape", "what shape"),  # C1 controls
        ("x\ud800y\udfffz", "x y z"),  # lone surrogates
        ("e\u0301 (combining accent)", "e\u0301 (combining accent)"),
    ],
    ids=["arabic", "hebrew", "emoji", "cjk", "html", "markdown", "formula", "nul-escape", "bidi", "spaces", "c1",
         "surrogates", "combining"],
)  # fmt: skip
def test_questions_of_every_script_and_markup_are_plain_text(question, expected):
    cleaned = clean_question(question)
    assert cleaned == (expected if expected is not None else question)
    cleaned.encode("utf-8")  # no lone surrogate left: safe to store, log and send


@pytest.mark.parametrize("question", ["\ud800", "\x00" * 50, "\u200b\u200e\u200f\ufeff", "\u202e\u202c", " \x7f "])
def test_questions_of_nothing_but_invisible_characters_are_refused(question):
    refused(clean_question, question, "type a question")


@pytest.mark.parametrize("length", [MAX_QUESTION_CHARS * 20 + 1, 100_000, 5_000_000])
def test_very_long_questions_through_the_api_are_refused_quickly(tiny_vqa, example_image, monkeypatch, length):
    """The Textbox's max_length is the browser's only: the server refuses, fast, and no model runs."""
    monkeypatch.setattr(tiny_vqa, "run", lambda *a, **k: pytest.fail("the model was called"))
    question = ("what shape is in the image? " * (length // 28 + 1))[:length]
    start = time.perf_counter()
    message = refused(lambda q: tiny_vqa(str(example_image), q), question, "too long")
    assert time.perf_counter() - start < 0.5
    assert f"{length:,}" in message and str(MAX_QUESTION_CHARS) in message


def test_long_whitespace_around_a_short_question_is_fine():
    assert clean_question(" " * 5_000 + "what shape?" + "\n" * 4_000) == "what shape?"


@pytest.mark.parametrize(
    "question",
    [
        "<script>alert(1)</script>",
        "**what** _shape_?",
        "what shape?\x00\x00",
        "🟥🟦 what shape?",
        "ما الشكل؟",
        QUESTION,
    ],
)
def test_hostile_questions_never_crash_the_pipeline(tiny_vqa, example_image, question):
    """The tiny model knows few words: an answer or a user message naming the unknown words, never a crash."""
    try:
        result = tiny_vqa(str(example_image), question, top_k=1)
    except InputError as e:
        assert_user_message(str(e))
    else:
        assert len(result) == 1 and isinstance(result[0]["answer"], str)
