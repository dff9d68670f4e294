"""The SQLite broker: durable jobs in one file, shared by the worker processes of one machine.

Theory of operation
-------------------
The rules are the memory broker's (`MemoryBroker` is the reference), moved
from Python containers into tables, and every decision is one SQLite
transaction begun with ``BEGIN IMMEDIATE``: it takes the file's write lock
first, so two processes never decide on the same rows, and a transaction
that fails leaves nothing behind. `_Tx` is that transaction: it reads the
level rows, the flows' last tags and the store row when first needed,
changes job rows (queued updates go out as one ``executemany`` per kind),
and writes back what changed just before ``COMMIT``. ``reserve`` applies
the finished outcomes, does the upkeep (bounded batches of expired leases,
due retries, missed deadlines, expired results), asks `JobGate` for up to
``limit`` levels and takes each level's first jobs in (tag, seq) order,
all in one transaction: a worker's acks and its next jobs cost one commit.
Enqueues waiting at the same time share one transaction too (a group
commit), each caller answered only once it is committed; ``enqueue_many``
stores a batch in one.

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
  since `JobGate.reserve` records a turn either way. A transaction that
  changes nothing writes nothing, so idle workers wake nobody.

A finished job past its TTL reads as absent at once and its row is
deleted by the next upkeep, so reads (``get``, ``wait``, ``dead``) never
take the write lock.

Durability: WAL with ``synchronous = NORMAL``. A transaction is in the WAL
file (the operating system's cache) when ``COMMIT`` returns, so every
enqueue that returned survives the process being killed (SIGKILL, OOM);
a power cut or a kernel crash may lose the last transactions, never
corrupt the file. ``FULL`` would add an fsync per commit, milliseconds on
most disks: the price of surviving power loss too, which we do not pay.

Threads and locks: the ``sqlite3`` calls of a broker run on one thread of
its own (a single-thread executor), on a connection opened lazily on it;
the event loop never blocks on the file. A file locked by another
connection is retried with growing, jittered sleeps for up to
``busy_timeout`` seconds (counted in `SQLiteBroker.lock_waits`), then
`StoreError` is raised. A coroutine cancelled while its transaction runs
does not cancel the transaction: jobs it reserved come back when their
lease runs out.

Waiting: a transaction of this broker that finishes a job wakes the
waiters of that job in this broker at once, and one that may have made
work available wakes its ``wait_for_work`` callers. Changes made through
other connections (other processes, or other brokers of this process)
cannot signal us: while anyone waits, one watcher task per broker reads
``PRAGMA data_version`` every `WATCH_INTERVAL` seconds (a read of the WAL
index in shared memory, no disk access) and, only when it changed,
reads the states of the waited jobs in one query and wakes the finished
ones and every ``wait_for_work``. ``wait_for_work`` also returns when the
earliest delayed job or lease comes due. So a result written by another
process is seen within about `WATCH_INTERVAL`, and no waiter polls by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import operator
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, TypeVar, final

from ...core.jobgate import JobGate, LevelSnapshot
from ...core.levels import LevelSet
from ...core.policy import GatePolicy
from ...core.retry import Jitter, RetryPolicy
from ..broker import Broker, next_tag
from ..model import Job, JobState, JobStats, LevelJobStats, Outcome, OutcomeKind, StoreError

__all__ = ["SCHEMA_VERSION", "WATCH_INTERVAL", "SQLiteBroker", "StoreError"]

#: the layout of the tables this module writes; a newer file is refused
SCHEMA_VERSION = 1
#: seconds between two looks at ``PRAGMA data_version`` while someone waits
WATCH_INTERVAL = 0.025
#: seconds a dead job stays in the dead-letter set unless requeued
DEFAULT_DEAD_TTL = 7 * 86_400.0
#: rows of each kind (leases, due jobs, deadlines, expiries) one upkeep handles
UPKEEP_BATCH = 500

_T = TypeVar("_T")
_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


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
    idempotency_key TEXT, result_ttl REAL NOT NULL, reason TEXT
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
_SELECT = f"SELECT rowid, {', '.join(_COLUMNS)} FROM prioritize_jobs"
_INSERT = (
    f"INSERT INTO prioritize_jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
)
_column_values = operator.itemgetter(*_COLUMNS)
_field_values = operator.itemgetter(*_FIELDS)
_job_values = operator.attrgetter(*_FIELDS)
_AFTER_RETRY = _FIELDS.index("state") + 1
_GAUGES = {
    JobState.QUEUED: "queued",
    JobState.SCHEDULED: "scheduled",
    JobState.RUNNING: "running",
    JobState.DEAD: "dead",
}
_LEVEL_COLUMNS = (
    "clock", "seq", "queued", "scheduled", "running", "dead",
    "succeeded", "failed", "cancelled", "shed",
)  # fmt: skip
_LEVEL_SELECT = f"SELECT rank, name, {', '.join(_LEVEL_COLUMNS)} FROM prioritize_levels"
_LEVEL_UPDATE = (
    f"UPDATE prioritize_levels SET {', '.join(f'{c} = ?' for c in _LEVEL_COLUMNS)} WHERE rank = ?"
)


@lru_cache(maxsize=256)
def _retry_policy(retries: int, base: float, factor: float, cap: float, jitter: str) -> RetryPolicy:
    """Stored retry columns as a policy (few distinct ones: cached, validated once)."""
    return RetryPolicy(retries, base, factor, cap, jitter)


@lru_cache(maxsize=128)
def _update_sql(columns: tuple[str, ...]) -> str:
    return f"UPDATE prioritize_jobs SET {', '.join(f'{c} = ?' for c in columns)} WHERE rowid = ?"


@final
class _Row:
    """One job row inside a transaction: its columns by name, and a `Job` when asked."""

    __slots__ = ("_job", "cols", "rowid")

    def __init__(self, rowid: int | None, cols: dict[str, Any]) -> None:
        self.rowid = rowid
        self.cols = cols
        self._job: Job | None = None

    @classmethod
    def load(cls, record: Sequence[Any]) -> _Row:
        cols = dict(zip(_COLUMNS, record[1:], strict=True))
        cols["state"] = JobState(cols["state"])
        return cls(record[0], cols)

    @classmethod
    def new(cls, job: Job, rank: int) -> _Row:
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
class _Level:
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


def _chunks(values: Sequence[object]) -> Iterable[tuple[str, list[object]]]:
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


@final
class _Tx:
    """One ``BEGIN IMMEDIATE`` transaction: the memory broker's rules, on rows.

    Each rule mirrors the `MemoryBroker` method of the same name. Job rows
    change through `change`, which moves the level's gauges when a state
    changes and queues the ``UPDATE``: queued updates run (one
    ``executemany`` per statement) before the next read of the jobs table
    and at `flush`. The level rows, the flows and the store row are read
    at most once, when first needed, and written back at `flush` if changed.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        now: float,
        dead_ttl: float,
        levels: LevelSet | None,
        *,
        checked: bool,
    ) -> None:
        self.conn = conn
        self.now = now
        self.dead_ttl = dead_ttl
        self._levels: dict[int, _Level] = {}
        self._flows: dict[tuple[int, str], float | None] = {}
        self._dirty_flows: set[tuple[int, str]] = set()
        self._pending: dict[str, list[tuple[object, ...]]] = {}
        self._pending_rows: set[int] = set()
        #: the store row as read (burials, gate state), once needed
        self._store: tuple[int, str | None] | None = None
        self.buried = 0
        self.gate_text: str | None = None
        #: ids of jobs this transaction finished, and whether work may have appeared
        self.finished: list[str] = []
        self.has_work = False
        if levels is not None and not checked:
            self._check_levels(levels)

    def _check_levels(self, levels: LevelSet) -> None:
        """Name the levels in a new store; refuse another level set in an old one."""
        query = "SELECT name FROM prioritize_levels ORDER BY rank"
        stored = [name for (name,) in self.conn.execute(query)]
        if not stored:
            self.conn.executemany(
                "INSERT INTO prioritize_levels (rank, name) VALUES (?, ?)", enumerate(levels.names)
            )
        elif stored != levels.names:
            raise ValueError(
                f"this job store holds jobs of levels {stored}; it cannot switch to "
                f"{levels.names} (use another file for another level set)"
            )

    # -- reading and writing -------------------------------------------------------

    def execute(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        """Run a statement on the jobs table, after the updates queued before it."""
        self._write_pending()
        return self.conn.execute(sql, params)

    def _write_pending(self) -> None:
        for statement, rows in self._pending.items():
            self.conn.executemany(statement, rows)
        self._pending.clear()
        self._pending_rows.clear()

    def select(self, where: str, *params: object) -> list[_Row]:
        return [_Row.load(r) for r in self.execute(f"{_SELECT} {where}", params)]

    def rows(self, job_ids: Sequence[str]) -> dict[str, _Row]:
        found: dict[str, _Row] = {}
        for placeholders, params in _chunks(job_ids):
            for row in self.select(f"WHERE id IN ({placeholders})", *params):
                found[row.cols["id"]] = row
        return found

    def insert(self, row: _Row) -> None:
        row.rowid = self.execute(_INSERT, _column_values(row.cols)).lastrowid
        self._gauge(row.rank, row.state, 1)

    def delete(self, row: _Row) -> None:
        self.execute("DELETE FROM prioritize_jobs WHERE rowid = ?", (row.rowid,))
        self._gauge(row.rank, row.state, -1)

    def change(self, row: _Row, **changes: Any) -> None:
        """Change a row's columns (in the file too, once it is inserted)."""
        cols = row.cols
        if row.rowid is not None:
            state = changes.get("state")
            if state is not None and state is not cols["state"]:
                self._gauge(row.rank, cols["state"], -1)
                self._gauge(row.rank, state, 1)
            if row.rowid in self._pending_rows:
                self._write_pending()  # one queued update per row: run the earlier first
            self._pending_rows.add(row.rowid)
            statement = _update_sql(tuple(changes))
            self._pending.setdefault(statement, []).append((*changes.values(), row.rowid))
        cols.update(changes)
        row._job = None

    def _gauge(self, rank: int, state: JobState, delta: int) -> None:
        column = _GAUGES.get(state)
        if column is not None:
            level = self.level(rank)
            setattr(level, column, getattr(level, column) + delta)

    def level(self, rank: int) -> _Level:
        """A level's row, read once per transaction."""
        level = self._levels.get(rank)
        if level is None:
            record = self.conn.execute(f"{_LEVEL_SELECT} WHERE rank = ?", (rank,)).fetchone()
            level = self._levels[rank] = _Level(record)
        return level

    def all_levels(self) -> list[_Level]:
        """Every level's row, most important first."""
        for record in self.conn.execute(f"{_LEVEL_SELECT} ORDER BY rank"):
            if record[0] not in self._levels:
                self._levels[record[0]] = _Level(record)
        return [self._levels[rank] for rank in sorted(self._levels)]

    def next_seq(self, rank: int) -> int:
        level = self.level(rank)
        level.seq += 1
        return level.seq

    def _load_store(self) -> None:
        if self._store is None:
            query = "SELECT buried, gate FROM prioritize_store WHERE id = 1"
            self.buried, self.gate_text = self._store = self.conn.execute(query).fetchone()

    def gate(self, gate: JobGate) -> tuple[JobGate, tuple[float, ...]]:
        """A copy of ``gate`` holding the stored stride state, and that state."""
        self._load_store()
        fresh = gate.state()
        stored = fresh if self.gate_text is None else tuple(json.loads(self.gate_text))
        stored = stored if len(stored) == len(fresh) else fresh
        return gate.with_state(stored), stored

    def flow_last(self, key: tuple[int, str]) -> float | None:
        if key not in self._flows:
            found = self.conn.execute(
                "SELECT last FROM prioritize_flows WHERE rank = ? AND flow = ?", key
            ).fetchone()
            self._flows[key] = None if found is None else found[0]
        return self._flows[key]

    def set_flow(self, key: tuple[int, str], last: float | None) -> None:
        self._flows[key] = last
        self._dirty_flows.add(key)

    def flush(self) -> None:
        self._write_pending()
        for key in self._dirty_flows:
            last = self._flows[key]
            if last is None:
                self.conn.execute("DELETE FROM prioritize_flows WHERE rank = ? AND flow = ?", key)
            else:
                self.conn.execute(
                    "INSERT OR REPLACE INTO prioritize_flows VALUES (?, ?, ?)", (*key, last)
                )
        for level in self._levels.values():
            values = level.values()
            if values != level.loaded:
                self.conn.execute(_LEVEL_UPDATE, (*values, level.rank))
        if self._store is not None and (self.buried, self.gate_text) != self._store:
            self.conn.execute(
                "UPDATE prioritize_store SET buried = ?, gate = ? WHERE id = 1",
                (self.buried, self.gate_text),
            )

    # -- the rules -----------------------------------------------------------------

    def enqueue(self, job: Job, rank: int) -> Job:
        if job.idempotency_key is not None:
            holders = self.select("WHERE idempotency_key = ?", job.idempotency_key)
            if holders and not holders[0].is_expired(self.now):
                return holders[0].job
            if holders:
                self.delete(holders[0])  # past its TTL: gone, and so is its key
        if self.execute("SELECT 1 FROM prioritize_jobs WHERE id = ?", (job.id,)).fetchone():
            raise ValueError(f"a job with id {job.id!r} is already stored")  # before any change
        row = _Row.new(job, rank)
        fresh = {"enqueued_at": self.now, "attempts": 0, "worker": None, "lease_until": None}
        if job.run_at is not None and job.run_at > self.now:
            self.change(row, state=JobState.SCHEDULED, seq=self.next_seq(rank), **fresh)
        else:
            self.make_ready(row, run_at=None, **fresh)
        self.insert(row)
        self.has_work = True
        return row.job

    def make_ready(self, row: _Row, tag: float | None = None, **changes: Any) -> None:
        """QUEUED at the back of its flow (a new tag), or at ``tag`` (redelivery)."""
        rank = row.rank
        if tag is None:
            key = (rank, row.cols["flow"])
            tag = next_tag(self.flow_last(key), self.level(rank).clock)
            self.set_flow(key, tag)
        seq = self.next_seq(rank)
        self.change(row, state=JobState.QUEUED, tag=tag, seq=seq, ready_at=self.now, **changes)

    def reserve(
        self, gate: JobGate, allowed: Sequence[bool], worker: str, limit: int, lease: float
    ) -> list[Job]:
        turns, stored = self.gate(gate)
        levels = self.all_levels()
        snapshot = [
            LevelSnapshot(lvl.queued if allowed[lvl.rank] else 0, lvl.running) for lvl in levels
        ]
        ranks: list[int] = []
        for _ in range(limit):
            rank = turns.reserve(snapshot)
            if rank is None:
                break
            was = snapshot[rank]
            snapshot[rank] = LevelSnapshot(was.queued - 1, was.running + 1)
            ranks.append(rank)
        if turns.state() != stored:  # recorded even when nothing was handed out
            self.gate_text = json.dumps(list(turns.state()))
        taken = {rank: self.take(rank, ranks.count(rank), worker, lease) for rank in set(ranks)}
        return [taken[rank].pop().job for rank in ranks if taken[rank]]

    def take(self, rank: int, count: int, worker: str, lease: float) -> list[_Row]:
        """The level's ``count`` first ready jobs, now RUNNING (last first, for pop)."""
        rows = self.select(
            "WHERE state = 'queued' AND level_rank = ? ORDER BY tag, seq LIMIT ?", rank, count
        )
        level = self.level(rank)
        for row in rows:
            level.clock = max(level.clock, row.cols["tag"])
            self.change(
                row, state=JobState.RUNNING, attempts=row.cols["attempts"] + 1, worker=worker,
                lease_until=self.now + lease, started_at=self.now, ready_at=None,
            )  # fmt: skip
        # a flow whose last tag is behind the clock is the same as no flow: forget it
        unread: list[object] = []
        for flow in {row.cols["flow"] for row in rows}:
            if (rank, flow) not in self._flows:
                unread.append(flow)
                continue
            last = self._flows[rank, flow]
            if last is not None and last <= level.clock:
                self.set_flow((rank, flow), None)
        for placeholders, params in _chunks(unread):  # not changed here: the file has them
            self.conn.execute(
                "DELETE FROM prioritize_flows WHERE rank = ? AND last <= ? "
                f"AND flow IN ({placeholders})",
                (rank, level.clock, *params),
            )
        rows.reverse()
        return rows

    def apply(self, worker: str, outcomes: Sequence[Outcome]) -> list[bool]:
        rows = self.rows([outcome.job_id for outcome in outcomes]) if outcomes else {}
        applied: list[bool] = []
        for outcome in outcomes:
            row = rows.get(outcome.job_id)
            if (
                row is None
                or row.cols["state"] is not JobState.RUNNING
                or row.cols["worker"] != worker
                or row.cols["attempts"] != outcome.attempt
            ):
                applied.append(False)
                continue
            level = self.level(row.rank)
            if outcome.kind is OutcomeKind.SUCCEEDED:
                level.succeeded += 1
                self.end(row, JobState.SUCCEEDED, result=outcome.result, lease_until=None)
            elif outcome.kind is OutcomeKind.FAILED:
                level.failed += 1
                self.retry_or_bury(
                    row, outcome.retry_at, error=outcome.error, traceback=outcome.traceback,
                    lease_until=None,
                )  # fmt: skip
            else:
                attempts = row.cols["attempts"] - 1
                self.make_ready(row, tag=level.clock, attempts=attempts, lease_until=None)
            applied.append(True)
        if any(applied):
            self.has_work = True
        return applied

    def retry_or_bury(self, row: _Row, retry_at: float | None, **changes: Any) -> None:
        if retry_at is None:
            self._load_store()
            self.buried += 1  # the dead-letter set is in order of burial
            self.end(row, JobState.DEAD, seq=self.buried, **changes)
        elif retry_at > self.now:
            seq = self.next_seq(row.rank)
            self.change(row, state=JobState.SCHEDULED, run_at=retry_at, seq=seq, **changes)
        else:
            self.make_ready(row, run_at=None, **changes)

    def end(self, row: _Row, state: JobState, **changes: Any) -> None:
        ttl = self.dead_ttl if state is JobState.DEAD else row.cols["result_ttl"]
        self.change(row, state=state, finished_at=self.now, expires_at=self.now + ttl, **changes)
        self.finished.append(row.cols["id"])

    def upkeep(self) -> None:
        """Reap expired leases, promote due jobs, shed missed deadlines, drop expired results."""
        now, batch = self.now, UPKEEP_BATCH
        where = "WHERE state = 'running' AND lease_until <= ? ORDER BY lease_until, id LIMIT ?"
        for row in self.select(where, now, batch):
            level = self.level(row.rank)
            level.failed += 1
            lost = {
                "error": f"LeaseExpired: worker {row.cols['worker']} stopped renewing its lease",
                "traceback": None,
                "lease_until": None,
            }
            if row.cols["attempts"] >= row.cols["retries"] + 1:  # its max_attempts
                self.retry_or_bury(row, None, **lost)
            else:
                self.make_ready(row, tag=level.clock, **lost)
                self.has_work = True
        where = "WHERE state = 'scheduled' AND run_at <= ? ORDER BY run_at, seq LIMIT ?"
        for row in self.select(where, now, batch):
            self.make_ready(row, run_at=None)
            self.has_work = True
        where = "WHERE state = 'queued' AND deadline <= ? ORDER BY deadline, id LIMIT ?"
        for row in self.select(where, now, batch):
            self.level(row.rank).shed += 1
            self.end(row, JobState.SHED, reason="timeout", ready_at=None)
        expired = self.execute(
            "SELECT rowid, level_rank, state FROM prioritize_jobs "
            "WHERE expires_at <= ? ORDER BY expires_at LIMIT ?",
            (now, batch),
        ).fetchall()
        for placeholders, params in _chunks([rowid for rowid, _, _ in expired]):
            self.execute(f"DELETE FROM prioritize_jobs WHERE rowid IN ({placeholders})", params)
        for _, rank, state in expired:
            self._gauge(rank, JobState(state), -1)

    def cancel(self, job_id: str) -> Job | None:
        found = self.select("WHERE id = ?", job_id)
        if not found or found[0].is_expired(self.now):
            return None
        row = found[0]
        if row.state not in (JobState.QUEUED, JobState.SCHEDULED):
            return row.job
        self.level(row.rank).cancelled += 1
        self.end(row, JobState.CANCELLED, reason="cancelled", ready_at=None)
        return row.job

    def heartbeat(self, worker: str, job_ids: Sequence[str], lease: float) -> set[str]:
        lost: set[str] = set()
        for job_id in job_ids:
            cursor = self.execute(
                "UPDATE prioritize_jobs SET lease_until = ? WHERE id = ? AND state = 'running' "
                "AND worker = ? AND lease_until > ?",
                (self.now + lease, job_id, worker, self.now),
            )
            if cursor.rowcount == 0:
                lost.add(job_id)  # not held, or expired: the reaper's even if not reaped yet
        return lost

    def requeue_dead(self, job_ids: Sequence[str] | None) -> int:
        if job_ids is None:
            chosen = self.select("WHERE state = 'dead' ORDER BY seq")
        else:
            wanted = list(dict.fromkeys(job_ids))
            found = self.rows(wanted)
            chosen = [found[job_id] for job_id in wanted if job_id in found]
        chosen = [r for r in chosen if r.state is JobState.DEAD and not r.is_expired(self.now)]
        for row in chosen:
            self.make_ready(
                row, attempts=0, finished_at=None, run_at=None, worker=None, expires_at=None
            )
        self.has_work = self.has_work or bool(chosen)
        return len(chosen)

    def stats(self) -> JobStats:
        self.upkeep()
        out: dict[str, LevelJobStats] = {}
        query = (
            "SELECT min(ready_at) FROM prioritize_jobs WHERE state = 'queued' AND level_rank = ?"
        )
        for lvl in self.all_levels():
            (first,) = self.execute(query, (lvl.rank,)).fetchone()
            oldest = self.now if first is None else min(self.now, first)
            out[lvl.name] = LevelJobStats(
                queued=lvl.queued, scheduled=lvl.scheduled, running=lvl.running,
                succeeded=lvl.succeeded, failed=lvl.failed, dead=lvl.dead,
                cancelled=lvl.cancelled, shed=lvl.shed, oldest_wait=self.now - oldest,
            )  # fmt: skip
        return JobStats(out)


@final
class SQLiteBroker(Broker):
    """Jobs in one SQLite file; see the module docstring for how, and `Broker` for the rules.

    ``path`` names the file (created with its directory's permissions if
    missing; the directory must exist). ``clock`` gives epoch seconds.
    ``dead_ttl`` is how long a dead job stays in the dead-letter set;
    ``busy_timeout`` how long an operation waits for a file locked by
    another connection before raising `StoreError`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        dead_ttl: float = DEFAULT_DEAD_TTL,
        busy_timeout: float = 30.0,
    ) -> None:
        self._path = _check_path(path)
        _check_seconds("dead_ttl", dead_ttl, least=0.0, inclusive=False)
        _check_seconds("busy_timeout", busy_timeout, least=0.0, inclusive=True)
        self._clock = clock
        self._dead_ttl = float(dead_ttl)
        self._busy_timeout = float(busy_timeout)
        self._policy: GatePolicy | None = None
        self._gate: JobGate | None = None
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._waiters: dict[str, list[_Waiter]] = {}
        self._work_waiters: list[_Waiter] = []
        #: enqueues waiting for the next transaction: job, rank, and whom to answer
        self._enqueues: list[tuple[Job, int, asyncio.AbstractEventLoop, asyncio.Future[Job]]] = []
        self._watcher: asyncio.Task[None] | None = None
        self._watching = False
        #: ``PRAGMA data_version`` when the watcher last read the waited jobs
        self._version: int | None = None
        #: the level set found in the file by this connection
        self._checked: LevelSet | None = None
        self._lock_waits = 0

    @property
    def path(self) -> str:
        """The SQLite file."""
        return self._path

    @property
    def lock_waits(self) -> int:
        """Times this broker found the file locked by another connection, and waited."""
        return self._lock_waits

    # -- setup ---------------------------------------------------------------------

    def configure(self, gate: GatePolicy) -> None:
        if self._policy is not None and self._policy.level_set != gate.level_set:
            raise ValueError(
                f"this broker already holds jobs of levels {self._policy.level_set.names}; "
                f"it cannot switch to {gate.level_set.names}"
            )
        self._policy = gate
        self._gate = JobGate(gate)

    def copy(self) -> SQLiteBroker:
        other = SQLiteBroker(
            self._path, clock=self._clock, dead_ttl=self._dead_ttl, busy_timeout=self._busy_timeout
        )
        if self._policy is not None:
            other.configure(self._policy)
        return other

    def _configured(self) -> tuple[JobGate, LevelSet]:
        if self._gate is None or self._policy is None:
            raise RuntimeError(
                "SQLiteBroker is not configured: create a JobQueue over it, "
                "or call broker.configure(gate_policy)"
            )
        return self._gate, self._policy.level_set

    # -- enqueue, reserve, finish --------------------------------------------------

    async def enqueue(self, job: Job) -> Job:
        """Store ``job``; enqueues waiting together share one transaction (a group commit)."""
        _, levels = self._configured()
        rank = levels.resolve(job.level).rank
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Job] = loop.create_future()
        with self._lock:
            self._enqueues.append((job, rank, loop, future))
            first = len(self._enqueues) == 1
        if first:  # else the drain on its way takes this job too; call_soon lets the
            # enqueues of tasks ready in this turn of the loop join before it starts
            loop.call_soon(self._pool().submit, self._drain_enqueues)
        return await future

    async def enqueue_many(self, jobs: Sequence[Job]) -> list[Job]:
        """`enqueue` each job, all in one transaction: stored all, or (on an error) none."""
        _, levels = self._configured()
        ranks = [levels.resolve(job.level).rank for job in jobs]
        return await self._write(
            lambda tx: [tx.enqueue(job, rank) for job, rank in zip(jobs, ranks, strict=True)]
        )

    async def reserve(
        self,
        worker: str,
        limit: int,
        *,
        lease: float,
        levels: Collection[str] | None = None,
        finished: Sequence[Outcome] = (),
    ) -> list[Job]:
        gate, level_set = self._configured()
        allowed = _allowed(level_set, levels)

        def work(tx: _Tx) -> list[Job]:
            tx.apply(worker, finished)
            tx.upkeep()
            return tx.reserve(gate, allowed, worker, limit, lease)

        return await self._write(work)

    async def finish(self, worker: str, outcomes: Sequence[Outcome]) -> list[bool]:
        self._configured()
        return await self._write(lambda tx: tx.apply(worker, outcomes))

    async def heartbeat(self, worker: str, job_ids: Sequence[str], lease: float) -> set[str]:
        return await self._write(lambda tx: tx.heartbeat(worker, job_ids, lease))

    # -- reading and waiting -------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        def read(conn: sqlite3.Connection) -> Job | None:
            found = conn.execute(f"{_SELECT} WHERE id = ?", (job_id,)).fetchone()
            row = None if found is None else _Row.load(found)
            return None if row is None or row.is_expired(self._clock()) else row.job

        return await self._call(read)

    async def wait(self, job_id: str, timeout: float) -> Job | None:
        loop = asyncio.get_running_loop()
        waiter: _Waiter = (loop, loop.create_future())
        with self._lock:  # before reading: a change from now on wakes us
            self._waiters.setdefault(job_id, []).append(waiter)
        try:
            job = await self.get(job_id)
            if job is None or job.is_finished:
                return job
            self._watch_soon()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter[1], timeout)
        finally:
            with self._lock:
                waiting = self._waiters.get(job_id)
                if waiting is not None and waiter in waiting:
                    waiting.remove(waiter)
                    if not waiting:
                        del self._waiters[job_id]
        return await self.get(job_id)

    async def wait_for_work(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        waiter: _Waiter = (loop, loop.create_future())
        with self._lock:
            self._work_waiters.append(waiter)
        try:
            due = await self._call(self._next_due)
            if due is not None:
                timeout = min(timeout, max(0.0, due))
            self._watch_soon()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter[1], timeout)
        finally:
            with self._lock:
                if waiter in self._work_waiters:
                    self._work_waiters.remove(waiter)

    # -- managing ------------------------------------------------------------------

    async def cancel(self, job_id: str) -> Job | None:
        self._configured()
        return await self._write(lambda tx: tx.cancel(job_id))

    async def dead(self, limit: int = 100) -> list[Job]:
        def read(conn: sqlite3.Connection) -> list[Job]:
            query = f"{_SELECT} WHERE state = 'dead' AND expires_at > ? ORDER BY seq LIMIT ?"
            return [_Row.load(r).job for r in conn.execute(query, (self._clock(), limit))]

        return await self._call(read)

    async def requeue_dead(self, job_ids: Sequence[str] | None = None) -> int:
        self._configured()
        return await self._write(lambda tx: tx.requeue_dead(job_ids))

    async def stats(self) -> JobStats:
        self._configured()
        return await self._write(lambda tx: tx.stats())

    async def close(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None and not watcher.done():
            if watcher.get_loop() is asyncio.get_running_loop():
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            else:
                with contextlib.suppress(RuntimeError):  # that loop is closed already
                    watcher.get_loop().call_soon_threadsafe(watcher.cancel)
        with self._lock:
            self._watching = False
            executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(executor, self._disconnect)
            executor.shutdown(wait=False)

    # -- the thread ----------------------------------------------------------------

    async def _write(self, work: Callable[[_Tx], _T]) -> _T:
        levels = None if self._policy is None else self._policy.level_set
        return await self._call(lambda conn: self._transact(conn, levels, work))

    async def _call(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._pool(), self._run, work)

    def _pool(self) -> ThreadPoolExecutor:
        """The broker's one thread (started again after `close`)."""
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="prioritize-sqlite")
            return self._executor

    def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """``work`` on the connection (opened if need be), retried while the file is locked."""
        deadline: float | None = None
        pause = 0.001
        while True:
            try:
                return work(self._conn if self._conn is not None else self._connect())
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise self._error(exc) from exc
            except sqlite3.DatabaseError as exc:
                if type(exc) is not sqlite3.DatabaseError:  # integrity, programming: a bug here
                    raise
                raise self._error(exc) from exc
            now = time.monotonic()
            deadline = now + self._busy_timeout if deadline is None else deadline
            if now >= deadline:
                raise StoreError(
                    f"the job store {self._path} stayed locked by another connection for more "
                    f"than busy_timeout = {self._busy_timeout} s; raise busy_timeout, or look "
                    "for a process holding a long transaction on the file"
                )
            self._lock_waits += 1
            time.sleep(min(deadline - now, pause * random.uniform(0.5, 1.5)))
            pause = min(pause * 2, 0.05)

    def _drain_enqueues(self) -> None:
        """On the thread: store every enqueue waiting now, in one transaction.

        Each caller gets its own job, or its own error for a duplicate id;
        an error of the store fails them all (nothing was stored).
        """
        with self._lock:
            batch, self._enqueues = self._enqueues, []
        levels = None if self._policy is None else self._policy.level_set

        def work(tx: _Tx) -> list[Job | ValueError]:
            out: list[Job | ValueError] = []
            for job, rank, _, _ in batch:
                try:
                    out.append(tx.enqueue(job, rank))
                except ValueError as exc:
                    out.append(exc)
            return out

        try:
            results: Sequence[Job | Exception] = self._run(
                lambda conn: self._transact(conn, levels, work)
            )
        except Exception as exc:  # handed to every caller
            results = [exc] * len(batch)
        for (_, _, loop, future), result in zip(batch, results, strict=True):
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, future, result)

    def _transact(
        self, conn: sqlite3.Connection, levels: LevelSet | None, work: Callable[[_Tx], _T]
    ) -> _T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            checked = levels is None or levels == self._checked
            tx = _Tx(conn, self._clock(), self._dead_ttl, levels, checked=checked)
            result = work(tx)
            tx.flush()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if levels is not None:
            self._checked = levels
        self._wake(tx.finished, work=tx.has_work)
        return result

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path, timeout=0, isolation_level=None, check_same_thread=False,
            cached_statements=256,
        )  # fmt: skip
        try:
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
            conn.execute("PRAGMA synchronous = NORMAL")
            self._ensure_schema(conn)
            self._version = conn.execute("PRAGMA data_version").fetchone()[0]
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        """Create the tables once; refuse a store of another schema version."""
        exists = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'prioritize_store'"
        if conn.execute(exists).fetchone() is None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute(exists).fetchone() is None:  # nobody made it meanwhile
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(
                        "INSERT INTO prioritize_store (id, version, buried) VALUES (1, ?, 0)",
                        (SCHEMA_VERSION,),
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        (version,) = conn.execute("SELECT version FROM prioritize_store WHERE id = 1").fetchone()
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"the job store {self._path} has schema version {version}; this version of "
                f"prioritize reads version {SCHEMA_VERSION} only (use the prioritize that wrote "
                "it, or another file)"
            )

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        self._checked = None
        if conn is not None:
            conn.close()

    def _error(self, exc: sqlite3.DatabaseError) -> StoreError:
        hint = ""
        if "unable to open" in str(exc):
            hint = " (does its directory exist, and may this process write there?)"
        return StoreError(f"the job store {self._path} cannot be used: {exc}{hint}")

    # -- waking --------------------------------------------------------------------

    def _wake(self, job_ids: Iterable[str], *, work: bool) -> None:
        """Resolve the waiters of ``job_ids`` (and of work, if ``work``); from any thread."""
        with self._lock:
            woken = [w for job_id in job_ids for w in self._waiters.pop(job_id, ())]
            if work:
                woken += self._work_waiters
                self._work_waiters = []
        for loop, future in woken:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, future)

    def _watch_soon(self) -> None:
        """Make sure the watcher runs (one per broker, while anyone waits)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            watcher = self._watcher
            alive = watcher is not None and not watcher.done() and watcher.get_loop().is_running()
            if self._watching and alive:
                return
            self._watching = True
        self._watcher = loop.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            with self._lock:
                if not (self._waiters or self._work_waiters):
                    self._watching = False
                    return
            await asyncio.sleep(WATCH_INTERVAL)
            with contextlib.suppress(StoreError):  # the next operation reports it
                await self._call(self._poll)

    def _poll(self, conn: sqlite3.Connection) -> None:
        """If another connection committed since the last look, wake whom it may concern."""
        (version,) = conn.execute("PRAGMA data_version").fetchone()
        if version == self._version:
            return
        self._version = version
        with self._lock:
            waited = list(self._waiters)
        now = self._clock()
        running: set[str] = set()
        for placeholders, params in _chunks(waited):
            query = (
                "SELECT id FROM prioritize_jobs WHERE id IN ({}) AND state IN "
                "('queued', 'scheduled', 'running') AND (expires_at IS NULL OR expires_at > ?)"
            )
            running.update(r[0] for r in conn.execute(query.format(placeholders), (*params, now)))
        self._wake([job_id for job_id in waited if job_id not in running], work=True)

    def _next_due(self, conn: sqlite3.Connection) -> float | None:
        """Seconds until the earliest delayed job or lease comes due, or None."""
        times = [
            conn.execute("SELECT min(run_at) FROM prioritize_jobs WHERE state = 'scheduled'"),
            conn.execute("SELECT min(lease_until) FROM prioritize_jobs WHERE state = 'running'"),
        ]
        due = [t for (t,) in (c.fetchone() for c in times) if t is not None]
        return min(due) - self._clock() if due else None

    def __repr__(self) -> str:
        with self._lock:
            waiting = sum(map(len, self._waiters.values())) + len(self._work_waiters)
        state = "open" if self._conn is not None else "closed"
        return f"<SQLiteBroker {self._path} {state}, {waiting} waiting>"


def _settle(future: asyncio.Future[Job], result: Job | BaseException) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """Locked by another connection (SQLITE_BUSY, SQLITE_LOCKED and their extended codes)."""
    return exc.sqlite_errorcode & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)


def _allowed(levels: LevelSet, chosen: Collection[str] | None) -> list[bool]:
    """Per rank: may this reservation take that level's jobs? Unknown names raise."""
    if chosen is None:
        return [True] * len(levels)
    ranks = {levels.resolve(name).rank for name in chosen}
    return [i in ranks for i in range(len(levels))]


def _check_path(path: object) -> str:
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


def _check_seconds(name: str, value: object, *, least: float, inclusive: bool) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < least
        or (value == least and not inclusive)
    ):
        bound = "≥" if inclusive else ">"
        raise ValueError(
            f"{name} = {value!r}: expected a finite number of seconds {bound} {least:g}"
        )
