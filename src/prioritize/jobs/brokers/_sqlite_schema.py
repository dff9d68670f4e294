"""The SQLite job store's file: its tables, opening and checking a file, rows, and plain reads.

Why a module of its own: the file outlives the processes that write it,
so what it holds is described in one place, next to `SCHEMA_VERSION`: the
tables, the checks on a file (its schema version, its level set),
`JobRow` and `LevelRow` (rows as Python values, and the statements that
read and write them, built from the same column lists so they cannot
disagree with the tables), and the reads that need no transaction. The
rules that change rows are in ``_sqlite_rules.py``; the broker
(``sqlite.py``) runs both and names no table itself.

Tables (all named ``prioritize_*``, so the file may also hold other data):

* ``prioritize_jobs``: the `Job` fields, plus ``level_rank``, ``tag``,
  ``seq`` (order among equal tags and equal run_at; of burial among dead
  jobs), ``ready_at`` (for ``oldest_wait``) and ``expires_at`` (a finished
  job's end of TTL). Partial indexes hold only the rows a query needs:
  ready jobs by (level_rank, tag, seq), scheduled by run_at, leases by
  lease_until, deadlines, expiries, the dead-letter set, and a unique
  idempotency key. Each step of ``reserve`` is one index seek.
* ``prioritize_levels``: one row per level: its clock, its ``seq``, its
  gauges (queued, scheduled, running, dead) and its counters. The gauges
  move with each change of a job's state, in the same transaction: a
  ``COUNT(*)`` walks every index entry (fine for hundreds of jobs, not for
  a backlog of a million), so `JobGate`'s snapshot costs one small read.
* ``prioritize_flows``: each (level, flow)'s last tag, for `next_tag`.
* ``prioritize_store``: the schema version, the count of burials and the
  gate's stride state, stored even when ``reserve`` hands out nothing,
  since `JobGate.reserve` records a turn either way.
"""

from __future__ import annotations

import operator
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, final

from ...core.levels import LevelSet
from ...core.retry import Jitter, RetryPolicy
from ..model import Job, JobState, StoreError

__all__ = [
    "GAUGES",
    "JOB_INSERT",
    "JOB_SELECT",
    "LEVEL_SELECT",
    "LEVEL_UPDATE",
    "SCHEMA_VERSION",
    "JobRow",
    "LevelRow",
    "check_levels",
    "check_path",
    "chunks",
    "column_values",
    "immediate",
    "open_store",
    "read_dead",
    "read_job",
    "read_next_due",
    "read_unfinished",
    "update_sql",
]

#: the layout of the tables this module writes; a newer file is refused
SCHEMA_VERSION = 2
#: how a file of an older version is brought up to this one, from each version
_MIGRATIONS = {
    1: "ALTER TABLE prioritize_jobs ADD COLUMN retry_chosen INTEGER NOT NULL DEFAULT 1",
}

