"""The in-memory broker: the reference the others are tested against, and for one process.

Every rule of `Broker` in plain Python data under one lock, so it is also
the clearest statement of them. Nothing survives the process. It is safe
to use from several event loops and threads at once (a `JobQueue`'s sync
calls run on a loop of their own); waiters are woken on their own loop.
"""

from __future__ import annotations

import asyncio
import heapq
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import final

from ...core.jobgate import JobGate, LevelSnapshot
from ...core.levels import LevelSet
from ...core.policy import GatePolicy
from ..broker import Broker, next_tag
from ..model import FINISHED, Job, JobState, JobStats, LevelJobStats, Outcome, OutcomeKind

__all__ = ["MemoryBroker"]

#: seconds a dead job stays in the dead-letter set unless requeued
DEFAULT_DEAD_TTL = 7 * 86_400.0

_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


@final
class MemoryBroker(Broker):
    """Jobs in a dict, ready jobs in one heap per level; see `Broker` for the rules."""

    def __init__(
        self, *, clock: Callable[[], float] = time.time, dead_ttl: float = DEFAULT_DEAD_TTL
    ) -> None:
        self._clock = clock
        self._dead_ttl = dead_ttl
        self._lock = threading.Lock()
        self._gate: JobGate | None = None
        self._levels: LevelSet | None = None
        self._jobs: dict[str, Job] = {}
        #: tag and readiness time of each QUEUED job
        self._tags: dict[str, float] = {}
        self._ready_at: dict[str, float] = {}
        self._keys: dict[str, str] = {}
        self._seq = 0
        # per level rank:
        self._ready: list[list[tuple[float, int, str]]] = []
        self._queued: list[int] = []
        self._running: list[int] = []
        self._clocks: list[float] = []
        self._counters: list[dict[str, int]] = []
        self._flow_last: dict[tuple[int, str], float] = {}
        self._scheduled: list[tuple[float, int, str]] = []
        self._leases: list[tuple[float, str, int]] = []
        self._deadlines: list[tuple[float, str]] = []
        self._expiries: list[tuple[float, str]] = []
        self._dead: dict[str, None] = {}
        self._waiters: dict[str, list[_Waiter]] = {}
        self._work_waiters: list[_Waiter] = []

    # -- setup ---------------------------------------------------------------------

    def configure(self, gate: GatePolicy) -> None:
        with self._lock:
            if self._levels is not None and self._levels != gate.level_set:
                raise ValueError(
                    f"this broker already holds jobs of levels {list(self._levels.names)}; "
                    f"it cannot switch to {list(gate.level_set.names)}"
                )
            state = self._gate.state() if self._gate is not None else None
            self._gate = JobGate(gate)
            if state is not None and len(state) == len(self._gate.state()):
                self._gate = self._gate.with_state(state)
            if self._levels is None:
                n = len(gate.level_set)
                self._levels = gate.level_set
                self._ready = [[] for _ in range(n)]
                self._queued = [0] * n
                self._running = [0] * n
                self._clocks = [0.0] * n
                self._counters = [
                    {"succeeded": 0, "failed": 0, "cancelled": 0, "shed": 0} for _ in range(n)
                ]

    def copy(self) -> MemoryBroker:
        return self

    def _configured(self) -> tuple[JobGate, LevelSet]:
        if self._gate is None or self._levels is None:
            raise RuntimeError(
                "MemoryBroker is not configured: create a JobQueue over it, "
                "or call broker.configure(gate_policy)"
            )
        return self._gate, self._levels

    # -- enqueue -------------------------------------------------------------------

    async def enqueue(self, job: Job) -> Job:
        return (await self.enqueue_many([job]))[0]

    async def enqueue_many(self, jobs: Sequence[Job]) -> list[Job]:
        _, levels = self._configured()
        ranks = [levels.resolve(job.level).rank for job in jobs]
        with self._lock:
            now = self._clock()
            self._expire(now)
            seen: set[str] = set()
            for job in jobs:  # all or nothing: refuse before storing any
                if job.id in self._jobs or job.id in seen:
                    raise ValueError(f"a job with id {job.id!r} is already stored")
                seen.add(job.id)
            stored = [self._store(job, rank, now) for job, rank in zip(jobs, ranks, strict=True)]
            self._wake_workers()
            return stored

    def _store(self, job: Job, rank: int, now: float) -> Job:
        if job.idempotency_key is not None:
            existing = self._keys.get(job.idempotency_key)
            if existing is not None and existing in self._jobs:
                return self._jobs[existing]
            self._keys[job.idempotency_key] = job.id
        job = job.evolve(enqueued_at=now, attempts=0, worker=None, lease_until=None)
        if job.run_at is not None and job.run_at > now:
            self._jobs[job.id] = job.evolve(state=JobState.SCHEDULED)
            self._push_scheduled(job.id, job.run_at)
        else:
            self._jobs[job.id] = job.evolve(state=JobState.QUEUED, run_at=None)
            self._make_ready(job.id, rank, now)
        return self._jobs[job.id]

    # -- reserve and finish --------------------------------------------------------

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
        with self._lock:
            now = self._clock()
            self._apply(worker, finished, now)
            self._upkeep(now)
            out: list[Job] = []
            for _ in range(limit):
                snapshot = [
                    LevelSnapshot(self._queued[i] if allowed[i] else 0, self._running[i])
                    for i in range(len(level_set))
                ]
                rank = gate.reserve(snapshot)
                if rank is None:
                    break
                out.append(self._start(rank, worker, lease, now))
            return out

    async def finish(self, worker: str, outcomes: Sequence[Outcome]) -> list[bool]:
        self._configured()
        with self._lock:
            return self._apply(worker, outcomes, self._clock())

    async def heartbeat(self, worker: str, job_ids: Sequence[str], lease: float) -> set[str]:
        with self._lock:
            now = self._clock()
            lost: set[str] = set()
            for job_id in job_ids:
                job = self._jobs.get(job_id)
                if job is None or job.state is not JobState.RUNNING or job.worker != worker:
                    lost.add(job_id)
                    continue
                if job.lease_until is not None and job.lease_until <= now:
                    lost.add(job_id)  # expired: it is the reaper's, even if not reaped yet
                    continue
                until = now + lease
                self._jobs[job_id] = job.evolve(lease_until=until)
                heapq.heappush(self._leases, (until, job_id, job.attempts))
            return lost

    # -- reading and waiting -------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        with self._lock:
            self._expire(self._clock())
            return self._jobs.get(job_id)

    async def wait(self, job_id: str, timeout: float) -> Job | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._expire(self._clock())
            job = self._jobs.get(job_id)
            if job is None or job.is_finished:
                return job
            self._waiters.setdefault(job_id, []).append((loop, future))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                waiting = self._waiters.get(job_id)
                if waiting is not None and (loop, future) in waiting:
                    waiting.remove((loop, future))
                    if not waiting:
                        del self._waiters[job_id]
        return await self.get(job_id)

    async def wait_for_work(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._scheduled:
                timeout = min(timeout, max(0.0, self._scheduled[0][0] - self._clock()))
            if self._leases:
                timeout = min(timeout, max(0.0, self._leases[0][0] - self._clock()))
            self._work_waiters.append((loop, future))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                if (loop, future) in self._work_waiters:
                    self._work_waiters.remove((loop, future))

    # -- managing ------------------------------------------------------------------

    async def cancel(self, job_id: str) -> Job | None:
        _, levels = self._configured()
        with self._lock:
            now = self._clock()
            self._expire(now)
            job = self._jobs.get(job_id)
            if job is None or job.state not in (JobState.QUEUED, JobState.SCHEDULED):
                return job
            rank = levels.resolve(job.level).rank
            if job.state is JobState.QUEUED:
                self._unready(job_id, rank)
            self._counters[rank]["cancelled"] += 1
            self._end(job.evolve(state=JobState.CANCELLED, reason="cancelled"), now)
            return self._jobs[job_id]

    async def dead(self, limit: int = 100) -> list[Job]:
        with self._lock:
            self._expire(self._clock())
            return [self._jobs[job_id] for job_id in list(self._dead)[:limit]]

    async def requeue_dead(self, job_ids: Sequence[str] | None = None) -> int:
        _, levels = self._configured()
        with self._lock:
            now = self._clock()
            self._expire(now)
            chosen = (
                list(self._dead) if job_ids is None else [i for i in job_ids if i in self._dead]
            )
            chosen = list(dict.fromkeys(chosen))  # an id given twice is requeued once
            for job_id in chosen:
                del self._dead[job_id]
                job = self._jobs[job_id]
                self._jobs[job_id] = job.evolve(
                    state=JobState.QUEUED, attempts=0, finished_at=None, run_at=None, worker=None
                )
                self._make_ready(job_id, levels.resolve(job.level).rank, now)
            if chosen:
                self._wake_workers()
            return len(chosen)

    async def stats(self) -> JobStats:
        _, levels = self._configured()
        with self._lock:
            now = self._clock()
            self._upkeep(now)
            scheduled = [0] * len(levels)
            dead = [0] * len(levels)
            oldest = [now] * len(levels)
            for job in self._jobs.values():
                rank = levels.resolve(job.level).rank
                if job.state is JobState.SCHEDULED:
                    scheduled[rank] += 1
                elif job.state is JobState.DEAD:
                    dead[rank] += 1
                elif job.state is JobState.QUEUED:
                    oldest[rank] = min(oldest[rank], self._ready_at[job.id])
            return JobStats(
                {
                    level.name: LevelJobStats(
                        queued=self._queued[i],
                        scheduled=scheduled[i],
                        running=self._running[i],
                        dead=dead[i],
                        oldest_wait=now - oldest[i],
                        **self._counters[i],
                    )
                    for i, level in enumerate(levels)
                }
            )

    async def close(self) -> None:
        return None

    # -- the rules, under the lock -------------------------------------------------

    def _make_ready(self, job_id: str, rank: int, now: float, tag: float | None = None) -> None:
        """QUEUED at the back of its flow (a new ``tag``), or at ``tag`` (redelivery)."""
        job = self._jobs[job_id]
        if tag is None:
            key = (rank, job.flow)
            tag = next_tag(self._flow_last.get(key), self._clocks[rank])
            self._flow_last[key] = tag
        self._seq += 1
        self._tags[job_id] = tag
        self._ready_at.setdefault(job_id, now)
        heapq.heappush(self._ready[rank], (tag, self._seq, job_id))
        self._queued[rank] += 1
        if job.deadline is not None:
            heapq.heappush(self._deadlines, (job.deadline, job_id))

    def _unready(self, job_id: str, rank: int) -> None:
        """Take a QUEUED job out of its level (its heap entry goes stale)."""
        self._tags.pop(job_id, None)
        self._ready_at.pop(job_id, None)
        self._queued[rank] -= 1

    def _start(self, rank: int, worker: str, lease: float, now: float) -> Job:
        heap = self._ready[rank]
        while True:
            tag, _, job_id = heapq.heappop(heap)
            if self._tags.get(job_id) == tag and self._jobs[job_id].state is JobState.QUEUED:
                break
        job = self._jobs[job_id]
        self._unready(job_id, rank)
        self._clocks[rank] = max(self._clocks[rank], tag)
        key = (rank, job.flow)
        if self._flow_last.get(key, 0.0) <= self._clocks[rank]:
            self._flow_last.pop(key, None)  # same as absent from now on
        self._running[rank] += 1
        until = now + lease
        job = job.evolve(
            state=JobState.RUNNING,
            attempts=job.attempts + 1,
            worker=worker,
            lease_until=until,
            started_at=now,
        )
        self._jobs[job_id] = job
        heapq.heappush(self._leases, (until, job_id, job.attempts))
        return job

    def _apply(self, worker: str, outcomes: Sequence[Outcome], now: float) -> list[bool]:
        _, levels = self._configured()
        applied: list[bool] = []
        for outcome in outcomes:
            job = self._jobs.get(outcome.job_id)
            if (
                job is None
                or job.state is not JobState.RUNNING
                or job.worker != worker
                or job.attempts != outcome.attempt
            ):
                applied.append(False)
                continue
            rank = levels.resolve(job.level).rank
            self._running[rank] -= 1
            counters = self._counters[rank]
            if outcome.kind is OutcomeKind.SUCCEEDED:
                counters["succeeded"] += 1
                ended = job.evolve(
                    state=JobState.SUCCEEDED, result=outcome.result, lease_until=None
                )
                self._end(ended, now)
            elif outcome.kind is OutcomeKind.FAILED:
                counters["failed"] += 1
                failed = job.evolve(
                    error=outcome.error, traceback=outcome.traceback, lease_until=None
                )
                self._retry_or_bury(failed, rank, outcome.retry_at, now)
            else:
                self._jobs[job.id] = job.evolve(
                    state=JobState.QUEUED, attempts=job.attempts - 1, lease_until=None
                )
                self._make_ready(job.id, rank, now, tag=self._tag_before(job))
            applied.append(True)
        if applied and any(applied):
            self._wake_workers()
        return applied

    def _tag_before(self, job: Job) -> float:
        """The tag a redelivered job keeps: at the front of its level's current round."""
        return self._clocks[self._configured()[1].resolve(job.level).rank]

    def _retry_or_bury(self, job: Job, rank: int, retry_at: float | None, now: float) -> None:
        if retry_at is None:
            dead = job.evolve(state=JobState.DEAD, worker=job.worker)
            self._end(dead, now)
            self._dead[job.id] = None
        elif retry_at > now:
            self._jobs[job.id] = job.evolve(state=JobState.SCHEDULED, run_at=retry_at)
            self._push_scheduled(job.id, retry_at)
        else:
            self._jobs[job.id] = job.evolve(state=JobState.QUEUED, run_at=None)
            self._make_ready(job.id, rank, now)

    def _end(self, job: Job, now: float) -> None:
        """A job finished: store it, schedule its expiry, wake whoever awaits it."""
        job = job.evolve(finished_at=now)
        self._jobs[job.id] = job
        ttl = self._dead_ttl if job.state is JobState.DEAD else job.result_ttl
        heapq.heappush(self._expiries, (now + ttl, job.id))
        for loop, future in self._waiters.pop(job.id, ()):
            loop.call_soon_threadsafe(_resolve, future)

    def _push_scheduled(self, job_id: str, run_at: float) -> None:
        self._seq += 1
        heapq.heappush(self._scheduled, (run_at, self._seq, job_id))

    def _upkeep(self, now: float) -> None:
        """Reap expired leases, promote due jobs, shed missed deadlines, drop expired results."""
        _, levels = self._configured()
        while self._leases and self._leases[0][0] <= now:
            until, job_id, attempt = heapq.heappop(self._leases)
            job = self._jobs.get(job_id)
            if (
                job is None
                or job.state is not JobState.RUNNING
                or job.attempts != attempt
                or job.lease_until != until
            ):
                continue  # finished, or renewed: a stale entry
            rank = levels.resolve(job.level).rank
            self._running[rank] -= 1
            self._counters[rank]["failed"] += 1
            lost = job.evolve(
                error=f"LeaseExpired: worker {job.worker} stopped renewing its lease",
                traceback=None,
                lease_until=None,
            )
            if job.attempts >= job.max_attempts:
                self._retry_or_bury(lost, rank, None, now)
            else:
                self._jobs[job_id] = lost.evolve(state=JobState.QUEUED)
                self._make_ready(job_id, rank, now, tag=self._tag_before(job))
        while self._scheduled and self._scheduled[0][0] <= now:
            run_at, _, job_id = heapq.heappop(self._scheduled)
            job = self._jobs.get(job_id)
            if job is None or job.state is not JobState.SCHEDULED or job.run_at != run_at:
                continue
            self._jobs[job_id] = job.evolve(state=JobState.QUEUED, run_at=None)
            self._make_ready(job_id, levels.resolve(job.level).rank, now)
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, job_id = heapq.heappop(self._deadlines)
            job = self._jobs.get(job_id)
            if job is None or job.state is not JobState.QUEUED or job.deadline != deadline:
                continue  # a stale entry: of a job that left, or of an earlier job of this id
            rank = levels.resolve(job.level).rank
            self._unready(job_id, rank)
            self._counters[rank]["shed"] += 1
            self._end(job.evolve(state=JobState.SHED, reason="timeout"), now)
        self._expire(now)

    def _expire(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            _, job_id = heapq.heappop(self._expiries)
            job = self._jobs.get(job_id)
            if job is None or job.state not in FINISHED:
                continue
            ttl = self._dead_ttl if job.state is JobState.DEAD else job.result_ttl
            if job.finished_at is None or job.finished_at + ttl > now:
                continue  # finished again since (requeued dead job)
            del self._jobs[job_id]
            self._dead.pop(job_id, None)
            if job.idempotency_key is not None and self._keys.get(job.idempotency_key) == job_id:
                del self._keys[job.idempotency_key]

    def _wake_workers(self) -> None:
        waiters, self._work_waiters = self._work_waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(_resolve, future)

    def __repr__(self) -> str:
        return f"<MemoryBroker {len(self._jobs)} jobs, queued {sum(self._queued)}>"


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _allowed(levels: LevelSet, chosen: Collection[str] | None) -> list[bool]:
    """Per rank: may this reservation take that level's jobs? Unknown names raise."""
    if chosen is None:
        return [True] * len(levels)
    ranks = {levels.resolve(name).rank for name in chosen}
    return [i in ranks for i in range(len(levels))]
