"""The SQLite broker's rules: `Transaction`, the memory broker's rules on rows.

Why a module of its own: the rules are what must agree with `MemoryBroker`
(the reference) and with every other broker, so they are kept where they
can be read and compared rule by rule, apart from the machinery that runs
them. The broker (``sqlite.py``) owns the thread, the connection, the lock
retries and the waiting; it begins each ``BEGIN IMMEDIATE`` transaction,
hands it here as a `Transaction`, and commits. Nothing here waits, sleeps
or retries: a rule reads and changes rows, and raises to undo them all.

A transaction reads the level rows, the flows' last tags and the store row
when first needed, changes job rows (queued updates go out as one
``executemany`` per kind), and writes back what changed just before
``COMMIT``. A transaction that changes nothing writes nothing, so idle
workers wake nobody.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from typing import Any, final

from ...core.jobgate import JobGate, LevelSnapshot
from ...core.levels import LevelSet
from ..broker import next_tag
from ..model import Job, JobState, JobStats, LevelJobStats, Outcome, OutcomeKind
from ._sqlite_schema import (
    GAUGES,
    JOB_INSERT,
    JOB_SELECT,
    LEVEL_SELECT,
    LEVEL_UPDATE,
    JobRow,
    LevelRow,
    check_levels,
    chunks,
    column_values,
    update_sql,
)

__all__ = ["UPKEEP_BATCH", "Transaction", "allowed_ranks"]

#: rows of each kind (leases, due jobs, deadlines, expiries) one upkeep handles
UPKEEP_BATCH = 500


@final
class Transaction:
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
        self._levels: dict[int, LevelRow] = {}
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
            check_levels(conn, levels)

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

    def select(self, where: str, *params: object) -> list[JobRow]:
        return [JobRow.load(r) for r in self.execute(f"{JOB_SELECT} {where}", params)]

    def rows(self, job_ids: Sequence[str]) -> dict[str, JobRow]:
        found: dict[str, JobRow] = {}
        for placeholders, params in chunks(job_ids):
            for row in self.select(f"WHERE id IN ({placeholders})", *params):
                found[row.cols["id"]] = row
        return found

    def insert(self, row: JobRow) -> None:
        row.rowid = self.execute(JOB_INSERT, column_values(row.cols)).lastrowid
        self._gauge(row.rank, row.state, 1)

    def delete(self, row: JobRow) -> None:
        self.execute("DELETE FROM prioritize_jobs WHERE rowid = ?", (row.rowid,))
        self._gauge(row.rank, row.state, -1)

    def change(self, row: JobRow, **changes: Any) -> None:
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
            statement = update_sql(tuple(changes))
            self._pending.setdefault(statement, []).append((*changes.values(), row.rowid))
        cols.update(changes)
        row._job = None

    def _gauge(self, rank: int, state: JobState, delta: int) -> None:
        column = GAUGES.get(state)
        if column is not None:
            level = self.level(rank)
            setattr(level, column, getattr(level, column) + delta)

    def level(self, rank: int) -> LevelRow:
        """A level's row, read once per transaction."""
        level = self._levels.get(rank)
        if level is None:
            record = self.conn.execute(f"{LEVEL_SELECT} WHERE rank = ?", (rank,)).fetchone()
            level = self._levels[rank] = LevelRow(record)
        return level

    def all_levels(self) -> list[LevelRow]:
        """Every level's row, most important first."""
        for record in self.conn.execute(f"{LEVEL_SELECT} ORDER BY rank"):
            if record[0] not in self._levels:
                self._levels[record[0]] = LevelRow(record)
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
                self.conn.execute(LEVEL_UPDATE, (*values, level.rank))
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
        for same in self.select("WHERE id = ?", job.id):
            if not same.is_expired(self.now):
                raise ValueError(f"a job with id {job.id!r} is already stored")  # before any change
            self.delete(same)  # past its TTL, not yet deleted: gone, and its id is free
        row = JobRow.new(job, rank)
        fresh = {"enqueued_at": self.now, "attempts": 0, "worker": None, "lease_until": None}
        if job.run_at is not None and job.run_at > self.now:
            self.change(row, state=JobState.SCHEDULED, seq=self.next_seq(rank), **fresh)
        else:
            self.make_ready(row, run_at=None, **fresh)
        self.insert(row)
        self.has_work = True
        return row.job

    def enqueue_each(self, jobs: Sequence[tuple[Job, int]]) -> list[Job | ValueError]:
        """`enqueue` each (job, rank) on its own: its job, or its error for a duplicate id."""
        out: list[Job | ValueError] = []
        for job, rank in jobs:
            try:
                out.append(self.enqueue(job, rank))
            except ValueError as exc:
                out.append(exc)
        return out

    def make_ready(self, row: JobRow, tag: float | None = None, **changes: Any) -> None:
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

    def take(self, rank: int, count: int, worker: str, lease: float) -> list[JobRow]:
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
        for placeholders, params in chunks(unread):  # not changed here: the file has them
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

    def retry_or_bury(self, row: JobRow, retry_at: float | None, **changes: Any) -> None:
        if retry_at is None:
            self._load_store()
            self.buried += 1  # the dead-letter set is in order of burial
            self.end(row, JobState.DEAD, seq=self.buried, **changes)
        elif retry_at > self.now:
            seq = self.next_seq(row.rank)
            self.change(row, state=JobState.SCHEDULED, run_at=retry_at, seq=seq, **changes)
        else:
            self.make_ready(row, run_at=None, **changes)

    def end(self, row: JobRow, state: JobState, **changes: Any) -> None:
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
        for placeholders, params in chunks([rowid for rowid, _, _ in expired]):
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


def allowed_ranks(levels: LevelSet, chosen: Collection[str] | None) -> list[bool]:
    """Per rank: may this reservation take that level's jobs? Unknown names raise."""
    if chosen is None:
        return [True] * len(levels)
    ranks = {levels.resolve(name).rank for name in chosen}
    return [i in ranks for i in range(len(levels))]
