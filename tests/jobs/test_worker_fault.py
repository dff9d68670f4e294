"""Faults with real worker processes on real brokers (SQLite files, a Redis server).

* A worker killed with SIGKILL while it holds leases loses nothing: its jobs
  come back when their leases run out, and run on the other workers.
* A poison job goes to dead letter after its retries; the rest succeed.
* The global WIP limits hold across processes: with three workers of
  eight slots each, each level's jobs never run more at once than its max.

Processes are started with ``prioritize worker tests.jobs.apps.fault:jobs``
(or ``wip:jobs``; see those modules for what their tasks do); the test
enqueues and reads results through a queue built the same way in its own
process.
"""

from __future__ import annotations

import asyncio
import signal
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from prioritize.jobs import Job, JobHandle, JobQueue, JobState, TaskFailed
from tests.jobs.apps import fault, wip
from tests.jobs.apps.processes import HANG, wait_until, worker_processes

APP = "tests.jobs.apps.fault:jobs"
WIP_APP = "tests.jobs.apps.wip:jobs"
BROKERS = ["sqlite", "redis"]
_queues = iter(range(1_000_000))


@pytest.fixture(params=BROKERS)
def broker_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The URL of a fresh store; for Redis, a queue of its own (the children inherit it)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    monkeypatch.setenv("PRIORITIZE_TEST_QUEUE", f"fault-{next(_queues)}-{id(request)}")
    url: str = request.getfixturevalue("redis_url")
    return url


def test_sigkilled_worker_loses_no_job(broker_url: str, tmp_path: Path) -> None:
    held = tmp_path / "held"
    held.mkdir()
    options = ["--concurrency=8", "--lease=1"]

    async def main() -> None:
        jobs = fault.build(broker_url)
        with worker_processes(tmp_path) as start:
            # the victim first, alone: every job it starts writes its marker, then never ends
            victim = start(
                APP,
                *options,
                "--log-level=info",
                PRIORITIZE_TEST_BROKER=broker_url,
                PRIORITIZE_TEST_HOLD=str(held),
            )
            await victim.wait_for_output(" started: 8 slots")
            handles = await enqueue_many(jobs, "work", [[i] for i in range(5000)])
            await wait_until(lambda: len(list(held.iterdir())) == 8, "the victim to hold 8 jobs")
            start(APP, *options, "--log-level=warning", PRIORITIZE_TEST_BROKER=broker_url)
            await wait_until(
                lambda: succeeded(jobs, 100), "another worker to run jobs", asynchronous=True
            )
            victim.signal(signal.SIGKILL)  # mid-job, while the other one works
            assert victim.wait() == -signal.SIGKILL
            start(APP, *options, "--log-level=warning", PRIORITIZE_TEST_BROKER=broker_url)
            await wait_until(
                lambda: succeeded(jobs, 5000), "every job to succeed", asynchronous=True
            )
            stored = await read_many(handles)
            assert sum(job.state is JobState.SUCCEEDED for job in stored) == 5000
            results = [jobs.serializer.loads(job.result or b"null") for job in stored]
            assert results == [2 * i for i in range(5000)]
            killed_mid_job = sorted(
                int(marker.name.removeprefix("held-")) for marker in held.iterdir()
            )
            assert len(killed_mid_job) == 8
            for i in killed_mid_job:  # leased by the victim, then redelivered
                assert stored[i].attempts == 2, stored[i]
            stats = await jobs.stats()
            assert (stats.total("queued"), stats.total("running"), stats.total("dead")) == (0, 0, 0)
        await jobs.close()

    asyncio.run(main())


async def enqueue_many(
    jobs: JobQueue, task: str, calls: list[list[object]]
) -> list[JobHandle[Any]]:
    """Enqueue concurrently, 50 at a time: a broker batches what arrives together."""
    handles: list[JobHandle[Any]] = []
    for first in range(0, len(calls), 50):
        chunk = calls[first : first + 50]
        handles += await asyncio.gather(*(jobs.enqueue(task, args) for args in chunk))
    return handles


