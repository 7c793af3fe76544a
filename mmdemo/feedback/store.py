"""FeedbackStore: feedback rows and their media in one database, SQLite or PostgreSQL, through SQLAlchemy Core.

Durability: a submission is acknowledged (returned) only after its transaction committed. On SQLite every connection
runs WAL with synchronous=FULL and a busy timeout, and writes take the write lock up front (BEGIN IMMEDIATE), so
writers in other threads and processes wait their turn instead of failing. Media live inside the database, stored once
under their sha256: outside every path the web server serves, and shared by app replicas on PostgreSQL.
"""

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from mmdemo.errors import InputError, StoreError
from mmdemo.feedback.records import check_record, read_media

BUSY_TIMEOUT_MS = 30_000  # how long a SQLite writer waits for another to commit before giving up
SQLITE_PRAGMAS = (  # on every new connection; busy_timeout first, so that switching to WAL waits too
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
)
MIGRATION_LOCK = 0x6D6D64656D6F  # PostgreSQL advisory-lock key ("mmdemo") held while the schema is migrated
UPDATABLE = ("rating", "comment", "correction", "tester", "updated_at")  # what a repeated key changes, if any differ
SPACE_STORAGE = Path("/data")  # where Hugging Face Spaces mount persistent storage


def _feedback_columns() -> list[sa.Column]:
    """The feedback table as schema version 1 created it."""
    return [
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", sa.String(32), nullable=False),  # UTC, ISO 8601: sorts as text
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.Column("session", sa.String(200)),
        sa.Column("task", sa.String(100), nullable=False),
        sa.Column("model", sa.String(300)),
        sa.Column("revision", sa.String(100)),
        sa.Column("params", sa.Text),  # JSON
        sa.Column("question", sa.Text),
        sa.Column("output", sa.Text),  # JSON: the result as the server produced it
        sa.Column("rating", sa.SmallInteger, sa.CheckConstraint("rating IN (1, -1)", name="ck_feedback_rating")),
        sa.Column("comment", sa.Text),
        sa.Column("correction", sa.Text),
        sa.Column("tester", sa.String(100)),
        sa.Column("media_sha256", sa.String(64), sa.ForeignKey("media.sha256")),
        sa.Column("media_kind", sa.String(10)),
    ]


def _media_columns() -> list[sa.Column]:
    return [
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("ext", sa.String(10), nullable=False),
        sa.Column("mime", sa.String(100), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),  # BLOB / bytea
        sa.Column("created_at", sa.String(32), nullable=False),
    ]


# The current schema, which the queries use.
metadata = sa.MetaData()
media_table = sa.Table("media", metadata, *_media_columns())
feedback_table = sa.Table("feedback", metadata, *_feedback_columns(), sa.Column("app_version", sa.String(100)))
task_model_index = sa.Index("ix_feedback_task_model", feedback_table.c.task, feedback_table.c.model)
version_table = sa.Table("schema_version", metadata, sa.Column("version", sa.Integer, nullable=False))


def _v1_tables(conn: sa.Connection) -> None:
    old = sa.MetaData()
    sa.Table("media", old, *_media_columns())
    sa.Table("feedback", old, *_feedback_columns())
    old.create_all(conn)


def _v2_app_version(conn: sa.Connection) -> None:
    conn.execute(sa.text("ALTER TABLE feedback ADD COLUMN app_version VARCHAR(100)"))
    task_model_index.create(conn)


MIGRATIONS = (_v1_tables, _v2_app_version)  # step i takes the schema from version i to i + 1; only ever append
SCHEMA_VERSION = len(MIGRATIONS)