_SCHEMA = """
CREATE TABLE prioritize_store (
    id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL, buried INTEGER NOT NULL,
    gate TEXT
);
CREATE TABLE prioritize_levels (
    rank INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, clock REAL NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL DEFAULT 0, queued INTEGER NOT NULL DEFAULT 0,
    scheduled INTEGER NOT NULL DEFAULT 0, running INTEGER NOT NULL DEFAULT 0,
    dead INTEGER NOT NULL DEFAULT 0, succeeded INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0, cancelled INTEGER NOT NULL DEFAULT 0,
    shed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE prioritize_flows (
    rank INTEGER NOT NULL, flow TEXT NOT NULL, last REAL NOT NULL, PRIMARY KEY (rank, flow)
) WITHOUT ROWID;
CREATE TABLE prioritize_jobs (
    level_rank INTEGER NOT NULL, tag REAL, seq INTEGER, ready_at REAL, expires_at REAL,
    retries INTEGER NOT NULL, retry_base REAL NOT NULL, retry_factor REAL NOT NULL,
    retry_cap REAL NOT NULL, retry_jitter TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE, task TEXT NOT NULL, payload BLOB NOT NULL, level TEXT NOT NULL,
    flow TEXT NOT NULL, state TEXT NOT NULL, timeout REAL, deadline REAL, run_at REAL,
    enqueued_at REAL NOT NULL, started_at REAL, finished_at REAL, attempts INTEGER NOT NULL,
    worker TEXT, lease_until REAL, result BLOB, error TEXT, traceback TEXT,
    idempotency_key TEXT, result_ttl REAL NOT NULL, reason TEXT,
    retry_chosen INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX prioritize_jobs_ready ON prioritize_jobs (level_rank, tag, seq)
    WHERE state = 'queued';
CREATE INDEX prioritize_jobs_waiting ON prioritize_jobs (level_rank, ready_at)
    WHERE state = 'queued';
CREATE INDEX prioritize_jobs_scheduled ON prioritize_jobs (run_at, seq)
    WHERE state = 'scheduled';
CREATE INDEX prioritize_jobs_leases ON prioritize_jobs (lease_until)
    WHERE state = 'running';
CREATE INDEX prioritize_jobs_deadlines ON prioritize_jobs (deadline)
    WHERE state = 'queued' AND deadline IS NOT NULL;
CREATE INDEX prioritize_jobs_expiries ON prioritize_jobs (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE INDEX prioritize_jobs_dead ON prioritize_jobs (seq) WHERE state = 'dead';
CREATE UNIQUE INDEX prioritize_jobs_keys ON prioritize_jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
"""

# Column order: the broker's own columns, the retry policy, then Job's fields
# other than ``retry``, in declaration order.
_INTERNAL = ("level_rank", "tag", "seq", "ready_at", "expires_at")
_RETRY = ("retries", "retry_base", "retry_factor", "retry_cap", "retry_jitter")
_FIELDS = tuple(name for name in Job.__dataclass_fields__ if name != "retry")
_COLUMNS = _INTERNAL + _RETRY + _FIELDS
JOB_SELECT = f"SELECT rowid, {', '.join(_COLUMNS)} FROM prioritize_jobs"
JOB_INSERT = (
    f"INSERT INTO prioritize_jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
)
column_values = operator.itemgetter(*_COLUMNS)
_field_values = operator.itemgetter(*_FIELDS)
_job_values = operator.attrgetter(*_FIELDS)
_AFTER_RETRY = _FIELDS.index("state") + 1
GAUGES = {
    JobState.QUEUED: "queued",
    JobState.SCHEDULED: "scheduled",
    JobState.RUNNING: "running",
    JobState.DEAD: "dead",
}
_LEVEL_COLUMNS = (
    "clock", "seq", "queued", "scheduled", "running", "dead",
    "succeeded", "failed", "cancelled", "shed",
)  # fmt: skip
LEVEL_SELECT = f"SELECT rank, name, {', '.join(_LEVEL_COLUMNS)} FROM prioritize_levels"
LEVEL_UPDATE = (
    f"UPDATE prioritize_levels SET {', '.join(f'{c} = ?' for c in _LEVEL_COLUMNS)} WHERE rank = ?"
)


@lru_cache(maxsize=256)
def _retry_policy(retries: int, base: float, factor: float, cap: float, jitter: str) -> RetryPolicy:
    """Stored retry columns as a policy (few distinct ones: cached, validated once)."""
    return RetryPolicy(retries, base, factor, cap, jitter)


@lru_cache(maxsize=128)
def update_sql(columns: tuple[str, ...]) -> str:
    return f"UPDATE prioritize_jobs SET {', '.join(f'{c} = ?' for c in columns)} WHERE rowid = ?"


