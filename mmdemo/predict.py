"""`mmdemo predict`: run a model over files, folders or a CSV of inputs, in batches, to JSONL or CSV.

    mmdemo predict --task image-to-text photos/ --out captions.csv
    mmdemo predict --task visual-question-answering --question "what shape is in the image?" a.png b.png
    mmdemo predict --task visual-question-answering questions.csv      # columns: image, question

One bad input gets an "error" of its own; the others still run.
"""

import csv
import json
import sys
from pathlib import Path

from tqdm import tqdm

from mmdemo.errors import InputError
from mmdemo.pipelines import pipeline

MEDIA = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff"} | {
    ".wav",
    ".flac",
    ".mp3",
    ".ogg",
    ".opus",
    ".webm",
    ".m4a",
}


def expand(inputs: list[str], question: str | None) -> list[dict]:
    """Files as given, folders' media files (sorted, recursive), CSV rows (image/audio/input, question)."""
    rows = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            rows += [
                {"input": str(p), "question": question} for p in sorted(path.rglob("*")) if p.suffix.lower() in MEDIA
            ]
        elif path.suffix.lower() == ".csv":
            with path.open(newline="") as f:
                for row in csv.DictReader(f):
                    media = row.get("image") or row.get("audio") or row.get("input") or ""
                    rows.append({"input": str(path.parent / media), "question": row.get("question") or question})
        else:
            rows.append({"input": item, "question": question})
    return rows


def run(
    task: str,
    model: str | None,
    inputs: list[str],
    question: str | None,
    out: str | None,
    device: str | None = None,
    batch_size: int = 32,
) -> list[dict]:
    p = pipeline(task, model=model, device=device)
    rows = expand(inputs, question)
    call = (
        (lambda batch: p([r["input"] for r in batch], [r["question"] for r in batch]))
        if task == ("visual-question-answering")
        else (lambda batch: p([r["input"] for r in batch]))
    )
    for start in tqdm(range(0, len(rows), batch_size), desc="predict", unit="batch", file=sys.stderr):
        batch = rows[start : start + batch_size]
        try:
            results = call(batch)
        except InputError:  # find the bad ones: one at a time
            results = []
            for row in batch:
                try:
                    results += call([row])
                except InputError as e:
                    results.append({"error": str(e)})
        for row, result in zip(batch, results, strict=True):
            row.update(result if isinstance(result, dict) and "error" in result else {"result": result})
    write(rows, out, task)
    return rows


def write(rows: list[dict], out: str | None, task: str) -> None:
    keep = [{k: v for k, v in r.items() if not (k == "question" and v is None)} for r in rows]
    if out and out.endswith(".csv"):
        with open(out, "w", newline="") as f:
            writer = csv.DictWriter(f, ["input", "question", "result", "error"], extrasaction="ignore")
            writer.writeheader()
            for r in keep:
                writer.writerow({**r, "result": json.dumps(r["result"]) if "result" in r else ""})
        return
    lines = "".join(json.dumps(r) + "\n" for r in keep)
    if out:
        Path(out).write_text(lines)
    else:
        sys.stdout.write(lines)