async def read_many(handles: list[JobHandle[Any]]) -> list[Job]:
    """Every job as stored, read 50 at a time."""
    jobs: list[Job] = []
    for first in range(0, len(handles), 50):
        jobs += await asyncio.gather(*(handle.job() for handle in handles[first : first + 50]))
    return jobs


async def succeeded(jobs: JobQueue, least: int) -> bool:
    return (await jobs.stats()).total("succeeded") >= least


def test_poison_job_goes_to_dead_letter_while_the_rest_succeed(
    broker_url: str, tmp_path: Path
) -> None:
    async def main() -> None:
        jobs = fault.build(broker_url)
        poison = await jobs.tasks["poison"].enqueue()
        handles = [await jobs.enqueue("work", [i]) for i in range(300)]
        with worker_processes(tmp_path) as start:
            workers = [
                start(APP, "--concurrency=4", PRIORITIZE_TEST_BROKER=broker_url) for _ in range(2)
            ]
            with pytest.raises(TaskFailed, match=r"failed after 3 run\(s\): RuntimeError: poison"):
                await poison.result(HANG)
            assert [await h.result(HANG) for h in handles] == [2 * i for i in range(300)]
            assert [worker.stop() for worker in workers] == [0, 0]
        job = await poison.job()
        assert (job.state, job.attempts) == (JobState.DEAD, 3)
        assert job.error == "RuntimeError: poison: fails every time"
        assert job.traceback is not None
        assert "in poison" in job.traceback
        assert [dead.id for dead in await jobs.dead()] == [poison.id]
        logs = "".join(worker.output() for worker in workers)
        assert "failed on attempt 3 of 3, no retries left; moved to dead letter" in logs
        await jobs.close()

    asyncio.run(main())


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one instant (one ending as another starts: not both)."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def test_global_wip_limits_hold_across_worker_processes(broker_url: str, tmp_path: Path) -> None:
    spans_dir = tmp_path / "spans"
    spans_dir.mkdir()
    counts = {"critical": 120, "high": 60, "low": 30}

    async def main() -> None:
        jobs = wip.build(broker_url)
        with worker_processes(tmp_path) as start:
            workers = [
                start(
                    WIP_APP,
                    "--concurrency=8",
                    PRIORITIZE_TEST_BROKER=broker_url,
                    PRIORITIZE_TEST_SPANS=str(spans_dir),
                )
                for _ in range(3)
            ]
            for worker in workers:  # all three take jobs from the first one enqueued
                await worker.wait_for_output(" started: 8 slots")
            handles = [
                await jobs.enqueue("timed", [0.04], level=level)
                for level, n in counts.items()
                for _ in range(n)
            ]
            for handle in handles:
                await handle.result(HANG)
            assert [worker.stop() for worker in workers] == [0, 0, 0]
        await jobs.close()

    asyncio.run(main())
    by_level: dict[str, list[tuple[float, float]]] = defaultdict(list)
    every: list[tuple[float, float]] = []
    files = list(spans_dir.iterdir())
    assert len(files) >= 2  # 12 seats need two processes of 8 slots: they shared the limits
    for spans in files:
        mine = []
        for line in spans.read_text().splitlines():
            level, start, end = line.split()
            by_level[level].append((float(start), float(end)))
            mine.append((float(start), float(end)))
        every += mine
        assert max_overlap(mine) <= 8  # no process runs more than its slots
    assert {level: len(spans) for level, spans in by_level.items()} == counts
    overlap = {level: max_overlap(spans) for level, spans in by_level.items()}
    assert overlap == wip.MAX  # never above each level's max, and the max was reached
    assert max_overlap(every) <= wip.WIP.capacity


def test_max_overlap_counts_spans_open_together() -> None:
    assert max_overlap([(0, 2), (1, 3), (2, 4)]) == 2
    assert max_overlap([(0, 1), (1, 2)]) == 1
    assert max_overlap([]) == 0