@final
class JobRow:
    """One job row inside a transaction: its columns by name, and a `Job` when asked."""

    __slots__ = ("_job", "cols", "rowid")

    def __init__(self, rowid: int | None, cols: dict[str, Any]) -> None:
        self.rowid = rowid
        self.cols = cols
        self._job: Job | None = None

    @classmethod
    def load(cls, record: Sequence[Any]) -> JobRow:
        cols = dict(zip(_COLUMNS, record[1:], strict=True))
        cols["state"] = JobState(cols["state"])
        cols["retry_chosen"] = bool(cols["retry_chosen"])
        return cls(record[0], cols)

    @classmethod
    def new(cls, job: Job, rank: int) -> JobRow:
        retry = job.retry
        cols: dict[str, Any] = {"level_rank": rank, "tag": None, "seq": None, "ready_at": None}
        cols["expires_at"] = None
        cols.update(retries=retry.retries, retry_base=retry.base, retry_factor=retry.factor)
        cols.update(retry_cap=retry.cap, retry_jitter=Jitter(retry.jitter).value)
        cols.update(zip(_FIELDS, _job_values(job), strict=True))
        return cls(None, cols)

    @property
    def job(self) -> Job:
        if self._job is None:
            cols = self.cols
            retry = _retry_policy(*(cols[name] for name in _RETRY))
            values = _field_values(cols)
            self._job = Job(*values[:_AFTER_RETRY], retry, *values[_AFTER_RETRY:])  # type: ignore[call-arg]
        return self._job

    @property
    def rank(self) -> int:
        return int(self.cols["level_rank"])

    @property
    def state(self) -> JobState:
        return JobState(self.cols["state"])

    def is_expired(self, now: float) -> bool:
        expires_at = self.cols["expires_at"]
        return expires_at is not None and expires_at <= now


@final
class LevelRow:
    """One ``prioritize_levels`` row, written back at commit if it changed."""

    __slots__ = ("loaded", "name", "rank", *_LEVEL_COLUMNS)
    rank: int
    name: str
    #: the tag of the last job reserved; redelivered jobs get it
    clock: float
    #: orders jobs of equal tag, and scheduled jobs of equal run_at
    seq: int
    #: gauges: the level's jobs in that state now
    queued: int
    scheduled: int
    running: int
    dead: int
    #: counters since the store began
    succeeded: int
    failed: int
    cancelled: int
    shed: int

    def __init__(self, record: Sequence[Any]) -> None:
        for name, value in zip(("rank", "name", *_LEVEL_COLUMNS), record, strict=True):
            setattr(self, name, value)
        self.loaded = self.values()

    def values(self) -> tuple[float, ...]:
        return tuple(getattr(self, column) for column in _LEVEL_COLUMNS)


def chunks(values: Sequence[object]) -> Iterable[tuple[str, list[object]]]:
    """``IN (...)`` placeholders and parameters, padded to a power of two with NULLs.

    Padding keeps the distinct statement texts (and so SQLite's statement
    cache) small; NULL matches nothing.
    """
    for start in range(0, len(values), 512):
        chunk = list(values[start : start + 512])
        size = 1
        while size < len(chunk):
            size *= 2
        yield ", ".join("?" * size), chunk + [None] * (size - len(chunk))


