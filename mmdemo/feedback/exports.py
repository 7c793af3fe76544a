"""Export the feedback store to CSV, JSONL, Parquet or a Hugging Face `datasets` folder, media included.

CSV, JSONL and Parquet get the media as files next to the output, `<out stem>_media/<sha256>.<ext>`, named by a
`media_file` column (a path relative to the output's folder); a `datasets` folder holds them in a binary `media`
column. CSV cells are made safe to open in a spreadsheet (see `csv_cell`); `read_csv` reads them back exactly.
"""

import csv
import json
import os
import re
import shutil
from pathlib import Path

from mmdemo.feedback import FORMATS

COLUMNS = (
    "id", "key", "created_at", "updated_at", "session", "task", "model", "revision", "params", "question", "output",
    "rating", "comment", "correction", "tester", "media_sha256", "media_kind", "app_version", "media_file",
)  # fmt: skip
INTEGERS = ("id", "rating")
# A spreadsheet runs a cell starting with = + - @ as a formula (tab, CR and LF hide such a start, a space is trimmed);
# those cells get a leading ' (as does one already starting with ', so that reading back is unambiguous)
CSV_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "\x00", " ", "'")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")  # a plain number is data, not a formula: a -1 rating stays -1


def export(
    store, path: str | Path, format: str, *, task: str | None = None, model: str | None = None, push_to_hub=None
) -> int:
    """Write the rows of `store` (only `task` / `model` if given), oldest first, to `path`; returns how many.

    format: csv, jsonl, parquet, or datasets (`path` is then a folder, written by `Dataset.save_to_disk`);
    push_to_hub: a hub repo id to push the datasets export to as a private dataset (needs the network and a token).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; formats: {', '.join(FORMATS)}")
    if push_to_hub and format != "datasets":
        raise ValueError("pushing to the hub needs the datasets format (--format datasets)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = store.rows(task=task, model=model, newest_first=False)
    if format == "datasets":
        _write_datasets(store, rows, path, push_to_hub)
        return len(rows)
    _write_media(store, rows, path)
    partial = path.with_name(path.name + ".partial")  # a crash never leaves half a file under the real name
    {"csv": _write_csv, "jsonl": _write_jsonl, "parquet": _write_parquet}[format](rows, partial)
    os.replace(partial, path)
    return len(rows)


def _write_media(store, rows: list[dict], path: Path) -> None:
    """Each row's media to <stem>_media/<sha256>.<ext> (once per file), and its relative path in row["media_file"]."""
    folder, written = path.with_name(path.stem + "_media"), {}
    for row in rows:
        sha = row["media_sha256"]
        if sha and sha not in written:
            media = store.media_record(sha)
            target = folder / f"{sha}.{media['ext']}"
            if not (target.exists() and target.stat().st_size == media["size"]):
                folder.mkdir(exist_ok=True)
                partial = target.with_name(target.name + ".partial")
                partial.write_bytes(media["data"])
                os.replace(partial, target)
            written[sha] = f"{folder.name}/{target.name}"
        row["media_file"] = written.get(sha)


def _as_text(row: dict) -> dict:
    """params and output back to their JSON text (CSV, Parquet and datasets columns hold one type each)."""
    return {
        **row,
        **{k: None if row[k] is None else json.dumps(row[k], ensure_ascii=False) for k in ("params", "output")},
    }


def csv_cell(value) -> str:
    """A value as a CSV cell a spreadsheet shows as text: a leading ' where the cell could start a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(CSV_TRIGGERS) and not _NUMBER.fullmatch(text) else text


def _write_csv(rows: list[dict], path: Path) -> None:
    # utf-8-sig: the byte-order mark makes Excel read UTF-8 (emoji, accents) instead of the local code page
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        out = csv.writer(f)
        out.writerow(COLUMNS)
        for row in map(_as_text, rows):
            out.writerow([csv_cell(row[c]) for c in COLUMNS])


def read_csv(path: str | Path) -> list[dict]:
    """A CSV export -> its rows as dicts of strings, each cell exactly as stored (the guarding ' removed)."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        return [{k: v[1:] if v.startswith("'") else v for k, v in row.items()} for row in csv.DictReader(f)]


def _write_jsonl(rows: list[dict], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({c: row[c] for c in COLUMNS}, ensure_ascii=False) + "\n")


def _arrow_schema():
    import pyarrow as pa

    return pa.schema([(c, pa.int64() if c == "id" else pa.int8() if c == "rating" else pa.string()) for c in COLUMNS])


def _write_parquet(rows: list[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([{c: row[c] for c in COLUMNS} for row in map(_as_text, rows)], _arrow_schema())
    pq.write_table(table, path)


def _write_datasets(store, rows: list[dict], path: Path, push_to_hub: str | None) -> None:
    """A `datasets.Dataset` of the rows, media bytes in a `media` column, saved to the folder `path` (and pushed)."""
    if push_to_hub and os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ValueError("cannot push to the hub: HF_HUB_OFFLINE is set (export to a folder, push where online)")
    if path.exists() and any(path.iterdir()) and not (path / "dataset_info.json").exists():
        raise ValueError(f"{path} exists and is not a datasets export; choose an empty or new folder")
    import datasets

    columns = [c for c in COLUMNS if c != "media_file"]
    features = {c: datasets.Value("int64" if c == "id" else "int8" if c == "rating" else "string") for c in columns}
    table = {c: [row[c] for row in rows] for c in columns}
    for name in ("params", "output"):
        table[name] = [row[name] for row in map(_as_text, rows)]
    media = {sha: store.media_record(sha) for sha in set(table["media_sha256"]) - {None}}  # each file read once
    table["media"] = [media[sha]["data"] if sha else None for sha in table["media_sha256"]]
    table["media_ext"] = [media[sha]["ext"] if sha else None for sha in table["media_sha256"]]
    features.update(media=datasets.Value("binary"), media_ext=datasets.Value("string"))
    dataset = datasets.Dataset.from_dict(table, features=datasets.Features(features))
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    dataset.save_to_disk(str(partial), num_shards=1 if not rows else None)  # 0 shards would not load back
    shutil.rmtree(path, ignore_errors=True)
    os.replace(partial, path)
    if push_to_hub:
        try:
            dataset.push_to_hub(push_to_hub, private=True)
        except Exception as e:  # offline, no token, no rights: say where and why, in one line
            raise ValueError(f"saved {path}, but could not push to {push_to_hub}: {str(e).splitlines()[0]}") from None
