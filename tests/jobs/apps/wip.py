"""A queue whose gate limits each level globally: jobs that record when they ran.

`timed` appends ``level start end`` (epoch seconds) to ``<pid>.spans`` in
the directory ``PRIORITIZE_TEST_SPANS``, so a test can count how many jobs
of each level ran at once over all worker processes.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from prioritize import GatePolicy, LevelPolicy, current_level
from prioritize.core.levels import LevelSet
from prioritize.jobs import JobQueue
from tests.jobs.apps.brokers import open_test_broker

#: the global WIP: at most 12 jobs at once, and 8 critical, 4 high, 2 low
WIP = GatePolicy(
    capacity=12,
    levels={"critical": LevelPolicy(max=8), "high": LevelPolicy(max=4), "low": LevelPolicy(max=2)},
    level_set=LevelSet(["critical", "high", "low"]),
    name="jobs",
)
MAX = {"critical": 8, "high": 4, "low": 2}


def build(url: str) -> JobQueue:
    jobs = JobQueue(open_test_broker(url), policy=WIP)

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
