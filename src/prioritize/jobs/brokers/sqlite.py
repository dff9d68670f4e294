"""The SQLite broker: durable jobs in one file, shared by the worker processes of one machine.

Theory of operation
-------------------
The rules are the memory broker's (`MemoryBroker` is the reference), moved
from Python containers into tables, and every decision is one SQLite
transaction begun with ``BEGIN IMMEDIATE``: it takes the file's write lock
first, so two processes never decide on the same rows, and a transaction
that fails leaves nothing behind. This module runs those transactions:
the rules themselves are `Transaction` in ``_sqlite_rules.py``, and
``_sqlite_schema.py`` describes the tables and holds the opening of a
file and the reads that need no transaction. ``reserve`` applies the
finished outcomes, does the upkeep (bounded batches of expired leases,
due retries, missed deadlines, expired results), asks `JobGate` for up to
``limit`` levels and takes each level's first jobs in (tag, seq) order,
all in one transaction: a worker's acks and its next jobs cost one
commit. Enqueues waiting at the same time share one transaction too (a
group commit), each caller answered only once it is committed;
``enqueue_many`` stores a batch in one.

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
import math
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar, final

from ...core.jobgate import JobGate
from ...core.levels import LevelSet
from ...core.policy import GatePolicy
from ..broker import Broker
from ..model import Job, JobStats, Outcome, StoreError
from ._sqlite_rules import Transaction, allowed_ranks
from ._sqlite_schema import (
    SCHEMA_VERSION,
    check_path,
    immediate,
    open_store,
    read_dead,
    read_job,
    read_next_due,
    read_unfinished,
)

__all__ = ["SCHEMA_VERSION", "WATCH_INTERVAL", "SQLiteBroker", "StoreError"]

#: seconds between two looks at ``PRAGMA data_version`` while someone waits
WATCH_INTERVAL = 0.025
#: seconds a dead job stays in the dead-letter set unless requeued
DEFAULT_DEAD_TTL = 7 * 86_400.0

_T = TypeVar("_T")
_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


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
        self._path = check_path(path)
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
        allowed = allowed_ranks(level_set, levels)

        def work(tx: Transaction) -> list[Job]:
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
        return await self._call(lambda conn: read_job(conn, job_id, self._clock))

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
        return await self._call(lambda conn: read_dead(conn, self._clock(), limit))

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

    async def _write(self, work: Callable[[Transaction], _T]) -> _T:
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
        jobs = [(job, rank) for job, rank, _, _ in batch]
        try:
            results: Sequence[Job | Exception] = self._run(
                lambda conn: self._transact(conn, levels, lambda tx: tx.enqueue_each(jobs))
            )
        except Exception as exc:  # handed to every caller
            results = [exc] * len(batch)
        for (_, _, loop, future), result in zip(batch, results, strict=True):
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, future, result)

    def _transact(
        self, conn: sqlite3.Connection, levels: LevelSet | None, work: Callable[[Transaction], _T]
    ) -> _T:
        with immediate(conn):
            checked = levels is None or levels == self._checked
            tx = Transaction(conn, self._clock(), self._dead_ttl, levels, checked=checked)
            result = work(tx)
            tx.flush()
        if levels is not None:
            self._checked = levels
        self._wake(tx.finished, work=tx.has_work)
        return result

    def _connect(self) -> sqlite3.Connection:
        conn = open_store(self._path)
        try:
            self._version = conn.execute("PRAGMA data_version").fetchone()[0]
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

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
        running = read_unfinished(conn, waited, self._clock())
        self._wake([job_id for job_id in waited if job_id not in running], work=True)

    def _next_due(self, conn: sqlite3.Connection) -> float | None:
        """Seconds until the earliest delayed job or lease comes due, or None."""
        due = read_next_due(conn)
        return None if due is None else due - self._clock()

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