def database_url(url: str | None = None) -> str:
    """A path or URL (None: env MMDEMO_FEEDBACK_DB, else the default file) -> a SQLAlchemy URL; SQLite dirs created."""
    url = url or os.environ.get("MMDEMO_FEEDBACK_DB") or str(default_path())
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if url.startswith("postgresql+psycopg://"):
        return url
    if "://" in url and not url.startswith("sqlite:///"):
        raise ValueError(
            f"unsupported feedback database {url.split('://')[0]!r}: give a path, sqlite:/// or postgresql://"
        )
    path = url.removeprefix("sqlite:///")
    if path in ("", ":memory:") or path.startswith("file:"):
        raise ValueError("the feedback store needs a database file (not in memory): give a path")
    path = Path(path).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def default_path() -> Path:
    """$MMDEMO_DATA_DIR/feedback.db; on a Hugging Face Space (env SPACE_ID) with writable storage mounted at /data,
    /data/mmdemo/feedback.db; else ~/.local/share/mmdemo/feedback.db (or under $XDG_DATA_HOME)."""
    data = os.environ.get("MMDEMO_DATA_DIR")
    if not data and os.environ.get("SPACE_ID") and SPACE_STORAGE.is_dir() and os.access(SPACE_STORAGE, os.W_OK):
        data = SPACE_STORAGE / "mmdemo"  # a Space's own disk is wiped at every restart; /data is kept
    data = data or Path(os.environ.get("XDG_DATA_HOME") or "~/.local/share") / "mmdemo"
    return Path(data).expanduser() / "feedback.db"


def make_engine(url: str, pool_size: int) -> sa.Engine:
    """An engine for a SQLAlchemy URL; SQLite connections set up as the module docstring says."""
    pool = {"pool_size": pool_size, "max_overflow": pool_size, "pool_timeout": BUSY_TIMEOUT_MS / 1000}
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True, **pool)
    engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}, **pool)

    # SQLAlchemy's documented recipe for pysqlite: turn off the driver's own (late, deferred) BEGIN and issue ours
    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        for pragma in SQLITE_PRAGMAS:
            dbapi_connection.execute(pragma).fetchall()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("mmdemo_write") else "BEGIN")

    return engine


def migrate(engine: sa.Engine, target: int = SCHEMA_VERSION) -> int:
    """Apply the missing migration steps up to `target` in one write transaction; returns the version found.

    Several processes may open the store at once: the write lock (SQLite) or an advisory lock (PostgreSQL) makes
    them take turns, and each reads the version only once it holds the lock.
    """
    with engine.execution_options(mmdemo_write=True).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))
        version_table.create(conn, checkfirst=True)
        found = conn.execute(sa.select(version_table.c.version)).scalar()
        if found is None:
            conn.execute(version_table.insert().values(version=0))
            found = 0
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"The feedback database has schema version {found}, newer than this mmdemo knows ({SCHEMA_VERSION}); "
                "upgrade mmdemo."
            )
        for step in MIGRATIONS[found:target]:
            step(conn)
        if target > found:
            conn.execute(version_table.update().values(version=target))
    return found


