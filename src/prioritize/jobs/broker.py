"""The contract every job broker keeps: memory, SQLite and Redis alike.

A broker stores jobs and makes every decision about them inside one atomic
step of its store (a lock, a transaction, a Lua script), so any number of
workers in any number of processes see one consistent queue. The rules are
the same on every broker, and tests/jobs/conformance.py holds each one to
them:

*Which job a free worker gets* is decided by `JobGate` (the gate rules of
docs/concepts.md: strict or weighted order, each level's ``min``, and each
level's ``max`` counted over *all* workers), from the number of ready and
running jobs per level. Within a level, flows take turns and each flow is
FIFO. Both come from one number per job, its *tag*, given when the job
becomes ready: ``tag = max(the flow's last tag, the level's clock) + 1``;
reserving a job sets the level's clock to its tag. Jobs are served in
(tag, seq) order, so backlogged flows alternate and a new flow starts at
the current round, never ahead of it nor behind.

*No prefetch*: a worker asks for at most as many jobs as it has free slots,
and gets each under a lease that it renews by `heartbeat`. A lease that
runs out means the worker is gone: its job returns to the front of its
level (its tag is the level's clock), or becomes dead if it has used all
its runs. A job released by a worker shutting down goes back the same way.

*A dedicated worker* (``levels=``) reserves with the other levels shown
to the gate as having nothing queued: their running jobs still count
against every limit, and under weighted order a level a dedicated worker
cannot take is treated as idle for that turn, so it saves up no credit.

*Upkeep happens inside `reserve`*, before choosing, in the same atomic
step, bounded per call: expired leases are reaped, due scheduled jobs
become ready, queued jobs past their deadline are shed, finished jobs past
their TTL are dropped. So no separate process is needed for it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from ..core.policy import GatePolicy
from .model import Job, JobStats, Outcome

__all__ = ["Broker", "next_tag"]


def next_tag(flow_last: float | None, level_clock: float) -> float:
    """The tag of a job becoming ready in a flow whose last job got ``flow_last``."""
    return max(flow_last if flow_last is not None else 0.0, level_clock) + 1.0


class Broker(Protocol):
    """Where jobs are kept, and where every decision about them is made atomically.

    All methods are coroutines and take their time from the broker's own
    clock (epoch seconds). A broker connects lazily, on first use.
    """

    def configure(self, gate: GatePolicy) -> None:
        """Use ``gate``'s rules and levels to decide reservations (a `JobQueue` calls it)."""
        ...

    def copy(self) -> Broker:
        """A broker over the same store with its own connections, for another event loop."""
        ...

    async def enqueue(self, job: Job) -> Job:
        """Store ``job``; returns the job as stored.

        Ready now if ``run_at`` is None or due, else SCHEDULED. With an
        ``idempotency_key`` already held by a stored job, stores nothing
        and returns that job (compare ids to tell).
        """
        ...

    async def enqueue_many(self, jobs: Sequence[Job]) -> list[Job]:
        """`enqueue` each job in order, atomically: all are stored, or (on an error) none.

        Idempotency keys are resolved in order, within the batch too.
        """
        ...

    async def reserve(
        self,
        worker: str,
        limit: int,
        *,
        lease: float,
        levels: Collection[str] | None = None,
        finished: Sequence[Outcome] = (),
    ) -> list[Job]:
        """Apply ``finished`` (as `finish` does), then give ``worker`` up to ``limit`` jobs.

        Each job returned is RUNNING with ``attempts`` counted and a lease
        of ``lease`` seconds. ``levels`` restricts the jobs to those levels
        (dedicated workers); the gate still counts every level's running jobs.
        """
        ...

    async def finish(self, worker: str, outcomes: Sequence[Outcome]) -> list[bool]:
        """Record what became of reserved jobs; True for each outcome applied.

        An outcome is ignored (False) unless its job is RUNNING, held by
        ``worker``, at the same ``attempt``.
        """
        ...

    async def heartbeat(self, worker: str, job_ids: Sequence[str], lease: float) -> set[str]:
        """Extend the leases ``worker`` holds on ``job_ids``; returns the ids it no longer holds."""
        ...

    async def get(self, job_id: str) -> Job | None:
        """The job, or None if unknown (or dropped after its TTL)."""
        ...

    async def wait(self, job_id: str, timeout: float) -> Job | None:
        """The job once finished, or as it is when ``timeout`` seconds pass; None if unknown.

        Woken by the broker when the job finishes: no polling per job.
        """
        ...

    async def wait_for_work(self, timeout: float) -> None:
        """Return when a job may have become ready, or after ``timeout`` seconds."""
        ...

    async def cancel(self, job_id: str) -> Job | None:
        """Cancel the job if it has not started; returns it as it now is, None if unknown."""
        ...

    async def dead(self, limit: int = 100) -> list[Job]:
        """Jobs in the dead-letter set, oldest failure first."""
        ...

    async def requeue_dead(self, job_ids: Sequence[str] | None = None) -> int:
        """Put dead jobs (all, or ``job_ids``) back in their queues with fresh attempts."""
        ...

    async def stats(self) -> JobStats:
        """Counts per level, most important first."""
        ...

    async def close(self) -> None:
        """Release connections; the store keeps everything."""
        ...
