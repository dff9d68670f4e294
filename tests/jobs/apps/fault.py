"""A queue for the fault tests: many small jobs, and a poison job.

Worker processes find what to do in an environment variable:
``PRIORITIZE_TEST_HOLD`` (a directory): every job this process starts
writes ``held-<i>`` there and then never ends, so the test knows the
process holds leases when it kills it.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from prioritize.jobs import JobQueue, RetryPolicy
from tests.jobs.apps.brokers import open_test_broker


def build(url: str) -> JobQueue:
    jobs = JobQueue(open_test_broker(url))

    @jobs.task(name="work")
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

    return jobs


jobs = build(os.environ.get("PRIORITIZE_TEST_BROKER", "memory://"))