def check_path(path: object) -> str:
    """The file ``path`` names, as a str; refuses what is not a file's path."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path = {path!r}: expected a str or os.PathLike naming the SQLite file")
    text = os.fspath(path)
    if not isinstance(text, str):
        raise TypeError(f"path = {path!r}: expected a str or os.PathLike naming the SQLite file")
    if text in {"", ":memory:"}:
        raise ValueError(
            f"path = {text!r}: expected the path of a file; an in-memory SQLite database is "
            "private to one connection (use MemoryBroker for jobs kept in memory)"
        )
    return text


def open_store(path: str) -> sqlite3.Connection:
    """A connection to the store at ``path``, its tables made if missing.

    In autocommit mode (transactions are begun explicitly), WAL with
    ``synchronous = NORMAL`` (see ``sqlite.py`` on durability), and no
    busy timeout of SQLite's own: the broker retries a locked file itself.
    Raises `StoreError` for a file of another schema version.
    """
    conn = sqlite3.connect(
        path, timeout=0, isolation_level=None, check_same_thread=False, cached_statements=256
    )
    try:
        conn.execute("PRAGMA journal_mode = WAL").fetchone()
        conn.execute("PRAGMA synchronous = NORMAL")
        _ensure_schema(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _ensure_schema(conn: sqlite3.Connection, path: str) -> None:
    """Create the tables once; refuse a store of another schema version."""
    exists = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'prioritize_store'"
    if conn.execute(exists).fetchone() is None:
        with immediate(conn):
            if conn.execute(exists).fetchone() is None:  # nobody made it meanwhile
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(
                    "INSERT INTO prioritize_store (id, version, buried) VALUES (1, ?, 0)",
                    (SCHEMA_VERSION,),
                )
    (version,) = conn.execute("SELECT version FROM prioritize_store WHERE id = 1").fetchone()
    if version in _MIGRATIONS:
        version = _migrate(conn)
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"the job store {path} has schema version {version}; this version of "
            f"prioritize reads version {SCHEMA_VERSION} only (use the prioritize that wrote "
            "it, or another file)"
        )


def _migrate(conn: sqlite3.Connection) -> int:
    """Bring an older store up to `SCHEMA_VERSION`, one version a transaction; the version."""
    while True:
        with immediate(conn):
            (version,) = conn.execute(
                "SELECT version FROM prioritize_store WHERE id = 1"
            ).fetchone()
            if version in _MIGRATIONS:  # else another process did it meanwhile
                conn.execute(_MIGRATIONS[version])
                conn.execute("UPDATE prioritize_store SET version = ? WHERE id = 1", (version + 1,))
        if version not in _MIGRATIONS:
            return int(version)


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction, begun with the file's write lock taken: committed, or rolled back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def check_levels(conn: sqlite3.Connection, levels: LevelSet) -> None:
    """Name the levels in a new store; refuse another level set in an old one.

    Run inside a transaction, so two processes cannot both name them.
    """
    query = "SELECT name FROM prioritize_levels ORDER BY rank"
    stored = [name for (name,) in conn.execute(query)]
    if not stored:
        conn.executemany(
            "INSERT INTO prioritize_levels (rank, name) VALUES (?, ?)", enumerate(levels.names)
        )
    elif stored != levels.names:
        raise ValueError(
            f"this job store holds jobs of levels {stored}; it cannot switch to "
            f"{levels.names} (use another file for another level set)"
        )


# -- reads that take no lock ---------------------------------------------------------


def read_job(conn: sqlite3.Connection, job_id: str, clock: Callable[[], float]) -> Job | None:
    """The job ``job_id``, or None if absent or past its TTL (its row waits for upkeep)."""
    found = conn.execute(f"{JOB_SELECT} WHERE id = ?", (job_id,)).fetchone()
    row = None if found is None else JobRow.load(found)
    return None if row is None or row.is_expired(clock()) else row.job


def read_dead(conn: sqlite3.Connection, now: float, limit: int) -> list[Job]:
    """Up to ``limit`` dead jobs within their TTL, in order of burial."""
    query = f"{JOB_SELECT} WHERE state = 'dead' AND expires_at > ? ORDER BY seq LIMIT ?"
    return [JobRow.load(r).job for r in conn.execute(query, (now, limit))]


def read_unfinished(conn: sqlite3.Connection, job_ids: Sequence[str], now: float) -> set[str]:
    """Those of ``job_ids`` stored and not finished (queued, scheduled or running)."""
    running: set[str] = set()
    for placeholders, params in chunks(job_ids):
        query = (
            "SELECT id FROM prioritize_jobs WHERE id IN ({}) AND state IN "
            "('queued', 'scheduled', 'running') AND (expires_at IS NULL OR expires_at > ?)"
        )
        running.update(r[0] for r in conn.execute(query.format(placeholders), (*params, now)))
    return running


def read_next_due(conn: sqlite3.Connection) -> float | None:
    """Epoch seconds when the earliest delayed job or lease comes due, or None."""
    times = [
        conn.execute("SELECT min(run_at) FROM prioritize_jobs WHERE state = 'scheduled'"),
        conn.execute("SELECT min(lease_until) FROM prioritize_jobs WHERE state = 'running'"),
    ]
    due = [t for (t,) in (c.fetchone() for c in times) if t is not None]
    return min(due) if due else None
