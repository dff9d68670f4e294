"""A queue for the fault tests: many small jobs, a poison job, and jobs that record when they ran.

Worker processes find what to do in environment variables:
``PRIORITIZE_TEST_HOLD`` (a directory): every job this process starts
writes ``held-<i>`` there and then never ends, so the test knows the
process holds leases when it kills it. ``PRIORITIZE_TEST_SPANS`` (a
directory): `timed` appends ``level start end`` to ``<pid>.spans`` there.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from prioritize import GatePolicy, LevelPolicy, current_level
from prioritize.core.levels import LevelSet
from prioritize.jobs import JobQueue, RetryPolicy
from tests.jobs.apps.brokers import open_test_broker

#: the global WIP the limits test holds every process to
WIP = GatePolicy(
    capacity=12,
    levels={"critical": LevelPolicy(max=8), "high": LevelPolicy(max=4), "low": LevelPolicy(max=2)},
    level_set=LevelSet(["critical", "high", "low"]),
    name="jobs",
)
MAX = {"critical": 8, "high": 4, "low": 2}


def build(url: str) -> JobQueue:
    jobs = JobQueue(open_test_broker(url), policy=WIP)

    @jobs.task(name="work", level="high")
    async def work(i: int) -> int:
        hold = os.environ.get("PRIORITIZE_TEST_HOLD")
        if hold:
            (Path(hold) / f"held-{i}").touch()
            await asyncio.Event().wait()
        await asyncio.sleep(0.001)
        return 2 * i

    @jobs.task(name="poison", level="critical", retry=RetryPolicy(retries=2, base=0.05))
    async def poison() -> None:
        raise RuntimeError("poison: fails every time")

    @jobs.task(name="timed")
    async def timed(seconds: float) -> None:
        level = current_level()
        start = time.time()
        await asyncio.sleep(seconds)
        end = time.time()
        spans = Path(os.environ["PRIORITIZE_TEST_SPANS"]) / f"{os.getpid()}.spans"
        with spans.open("a") as out:
            out.write(f"{level.name if level else '-'} {start!r} {end!r}\n")

    return jobs


jobs = build(os.environ.get("PRIORITIZE_TEST_BROKER", "memory://"))
