"""The durable feedback store: testers' votes, comments and corrections, with the input media, in SQLite or PostgreSQL.

    from mmdemo.feedback import open_store
    store = open_store()  # env MMDEMO_FEEDBACK_DB, else $MMDEMO_DATA_DIR/feedback.db, else /data/mmdemo/feedback.db
                          # on a Hugging Face Space with storage at /data, else ~/.local/share/mmdemo/feedback.db
    row = store.submit({"key": click_id, "task": "image-to-text", "model": "blip", "output": result, "rating": 1},
                       media="photo.png")

This module stays light: SQLAlchemy is imported on the first `open_store`, pyarrow and datasets only by an export.
"""

from pathlib import Path

FORMATS = ("csv", "jsonl", "parquet", "datasets")


def open_store(url: str | None = None, *, pool_size: int = 8):
    """The store at `url` (a path, `sqlite:///...` or `postgresql://...`), its schema brought up to date."""
    from mmdemo.feedback.store import open_store

    return open_store(url, pool_size=pool_size)


def export(store, path: str | Path, format: str, **kwargs) -> int:
    """Write the store's rows (and media) to `path` in `format`; see `mmdemo.feedback.exports.export`."""
    from mmdemo.feedback.exports import export

    return export(store, path, format, **kwargs)


__all__ = ["FORMATS", "export", "open_store"]
