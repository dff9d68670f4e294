"""The JobQueue and tasks prioritize workers run in bench/jobs.py.

Workers start as users start them, ``prioritize worker prioritize_tasks:queue
--concurrency 16``, with this folder on PYTHONPATH and the broker's URL in
BENCH_BROKER (``sqlite:////tmp/.../jobs.db`` or ``redis://127.0.0.1:PORT/0``).

Priorities are on: jobs are spread over the five levels, and the queue's
policy has a jobs gate (a global WIP of 64 over all workers, 4 seats kept
for critical, bulk at most 16 at once). With two workers of 16 slots the
gate's limits never hold a job back here: the benchmark pays for the
decisions without being throttled by them.
"""

from __future__ import annotations

import asyncio
import os
import time

from prioritize import policy_from_toml
from prioritize.jobs import JobQueue

POLICY = """
[gates.jobs]
capacity = 64

[gates.jobs.levels.critical]
min = 4

[gates.jobs.levels.bulk]
max = 16
"""


def make_queue(url: str) -> JobQueue:
    jobs = JobQueue(url, policy=policy_from_toml(POLICY, "bench-jobs.toml"))

    @jobs.task(name="noop")
    async def noop() -> None:
        """The throughput job: does nothing."""

    @jobs.task(name="warm")
    async def warm(seconds: float) -> int:
        """A warm-up job: returns the pid of the worker that ran it."""
        await asyncio.sleep(seconds)
        return os.getpid()

    @jobs.task(name="sleepy")
    async def sleepy(seconds: float) -> None:
        """A low job of the priority-honesty test."""
        await asyncio.sleep(seconds)

    @jobs.task(name="started")
    async def started() -> float:
        """The critical job of the priority-honesty test: when it started."""
        return time.time()

    return jobs


def __getattr__(name: str) -> JobQueue:
    """``queue``: the workers' JobQueue, on the broker BENCH_BROKER names (made on first use)."""
    if name != "queue":
        raise AttributeError(name)
    queue = make_queue(os.environ["BENCH_BROKER"])
    globals()["queue"] = queue
    return queue
