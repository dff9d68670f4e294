"""What a broker stores about a job, and what a worker reports back.

A job's life, the same on every broker::

    SCHEDULED ──(run_at reached)──► QUEUED ──(reserved)──► RUNNING ──► SUCCEEDED
        ▲                             │  ▲                    │
        │                             │  └─(lease expired,    ├──(failed, retries left)──► SCHEDULED
        │                             │     or released)──────┤
        │                             │                       └──(failed, none left)──► DEAD
        │                             ├──(cancel)──► CANCELLED
        │                             └──(deadline passed before it started)──► SHED
        └───────────────────────────────────────(requeue_dead)── DEAD ──► QUEUED

``attempts`` counts the runs started. A job whose lease expires (its worker
died) goes back to the front of its flow, unless it has used all its runs,
in which case it is dead: a job that kills every worker that runs it is a
poison job, and must not kill them forever.

Times are seconds since the epoch (``time.time()``): brokers are shared by
processes and machines, so a monotonic clock would mean nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import final

from ..core.retry import RetryPolicy
from ..errors import PrioritizeError

__all__ = [
    "FINISHED",
    "Job",
    "JobError",
    "JobNotFound",
    "JobState",
    "JobStats",
    "LevelJobStats",
    "Outcome",
    "OutcomeKind",
    "SerializationError",
    "StoreError",
    "TaskFailed",
]


class JobState(StrEnum):
    """Where a job is in its life."""

    #: waiting for its ``run_at`` (a delayed job, or a failed one backing off)
    SCHEDULED = "scheduled"
    #: ready: the next free worker the gate rules allow may take it
    QUEUED = "queued"
    #: reserved by a worker, under a lease
    RUNNING = "running"
    #: ran and returned a result
    SUCCEEDED = "succeeded"
    #: failed on its last allowed run: in the dead-letter set until requeued
    DEAD = "dead"
    #: cancelled before it started
    CANCELLED = "cancelled"
    #: not started before its deadline (reason ``timeout``)
    SHED = "shed"


#: states a job never leaves by itself (DEAD leaves only by `requeue_dead`)
FINISHED = frozenset({JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED, JobState.SHED})


@final
@dataclass(frozen=True, slots=True)
class Job:
    """One job as its broker stores it.

    ``payload`` is the task's arguments as the queue's serializer wrote
    them; ``result`` the return value likewise. ``error`` is
    ``"TypeName: message"`` of the last failure and ``traceback`` its text.
    """

    id: str
    task: str
    payload: bytes
    level: str
    flow: str = ""
    state: JobState = JobState.QUEUED
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: seconds one run may take, or None
    timeout: float | None = None
    #: epoch seconds: a job not started by then is shed
    deadline: float | None = None
    #: epoch seconds: not before then (delayed jobs, retries backing off)
    run_at: float | None = None
    enqueued_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    #: runs started so far
    attempts: int = 0
    worker: str | None = None
    lease_until: float | None = None
    result: bytes | None = None
    error: str | None = None
    traceback: str | None = None
    idempotency_key: str | None = None
    #: seconds a finished job (and its result) is kept
    result_ttl: float = 86_400.0
    #: why a job ended without running to success: "timeout" (shed), "cancelled", ...
    reason: str | None = None
    #: False when the enqueuer knew neither the task nor a retry count (a job
    #: enqueued by name only): ``retry`` is the default, and the worker that
    #: knows the task applies the task's own policy instead
    retry_chosen: bool = True

    @property
    def is_finished(self) -> bool:
        """True once the job will not run again by itself."""
        return self.state in FINISHED

    @property
    def max_attempts(self) -> int:
        """The runs this job may start: the first and its retries."""
        return self.retry.retries + 1

    def evolve(self, **changes: object) -> Job:
        """A copy with ``changes`` (dataclasses.replace, typed loosely for brokers)."""
        return replace(self, **changes)  # type: ignore[arg-type]


class OutcomeKind(StrEnum):
    """What became of one run, as a worker reports it."""

    #: returned; ``result`` holds the value
    SUCCEEDED = "succeeded"
    #: raised (or ran past its timeout); ``retry_at`` None sends it to the dead-letter set
    FAILED = "failed"
    #: not run (graceful shutdown): back to the front of its flow, the run not counted
    RELEASED = "released"


@final
@dataclass(frozen=True, slots=True)
class Outcome:
    """A worker's report on one reserved job.

    ``attempt`` is the job's ``attempts`` when it was reserved: the broker
    applies the outcome only if the job is still that run, held by that
    worker, so a worker whose lease expired cannot overwrite the run that
    replaced it.
    """

    job_id: str
    attempt: int
    kind: OutcomeKind
    result: bytes | None = None
    error: str | None = None
    traceback: str | None = None
    #: for FAILED: when to run again (epoch seconds), or None for the dead-letter set
    retry_at: float | None = None


@final
@dataclass(frozen=True, slots=True)
class LevelJobStats:
    """One level's jobs: how many in each state now, and counters since the store began."""

    queued: int = 0
    scheduled: int = 0
    running: int = 0
    #: finished with a result (counter)
    succeeded: int = 0
    #: runs that failed, retried or not (counter)
    failed: int = 0
    #: in the dead-letter set now
    dead: int = 0
    #: cancelled before starting (counter)
    cancelled: int = 0
    #: shed at their deadline (counter)
    shed: int = 0
    #: seconds the oldest queued job has been waiting (0.0 when none)
    oldest_wait: float = 0.0


@final
@dataclass(frozen=True, slots=True)
class JobStats:
    """Every level's `LevelJobStats`, most important first."""

    levels: dict[str, LevelJobStats]

    def total(self, name: str) -> float:
        """A field summed over levels (the largest for ``oldest_wait``)."""
        values = [getattr(s, name) for s in self.levels.values()]
        if name == "oldest_wait":
            return max(values, default=0.0)
        return float(sum(values))

    def as_dict(self) -> dict[str, dict[str, float]]:
        """Plain numbers, for JSON."""
        out: dict[str, dict[str, float]] = {}
        for level, stats in self.levels.items():
            row = {name: getattr(stats, name) for name in LevelJobStats.__dataclass_fields__}
            out[level] = {
                k: (v if not isinstance(v, float) or math.isfinite(v) else 0.0)
                for k, v in row.items()
            }
        return out


class JobError(PrioritizeError):
    """Base class of errors about jobs."""


class JobNotFound(JobError, LookupError):
    """No job has this id (never enqueued, or finished longer ago than its result TTL)."""


class StoreError(JobError, OSError):
    """The broker's store cannot be reached or used (a file, a server); names which."""


class SerializationError(JobError, TypeError):
    """Arguments or a result the serializer cannot write or read; the message names where."""


class TaskFailed(JobError):
    """Awaiting a job's result, the job ended without one (dead, cancelled or shed).

    ``job`` is the job as stored; ``error`` and ``traceback`` its last failure.
    """

    def __init__(self, job: Job) -> None:
        self.job = job
        super().__init__(self._message(job))

    @staticmethod
    def _message(job: Job) -> str:
        if job.state is JobState.DEAD:
            return f"job {job.id} ({job.task}) failed after {job.attempts} run(s): {job.error}"
        if job.state is JobState.SHED:
            return f"job {job.id} ({job.task}) was shed ({job.reason}): not started by its deadline"
        return f"job {job.id} ({job.task}) was {job.state.value} before it ran"
