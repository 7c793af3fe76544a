"""Input checking and decoding shared by every entry point (Python API, CLI, HTTP): pure functions.

Each raises InputError with a message fit to show a user; nothing here imports torch.
"""

import io
import math
import struct
import unicodedata
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mmdemo.errors import InputError

IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")  # what we agree to decode
MAX_IMAGE_PIXELS = 40_000_000  # larger images are refused before they are decoded
# longest side, in pixels, of any image handed to a model: larger ones are shrunk (aspect kept) as they are decoded;
# every model we run works at 224-384 px, so this only saves memory and time
MAX_SIDE = 2048
MAX_QUESTION_CHARS = 500
# text longer than this is refused before it is cleaned (the API takes any length; cleaning costs time per character)
MAX_RAW_QUESTION_CHARS = 20 * MAX_QUESTION_CHARS
BACKGROUND = (255, 255, 255)  # transparent pixels are flattened onto white

Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS  # Pillow warns above this and raises at twice it


def load_image(image) -> Image.Image:
    """A PIL image, a file path, an image file's bytes or an H×W×C / H×W array -> an RGB PIL image, at most MAX_SIDE
    px a side."""
    if isinstance(image, (str, Path)):
        image = _open(Path(image))
    elif isinstance(image, (bytes, bytearray)):
        if not image:
            raise InputError("The image file is empty (0 bytes).")
        image = _decode(io.BytesIO(image))
    elif isinstance(image, np.ndarray):
        image = _from_array(image)
    elif not isinstance(image, Image.Image):
        raise InputError(f"Expected an image (file, PIL image or array), got {type(image).__name__}.")
    _check_size(image)
    return _shrink(_to_rgb(image))


def _check_size(image: Image.Image) -> None:
    if image.width < 1 or image.height < 1:
        raise InputError("The image is empty (zero width or height).")
    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise InputError(
            f"The image is too large ({image.width}×{image.height}); the limit is {MAX_IMAGE_PIXELS:,} pixels."
        )


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise InputError(f"No image file at {path.name!r}.")
    if path.stat().st_size == 0:
        raise InputError("The image file is empty (0 bytes).")
    return _decode(path)


def _decode(source: Path | io.BytesIO) -> Image.Image:
    try:
        with Image.open(source, formats=IMAGE_FORMATS) as im:
            _check_size(im)  # from the header, before any pixel is decoded
            im.seek(0)  # animated images: the first frame
            im.draft(None, _fitted(im.size))  # JPEG decodes at 1/2, 1/4 or 1/8 scale if still >= MAX_SIDE
            im = _upright(im)
            im.load()
            return im.copy()
    except InputError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as e:
        if isinstance(e, Image.DecompressionBombError):
            raise InputError(f"The image is too large; the limit is {MAX_IMAGE_PIXELS:,} pixels.") from None
        raise InputError(
            f"This file is not an image we can read; use {', '.join(IMAGE_FORMATS[:-1])} or {IMAGE_FORMATS[-1]}."
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise InputError(
            "The image file is damaged or truncated; please upload it again or use another image."
        ) from None


def _upright(im: Image.Image) -> Image.Image:
    """Turned as its EXIF orientation says; EXIF that cannot be parsed is ignored (the pixels may be fine)."""
    try:
        return ImageOps.exif_transpose(im) or im
    except (SyntaxError, struct.error, ValueError, TypeError, KeyError, IndexError):
        return im


def _fitted(size: tuple[int, int]) -> tuple[int, int]:
    """The size with the same aspect ratio whose longest side is MAX_SIDE (`size` itself if smaller)."""
    scale = MAX_SIDE / max(size)
    return size if scale >= 1 else (max(1, math.ceil(size[0] * scale)), max(1, math.ceil(size[1] * scale)))


def _shrink(im: Image.Image) -> Image.Image:
    if max(im.size) > MAX_SIDE:
        im = im.copy()
        im.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return im


def _from_array(a: np.ndarray) -> Image.Image:
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise InputError(f"An image array must be H×W, H×W×3 or H×W×4; got shape {a.shape}.")
    if a.size == 0:
        raise InputError("The image is empty (zero width or height).")
    if a.dtype.kind not in "buif":
        raise InputError(f"An image array must hold real numbers (uint8, or float in [0, 1]); got {a.dtype.name}.")
    if a.dtype != np.uint8:
        if not np.isfinite(a).all():
            raise InputError("The image array contains NaN or infinite values.")
        # float in [0, 1] and bool -> 0..255; 16-bit -> its top 8 bits; other numbers are taken as 0..255
        unit = a.dtype.kind == "b" or a.dtype.kind == "f" and a.max(initial=0) <= 1.0
        scale = 255.0 if unit else 1 / 257 if a.dtype == np.uint16 else 1.0
        a = np.clip(a * scale, 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(a))


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode in ("La", "RGBa"):  # premultiplied alpha
        im = im.convert(im.mode.upper())
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        return Image.fromarray(a.astype(np.uint8)).convert("RGB")
    if "A" in im.mode or im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
        flat = Image.new("RGB", im.size, BACKGROUND)
        flat.paste(im, mask=im.getchannel("A"))
        return flat
    try:
        return im.convert("RGB")
    except ValueError:  # a mode Pillow cannot convert
        raise InputError(f"Images in mode {im.mode} are not supported; please use an RGB or grayscale image.") from None


def clean_question(question) -> str:
    """A question as the model should read it: text, non-empty, not too long, no control characters."""
    if not isinstance(question, str):
        raise InputError(f"The question must be text, got {type(question).__name__}.")
    if len(question) > MAX_RAW_QUESTION_CHARS:
        _too_long(len(question))
    text = "".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in question)
    text = " ".join(text.split())
    if not text:
        raise InputError("Please type a question.")
    if len(text) > MAX_QUESTION_CHARS:
        _too_long(len(text))
    return text


def _too_long(length: int):
    raise InputError(f"The question is too long ({length:,} characters); keep it under {MAX_QUESTION_CHARS}.")
