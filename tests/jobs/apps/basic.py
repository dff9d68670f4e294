"""A small queue for the command's own tests: async and sync tasks, one that never ends."""

from __future__ import annotations

import asyncio
import os
import time

from prioritize.jobs import JobQueue
from tests.jobs.apps.brokers import open_test_broker


def build(url: str) -> JobQueue:
    jobs = JobQueue(open_test_broker(url))

    @jobs.task(name="double")
    async def double(i: int) -> int:
        return 2 * i

    @jobs.task(name="shout")
    def shout(word: str) -> str:
        return word.upper()

    @jobs.task(name="forever")
    async def forever() -> None:
        await asyncio.Event().wait()

    @jobs.task(name="stuck_thread")
    def stuck_thread() -> None:
        time.sleep(3600)  # a thread nobody can stop: the command must still exit

    return jobs


jobs = build(os.environ.get("PRIORITIZE_TEST_BROKER", "memory://"))
settings = {"not": "a queue"}
