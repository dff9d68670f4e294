"""prioritize's side of bench/jobs.py: one measurement per run, its figures as JSON on stdout.

Run by the project's own Python, with the same method (common.py) as the
baselines' drivers. ``--variant`` picks the broker: ``redis`` (the run's
Redis server, db 0) or ``sqlite`` (a fresh file under ``--dir``).

Enqueue ``one`` is the normal API, ``await task.enqueue(level=...)`` one
job at a time; ``bulk`` builds the jobs with ``task.build`` and stores
them with ``broker.enqueue_many``, BATCH per call (absent: the figure is
left out). Workers: ``prioritize worker prioritize_tasks:queue
--concurrency 16``. Finished jobs are counted from ``queue.stats()``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import prioritize_tasks

from prioritize.jobs import JobHandle, JobState

HERE = Path(__file__).resolve().parent
BATCH = 1000
CONCURRENCY = 16


class Driver:
    """One measurement's queue, on an event loop the sync helpers of common.py drive."""

    def __init__(self, args: Any) -> None:
        self.args = args
        self.directory: str | None = None
        if args.variant == "redis":
            self.url = args.redis.rstrip("/") + "/0"
        else:
            self.directory = tempfile.mkdtemp(prefix="bench-jobs-", dir=args.dir)
            self.url = f"sqlite:///{self.directory}/jobs.db"
        self.queue = prioritize_tasks.make_queue(self.url)
        self.tasks = self.queue.tasks
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.queue.close())
        self.loop.close()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    # -- enqueue -------------------------------------------------------------------

    async def enqueue_one(self, n: int) -> float:
        noop = self.tasks["noop"]
        started = time.perf_counter()
        for i in range(n):
            await noop.enqueue(level=common.level_of(i))
        return time.perf_counter() - started

    async def enqueue_bulk(
        self, n: int, task: str = "noop", args: Any = None, level: Any = None
    ) -> float:
        enqueue_many = getattr(self.queue.broker, "enqueue_many", None)
        if enqueue_many is None:
            raise LookupError(f"{type(self.queue.broker).__name__} has no enqueue_many")
        build = self.tasks[task].build
        started = time.perf_counter()
        for lo in range(0, n, BATCH):
            jobs = [
                build(args(i) if args else (), {}, level=level or common.level_of(i))
                for i in range(lo, min(n, lo + BATCH))
            ]
            await enqueue_many(jobs)
        return time.perf_counter() - started

    def producer(self) -> Any:
        """In a forked producer process: a queue and a loop of its own, and what enqueues."""
        queue = prioritize_tasks.make_queue(self.url)
        noop = queue.tasks["noop"]
        loop = asyncio.new_event_loop()

        async def enqueue(first: int, count: int) -> None:
            for i in range(first, first + count):
                await noop.enqueue(level=common.level_of(i))

        return lambda first, count: loop.run_until_complete(enqueue(first, count))

    # -- reading --------------------------------------------------------------------

    def total(self, name: str) -> int:
        return int(self.run(self.queue.stats()).total(name))

    def result(self, handle: JobHandle[Any]) -> Any:
        job = self.run(self.queue.broker.get(handle.id))
        if job is None or job.state is not JobState.SUCCEEDED:
            if job is not None and job.is_finished:
                raise RuntimeError(f"job {job.id}: {job.state.value} {job.error}")
            return None
        return json.loads(job.result or b"null")

    # -- workers --------------------------------------------------------------------

    def start_workers(self, workers: common.Workers) -> None:
        command = str(Path(sys.executable).with_name("prioritize"))
        env = {"BENCH_BROKER": self.url, "PYTHONPATH": str(HERE)}
        for _ in range(self.args.workers):
            workers.start(
                [command, "worker", "prioritize_tasks:queue", "--concurrency", str(CONCURRENCY),
                 "--log-level", "warning"],
                env,
            )  # fmt: skip

    def warm(self, workers: common.Workers) -> int:
        warm = self.tasks["warm"]
        common.warm_up(
            lambda: self.run(warm.enqueue(0.05, level="critical")),
            self.result,
            workers,
            self.args.workers,
            2 * CONCURRENCY * self.args.workers,
        )
        return self.total("succeeded")

    # -- measurements -----------------------------------------------------------------

    def drain(self, workers: common.Workers) -> dict[str, Any]:
        args = self.args
        fill = self.enqueue_one if args.fill == "one" else self.enqueue_bulk
        seconds = self.run(fill(args.n))
        enqueue = {"mode": args.fill, "jobs": args.n, "seconds": seconds, "rate": args.n / seconds}
        self.start_workers(workers)
        first, at_first, end = common.wait_done(lambda: self.total("succeeded"), args.n, workers)
        result: dict[str, Any] = common.drain_rate(args.n, first, at_first, end)
        failed = self.total("failed") + self.total("dead")
        result.update(workers=args.workers, succeeded=self.total("succeeded"), failed=failed)
        return {"enqueue": enqueue, "drain": result}

    def e2e(self, workers: common.Workers) -> dict[str, Any]:
        args = self.args
        self.start_workers(workers)
        before = self.warm(workers)
        if args.producers > 1:
            started, seconds = common.produce(self.producer, args.n, args.producers)
        else:
            started = time.perf_counter()
            seconds = self.run(self.enqueue_one(args.n))
        common.wait_until(
            lambda: self.total("succeeded") - before >= args.n, "all jobs finished", workers
        )
        total = time.perf_counter() - started
        return {
            "e2e": {"jobs": args.n, "seconds": total, "rate": args.n / total,
                    "enqueue_seconds": seconds, "workers": args.workers,
                    "succeeded": self.total("succeeded") - before,
                    "failed": self.total("failed") + self.total("dead")}
        }  # fmt: skip

    def honesty(self, workers: common.Workers) -> dict[str, Any]:
        args = self.args
        self.start_workers(workers)
        self.warm(workers)
        sleeps = common.low_sleeps(args)
        self.run(self.enqueue_bulk(args.low, "sleepy", lambda i: (sleeps[i],), "low"))
        time.sleep(0.1)
        started = self.tasks["started"]
        result = common.critical_waits(
            lambda: self.run(started.enqueue(level="critical")),
            self.result,
            lambda: self.run(self.queue.stats()).levels["low"].queued,
            workers,
            args.critical,
        )
        return {"honesty": {**result, "workers": args.workers, "low": args.low}}


def main() -> None:
    args = common.parse_args(__doc__.splitlines()[0], ["redis", "sqlite"])
    driver = Driver(args)
    if args.variant == "redis":
        from redis import Redis

        Redis.from_url(args.redis).flushall()
    try:
        with common.Workers(args.logs, f"prioritize-{args.variant}-{args.op}") as workers:
            out = getattr(driver, args.op)(workers)
    finally:
        driver.close()
    common.emit({"system": "prioritize", "variant": args.variant, **out})


if __name__ == "__main__":
    main()