def open_store(url: str | None = None, *, pool_size: int = 8) -> "FeedbackStore":
    """The store at `url` (a path, sqlite:///..., postgresql://...; None: env MMDEMO_FEEDBACK_DB, else the default
    file), migrated to the current schema. `pool_size`: connections kept per process (size it to the threads)."""
    engine = make_engine(database_url(url), pool_size)
    try:
        migrate(engine)
    except sa.exc.DBAPIError as e:
        engine.dispose()
        where = engine.url.render_as_string(hide_password=True)
        raise StoreError(f"Could not open the feedback database {where}: {str(e.orig).strip().splitlines()[0]}") from e
    return FeedbackStore(engine)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class FeedbackStore:
    """Feedback rows and media in one database; thread-safe (a connection pool), safe across processes."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self._writer = engine.execution_options(mmdemo_write=True)
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    def __enter__(self) -> "FeedbackStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def submit(self, record: dict, media: bytes | str | Path | None = None) -> dict:
        """Store one piece of feedback (and its media) and return the stored row once it is committed.

        `record` holds the fields of records.FIELDS; `key` makes it idempotent: a retry or double click with the same
        key stores nothing new, a changed vote updates rating/comment/correction/tester of the same row. Bad input
        raises InputError and writes nothing; a database failure raises StoreError.
        """
        values = check_record(record)
        blob = read_media(media, values["media_kind"])
        values["media_sha256"] = blob and blob["sha256"]
        values["media_kind"] = blob and blob["kind"]  # it describes `media`: dropped without one
        now = _now()
        try:
            with self._writer.begin() as conn:
                if blob:
                    insert = self._insert(media_table).values(**blob, created_at=now)
                    conn.execute(insert.on_conflict_do_nothing(index_elements=["sha256"]))
                insert = self._insert(feedback_table).values(**values, created_at=now, updated_at=now)
                update = {name: insert.excluded[name] for name in UPDATABLE}
                changed = sa.or_(*(feedback_table.c[n].is_distinct_from(insert.excluded[n]) for n in UPDATABLE[:-1]))
                conn.execute(insert.on_conflict_do_update(index_elements=["key"], set_=update, where=changed))
                row = conn.execute(sa.select(feedback_table).where(feedback_table.c.key == values["key"])).one()
        except sa.exc.DBAPIError as e:
            raise StoreError("Your feedback could not be saved (the database is busy or down); try again.") from e
        return _decode(row._asdict())

    def rows(
        self,
        task: str | None = None,
        model: str | None = None,
        rating: int | None = None,
        has_comment: bool | None = None,
        limit: int | None = None,
        newest_first: bool = True,
    ) -> list[dict]:
        """Stored rows as dicts (params and output decoded from JSON), filtered by whichever arguments are given."""
        t = feedback_table
        query = sa.select(t).order_by(t.c.id.desc() if newest_first else t.c.id).limit(limit)
        for column, value in ((t.c.task, task), (t.c.model, model), (t.c.rating, rating)):
            if value is not None:
                query = query.where(column == value)
        commented = sa.and_(t.c.comment.is_not(None), t.c.comment != "")
        if has_comment is not None:
            query = query.where(commented if has_comment else sa.not_(commented))
        with self.engine.connect() as conn:
            return [_decode(row._asdict()) for row in conn.execute(query)]

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(feedback_table)).scalar_one()

    def summary(self) -> list[dict]:
        """One dict per (task, model): n rows, up and down votes, up_rate = up / (up + down) (None without votes)."""
        t = feedback_table
        up = sa.func.sum(sa.case((t.c.rating == 1, 1), else_=0))
        down = sa.func.sum(sa.case((t.c.rating == -1, 1), else_=0))
        query = sa.select(t.c.task, t.c.model, sa.func.count(), up, down).group_by(t.c.task, t.c.model)
        with self.engine.connect() as conn:
            found = conn.execute(query.order_by(t.c.task, t.c.model)).all()
        return [
            {"task": task, "model": model, "n": n, "up": int(up), "down": int(down),
             "up_rate": int(up) / (up + down) if up + down else None}
            for task, model, n, up, down in found
        ]  # fmt: skip

    def media(self, sha256: str) -> tuple[str, bytes] | None:
        """(kind, bytes) of the media stored under `sha256`, or None."""
        found = self.media_record(sha256)
        return (found["kind"], found["data"]) if found else None

    def media_record(self, sha256: str) -> dict | None:
        """{sha256, kind, ext, mime, size, data, created_at} of the media stored under `sha256`, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(media_table).where(media_table.c.sha256 == sha256)).first()
        return row and {**row._asdict(), "data": bytes(row.data)}

    def integrity_check(self) -> bool:
        """SQLite: PRAGMA integrity_check says ok. PostgreSQL: the tables answer a query."""
        try:
            with self.engine.connect() as conn:
                if conn.dialect.name == "sqlite":
                    return conn.exec_driver_sql("PRAGMA integrity_check").scalars().all() == ["ok"]
                conn.execute(sa.select(sa.func.count()).select_from(feedback_table)).scalar_one()
                conn.execute(sa.select(sa.func.count()).select_from(media_table)).scalar_one()
                return True
        except sa.exc.DBAPIError:
            return False

    def close(self) -> None:
        self.engine.dispose()


def _decode(row: dict) -> dict:
    for name in ("params", "output"):
        if row[name] is not None:
            row[name] = json.loads(row[name])
    return row


__all__ = [
    "SCHEMA_VERSION",
    "FeedbackStore",
    "InputError",
    "StoreError",
    "database_url",
    "make_engine",
    "migrate",
    "open_store",
]
