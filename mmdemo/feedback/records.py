"""Checking one feedback submission before anything is written: pure functions, no database.

`check_record` and `read_media` raise InputError with a message fit to show a user (no server path in it).
"""

import hashlib
import json
import re
import uuid
from pathlib import Path

from mmdemo.errors import InputError

# The most characters each text field may hold; every field a record may carry is named here or in JSON_CAPS.
TEXT_CAPS = {
    "key": 200,  # idempotency key: the same key again updates the row instead of adding one
    "session": 200,
    "task": 100,
    "model": 300,  # catalog name, hub id or checkpoint folder
    "revision": 100,
    "question": 2_000,
    "comment": 5_000,
    "correction": 5_000,  # what the tester says the output should have been
    "tester": 100,
    "media_kind": 10,
    "app_version": 100,
}
JSON_CAPS = {"params": 20_000, "output": 100_000}  # UTF-8 bytes of the JSON text
FIELDS = (*TEXT_CAPS, *JSON_CAPS, "rating")
MEDIA_KINDS = ("image", "audio")
MAX_MEDIA_BYTES = 20 * 1024 * 1024

# (magic bytes, offset, kind, extension, MIME type) of the media formats the demo takes
SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", 0, "image", "png", "image/png"),
    (b"\xff\xd8\xff", 0, "image", "jpg", "image/jpeg"),
    (b"GIF8", 0, "image", "gif", "image/gif"),
    (b"WEBP", 8, "image", "webp", "image/webp"),
    (b"BM", 0, "image", "bmp", "image/bmp"),
    (b"II*\x00", 0, "image", "tif", "image/tiff"),
    (b"MM\x00*", 0, "image", "tif", "image/tiff"),
    (b"WAVE", 8, "audio", "wav", "audio/wav"),
    (b"fLaC", 0, "audio", "flac", "audio/flac"),
    (b"OggS", 0, "audio", "ogg", "audio/ogg"),
    (b"ID3", 0, "audio", "mp3", "audio/mpeg"),
    (b"\xff\xfb", 0, "audio", "mp3", "audio/mpeg"),
    (b"\x1aE\xdf\xa3", 0, "audio", "webm", "audio/webm"),
    (b"ftypM4A", 4, "audio", "m4a", "audio/mp4"),
)
_SAFE_EXT = re.compile(r"[a-z0-9]{1,8}")


def check_record(record: dict) -> dict:
    """A submission -> the column values to store (JSON encoded, a fresh uuid4 key if none); InputError if bad."""
    if not isinstance(record, dict):
        raise InputError(f"Feedback must be a dict of fields, got {type(record).__name__}.")
    unknown = sorted(f"{name!r:.40}" for name in set(record) - set(FIELDS))  # names of any type, cut short
    if unknown:
        raise InputError(f"Unknown feedback field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}.")
    params = record.get("params")
    if params is not None and not isinstance(params, dict):
        raise InputError(f"Feedback params must be a dict, got {type(params).__name__}.")
    values = {name: check_text(name, record.get(name)) for name in TEXT_CAPS}
    values.update({name: check_json(name, record.get(name)) for name in JSON_CAPS})
    values["rating"] = check_rating(record.get("rating"))
    if not (values["task"] or "").strip():
        raise InputError("Feedback needs a task (e.g. 'image-to-text').")
    if values["key"] is None:
        values["key"] = uuid.uuid4().hex
    elif not values["key"].strip():
        raise InputError("The feedback key must not be empty; leave it out to get a fresh one.")
    return values


def check_text(name: str, value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"Feedback {name} must be text, got {type(value).__name__}.")
    cap = TEXT_CAPS[name]
    if len(value) > cap:
        raise InputError(f"The {name} is too long ({len(value):,} characters); the limit is {cap:,}.")
    if "\x00" in value:
        raise InputError(f"The {name} contains a NUL character; remove it and submit again.")
    _check_utf8(name, value)
    return value


def check_json(name: str, value) -> str | None:
    """A JSON-able value -> its compact JSON text (standard JSON: no NaN or Infinity)."""
    if value is None:
        return None
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise InputError(f"Feedback {name} must be plain JSON data (no NaN or objects): {e}.") from None
    except RecursionError:
        raise InputError(f"Feedback {name} is nested too deeply.") from None
    _check_utf8(name, text)
    size = len(text.encode("utf-8"))
    if size > JSON_CAPS[name]:
        raise InputError(f"The {name} is too large ({size:,} bytes as JSON); the limit is {JSON_CAPS[name]:,}.")
    return text


def check_rating(value) -> int | None:
    # bool is an int in Python (True == 1): a checkbox value is not a vote
    if value is None or (type(value) is int and value in (1, -1)):
        return value
    raise InputError(f"A rating must be 1 (👍), -1 (👎) or None, got {value!r:.40}.")


def _check_utf8(name: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"The {name} contains invalid characters (lone surrogates).") from None


def read_media(media, kind: str | None = None) -> dict | None:
    """bytes or a file path -> {sha256, kind, ext, mime, size, data}; kind is sniffed from the bytes when not given."""
    if media is None:
        return None
    suffix = ""
    if isinstance(media, (bytes, bytearray, memoryview)):
        data = bytes(media)
    elif isinstance(media, (str, Path)):
        path = Path(media)
        suffix = path.suffix.lower().lstrip(".")
        try:
            if path.stat().st_size > MAX_MEDIA_BYTES:
                raise InputError(f"The media file is too large; the limit is {MAX_MEDIA_BYTES // 2**20} MB.")
            data = path.read_bytes()
        except OSError:
            raise InputError("The media file could not be read; please submit again.") from None
    else:
        raise InputError(f"Media must be bytes or a file path, got {type(media).__name__}.")
    if not data:
        raise InputError("The media file is empty (0 bytes).")
    if len(data) > MAX_MEDIA_BYTES:
        raise InputError(f"The media file is too large; the limit is {MAX_MEDIA_BYTES // 2**20} MB.")
    sniffed_kind, ext, mime = sniff(data)
    if kind is not None and kind not in MEDIA_KINDS:
        raise InputError(f"media_kind must be one of {', '.join(MEDIA_KINDS)}, got {kind!r:.40}.")
    kind = kind or sniffed_kind
    if kind is None:
        raise InputError("Unrecognised media format; say media_kind ('image' or 'audio').")
    if ext == "bin" and _SAFE_EXT.fullmatch(suffix):
        ext = suffix
    return {"sha256": hashlib.sha256(data).hexdigest(), "kind": kind, "ext": ext, "mime": mime, "size": len(data),
            "data": data}  # fmt: skip


def sniff(data: bytes) -> tuple[str | None, str, str]:
    """(kind, extension, MIME type) from a file's first bytes; (None, "bin", "application/octet-stream") if unknown."""
    for magic, offset, kind, ext, mime in SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return kind, ext, mime
    return None, "bin", "application/octet-stream"
