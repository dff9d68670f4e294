"""A job a worker holds, from reservation until its task has ended, and the log lines about it.

Every line about a run carries the same structured fields (`job_fields`:
job id, task, level, attempt), so a log pipeline can follow one job across
workers and retries; the lines are written here, in one place, so their
wording and fields stay alike and the worker's loop is not crowded by
them. They go to the worker's logger, ``prioritize.jobs.worker``, which is
the name users configure.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import final

from ..core.levels import Level
from .model import Job

__all__ = [
    "Run",
    "job_fields",
    "log_failed",
    "log_late",
    "log_lease_lost",
    "log_released",
    "log_started",
    "log_succeeded",
]

logger = logging.getLogger("prioritize.jobs.worker")


@final
@dataclass(slots=True)
class Run:
    """A job this worker holds: from reservation until its task (or thread) has ended."""

    job: Job
    level: Level | None
    started: float
    task: asyncio.Task[None] | None = None
    #: its outcome is collected (a sync job past its timeout may still be on its thread)
    is_reported: bool = False
    #: the broker said the lease is gone: the job is someone else's now
    is_lost: bool = False


def job_fields(job: Job) -> dict[str, object]:
    """The structured fields of every log line about a job."""
    return {"job_id": job.id, "task": job.task, "level": job.level, "attempt": job.attempts}


def log_started(job: Job) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "job %s (%s) started, attempt %d", job.id, job.task, job.attempts, extra=job_fields(job)
        )


def log_succeeded(job: Job, seconds: float) -> None:
    if logger.isEnabledFor(logging.INFO):
        logger.info(
            "job %s (%s) succeeded in %.3f s",
            job.id,
            job.task,
            seconds,
            extra={**job_fields(job), "duration": round(seconds, 6)},
        )


def log_failed(
    job: Job, seconds: float, error: str, delay: float | None, *, permanent: bool
) -> None:
    """A failed run: retried in ``delay`` seconds, or (None) moved to dead letter."""
    extra = {**job_fields(job), "duration": round(seconds, 6), "error": error}
    if delay is not None:
        logger.warning(
            "job %s (%s) failed on attempt %d of %d, retrying in %.2f s: %s",
            job.id,
            job.task,
            job.attempts,
            job.max_attempts,
            delay,
            error,
            extra={**extra, "retry_in": round(delay, 3)},
        )
    else:
        why = "no retry can mend it" if permanent else "no retries left"
        logger.error(
            "job %s (%s) failed on attempt %d of %d, %s; moved to dead letter: %s",
            job.id,
            job.task,
            job.attempts,
            job.max_attempts,
            why,
            error,
            extra=extra,
        )


def log_released(job: Job) -> None:
    logger.info(
        "job %s (%s) released: the worker stopped before it ended",
        job.id,
        job.task,
        extra=job_fields(job),
    )


def log_late(run: Run) -> None:
    """A sync job reported at its timeout: its thread has returned, its slot is free."""
    logger.info(
        "job %s (%s): its thread returned %.1f s after the job timed out",
        run.job.id,
        run.job.task,
        asyncio.get_running_loop().time() - run.started,
        extra=job_fields(run.job),
    )


def log_lease_lost(job: Job) -> None:
    logger.warning(
        "job %s (%s): lease lost; it runs again elsewhere and this run's outcome will be ignored",
        job.id,
        job.task,
        extra=job_fields(job),
    )
