"""The job worker in one process: results, retries, timeouts, no prefetch, order, shutdown.

Tests that matter on every broker run on memory, SQLite and Redis, each
test on a fresh store. Jobs that must be held (to look at the broker while
they run) wait on an event the test sets; the test learns that a job
started from a queue the job writes to, never by sleeping.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import logging
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from prioritize import current_level
from prioritize.cli.worker import JsonFormatter
from prioritize.jobs import Broker, Job, JobQueue, JobState, MemoryBroker, RetryPolicy, TaskFailed
from prioritize.jobs.metrics import QueueMetrics, WorkerMetrics, register_worker
from prioritize.jobs.worker import Worker
from tests.jobs.conftest import ManualClock

#: a guard against a hang, never a bound on how fast anything must be
HANG = 30.0
BROKER_KINDS = ["memory", "sqlite", "redis"]
_names = iter(range(1_000_000))


@pytest.fixture(params=BROKER_KINDS)
def make_queue(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., JobQueue]:
    """A function making a JobQueue on a fresh store of this run's broker, in real time."""
    kind = request.param
    url = request.getfixturevalue("redis_url") if kind == "redis" else ""
    queue_name = f"worker-{next(_names)}-{time.time_ns()}"

    def make(**options: Any) -> JobQueue:
        broker: Broker
        if kind == "memory":
            broker = MemoryBroker()
        elif kind == "sqlite":
            from prioritize.jobs.brokers.sqlite import SQLiteBroker

            broker = SQLiteBroker(tmp_path / "jobs.db")
        else:
            from prioritize.jobs.brokers.redis import RedisBroker

            broker = RedisBroker.from_url(url, queue=queue_name)
        return JobQueue(broker, **options)

    return make


def memory_queue(**options: Any) -> JobQueue:
    return JobQueue(MemoryBroker(), **options)


async def wait_for(awaitable: Any) -> Any:
    return await asyncio.wait_for(awaitable, HANG)


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    """The worker running in the background; stopped (gracefully) and awaited on leaving."""
    task = asyncio.create_task(worker.run())
    try:
        yield task
    finally:
        worker.stop()
        await wait_for(task)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


# -- results, retries, timeouts ------------------------------------------------------


def test_results_of_async_and_sync_tasks_are_stored(make_queue: Callable[..., JobQueue]) -> None:
    async def main() -> None:
        jobs = make_queue()

        @jobs.task
        async def add(a: int, b: int) -> int:
            return a + b

        @jobs.task
        def shout(word: str) -> dict[str, str]:
            return {"word": word.upper()}

        sums = [await add.enqueue(i, i) for i in range(20)]
        loud = await shout.enqueue("hi")
        worker = Worker(jobs, concurrency=4)
        await worker.run_until_idle()
        assert [await h.result(HANG) for h in sums] == [2 * i for i in range(20)]
        assert await loud.result(HANG) == {"word": "HI"}
        assert (await loud.job()).attempts == 1
        stats = worker.stats
        assert stats.processed == {"succeeded": 21, "failed": 0, "dead": 0, "released": 0}
        assert stats.running == 0
        await jobs.close()

    run(main())


def test_failing_job_backs_off_between_retries_then_goes_to_dead_letter(
    make_queue: Callable[..., JobQueue],
) -> None:
    async def main() -> None:
        jobs = make_queue()
        runs: list[float] = []

        @jobs.task(retry=RetryPolicy(retries=2, base=0.05, factor=2, jitter="none"))
        async def flaky() -> None:
            runs.append(time.time())
            raise ValueError(f"run {len(runs)} failed")

        handle = await flaky.enqueue()
        worker = Worker(jobs, concurrency=2)
        await worker.run_until_idle()
        job = await handle.job()
        assert job.state is JobState.DEAD
        assert job.attempts == 3
        assert job.error == "ValueError: run 3 failed"
        assert job.traceback is not None
        assert "in flaky" in job.traceback
        assert (await jobs.dead())[0].id == handle.id
        # retry n waits base * factor**(n-1) at least: a broker never runs it before retry_at
        assert runs[1] - runs[0] >= 0.05
        assert runs[2] - runs[1] >= 0.1
        assert worker.stats.processed == {"succeeded": 0, "failed": 2, "dead": 1, "released": 0}
        with pytest.raises(TaskFailed, match=r"failed after 3 run\(s\): ValueError: run 3 failed"):
            await handle.result(HANG)
        await jobs.close()

    run(main())


def test_job_failing_once_succeeds_on_its_retry() -> None:
    async def main() -> None:
        jobs = memory_queue()
        calls: list[int] = []

        @jobs.task(retry=RetryPolicy(retries=3, base=0.01))
        def once() -> str:
            calls.append(1)
            if len(calls) == 1:
                raise ConnectionError("downstream blinked")
            return "ok"

        handle = await once.enqueue()
        await Worker(jobs).run_until_idle()
        job = await handle.job()
        assert (job.state, job.attempts, await handle.result(HANG)) == (JobState.SUCCEEDED, 2, "ok")

    run(main())


def test_a_job_enqueued_by_name_fails_by_its_tasks_retry_policy_unless_one_was_given() -> None:
    """The enqueuer knew only the name: the worker, which knows the task, applies its policy."""

    async def main() -> None:
        broker = MemoryBroker()
        producer = JobQueue(broker)  # no tasks: enqueues by name only
        jobs = JobQueue(broker)
        runs: list[int] = []

        @jobs.task(name="fragile", retry=RetryPolicy(retries=0))
        async def fragile() -> None:
            runs.append(1)
            raise ValueError("broken")

        by_name = await producer.enqueue("fragile")
        given = await producer.enqueue("fragile", retries=1)
        job = await by_name.job()
        assert (job.retry.retries, job.retry_chosen) == (3, False)  # the default, not chosen
        await Worker(jobs).run_until_idle()
        assert ((await by_name.job()).state, (await by_name.job()).attempts) == (JobState.DEAD, 1)
        assert ((await given.job()).state, (await given.job()).attempts) == (JobState.DEAD, 2)
        assert len(runs) == 3
        await jobs.close()

    run(main())


def test_async_job_is_cancelled_at_its_timeout(make_queue: Callable[..., JobQueue]) -> None:
    async def main() -> None:
        jobs = make_queue()
        cancelled = asyncio.Event()

        @jobs.task(timeout=0.2, retries=0)
        async def stuck() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        handle = await stuck.enqueue()
        await Worker(jobs).run_until_idle()
        job = await handle.job()
        assert cancelled.is_set()
        assert (job.state, job.error) == (JobState.DEAD, "TimeoutError: ran longer than 0.2 s")
        assert job.traceback is not None
        assert "in stuck" in job.traceback  # where it was when cancelled
        await jobs.close()

    run(main())


def test_sync_job_past_its_timeout_is_reported_but_keeps_its_slot_until_its_thread_returns() -> (
    None
):
    async def main() -> None:
        jobs = memory_queue()
        release = threading.Event()

        @jobs.task(timeout=0.2, retries=0)
        def hang() -> str:
            release.wait(HANG)
            return "late"

        @jobs.task
        async def after() -> str:
            return "ran"

        hung = await hang.enqueue()
        queued = await after.enqueue()
        worker = Worker(jobs, concurrency=1)
        async with running(worker):
            with pytest.raises(TaskFailed):
                await hung.result(HANG)
            job = await hung.job()
            assert job.error == "TimeoutError: ran longer than 0.2 s"
            assert job.traceback is not None
            assert "Stack of the thread at the timeout" in job.traceback
            assert "in hang" in job.traceback
            # the thread still runs: the one slot stays busy, the next job waits
            assert worker.stats.running == 1
            assert await queued.status() is JobState.QUEUED
            release.set()
            assert await queued.result(HANG) == "ran"
        assert (await hung.job()).state is JobState.DEAD  # the late result changes nothing

    run(main())


# -- no prefetch, priority order, level context, threads ------------------------------


class LeaseSpy:
    """The broker as is, noting each reservation's ``limit`` and the leases held after it."""

    def __init__(self, inner: Broker) -> None:
        self.inner = inner
        self.limits: list[int] = []
        self.held: list[tuple[int, int]] = []  # (running, queued) after each reserve

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def reserve(self, worker: str, limit: int, **options: Any) -> list[Job]:
        self.limits.append(limit)
        jobs = await self.inner.reserve(worker, limit, **options)
        stats = await self.inner.stats()
        self.held.append((int(stats.total("running")), int(stats.total("queued"))))
        return jobs


def test_worker_never_holds_more_leases_than_its_free_slots(
    make_queue: Callable[..., JobQueue],
) -> None:
    async def main() -> None:
        spied = make_queue()
        spy = LeaseSpy(spied.broker)
        jobs = JobQueue(spy, policy=spied.gate_policy)  # type: ignore[arg-type]
        started: asyncio.Queue[int] = asyncio.Queue()
        gates = [asyncio.Event() for _ in range(10)]

        @jobs.task
        async def hold(i: int) -> int:
            started.put_nowait(i)
            await gates[i].wait()
            return i

        handles = [await hold.enqueue(i) for i in range(10)]
        async with running(Worker(jobs, concurrency=2)):
            first = {await wait_for(started.get()), await wait_for(started.get())}
            stats = await jobs.stats()
            assert (stats.total("running"), stats.total("queued")) == (2, 8)
            for i in range(10):  # finish them one by one, in whatever order they started
                if i not in first:
                    first.add(await wait_for(started.get()))
                gates[i].set()
                stats = await jobs.stats()
                assert stats.total("running") <= 2
            assert [await h.result(HANG) for h in handles] == list(range(10))
        assert max(running for running, _ in spy.held) == 2
        assert all(limit <= 2 for limit in spy.limits)
        # the worker asked while jobs were queued, so a broker would have given it more
        assert any(queued > 0 and running == 2 for running, queued in spy.held)
        await spy.inner.close()

    run(main())


def test_critical_job_enqueued_behind_many_low_ones_is_next_to_start(
    make_queue: Callable[..., JobQueue],
) -> None:
    async def main() -> None:
        jobs = make_queue()
        started: asyncio.Queue[str] = asyncio.Queue()
        release = asyncio.Event()

        @jobs.task
        async def work(name: str) -> None:
            started.put_nowait(name)
            if name == "first":
                await release.wait()

        await work.enqueue("first", level="low")
        async with running(Worker(jobs, concurrency=1)):
            assert await wait_for(started.get()) == "first"
            for i in range(20):
                await work.enqueue(f"low-{i}", level="low")
            await work.enqueue("urgent", level="critical")
            release.set()
            assert await wait_for(started.get()) == "urgent"
            assert [await wait_for(started.get()) for _ in range(20)] == [
                f"low-{i}" for i in range(20)
            ]
        await jobs.close()

    run(main())


def test_level_of_the_job_is_the_current_level_inside_async_and_sync_tasks() -> None:
    async def main() -> None:
        jobs = memory_queue()

        @jobs.task
        async def async_level() -> str | None:
            level = current_level()
            return None if level is None else level.name

        @jobs.task
        def sync_level() -> list[str | None]:
            level = current_level()
            return [None if level is None else level.name, threading.current_thread().name]

        a = await async_level.enqueue(level="high")
        s = await sync_level.enqueue(level="bulk")
        await Worker(jobs).run_until_idle()
        assert await a.result(HANG) == "high"
        level, thread = await s.result(HANG)
        assert level == "bulk"
        assert thread.startswith("prioritize-job")
        assert current_level() is None  # nothing leaks out of the jobs

    run(main())


def test_dedicated_worker_takes_only_its_levels_and_is_idle_without_them() -> None:
    async def main() -> None:
        jobs = memory_queue()

        @jobs.task
        async def level_name() -> str | None:
            level = current_level()
            return None if level is None else level.name

        urgent = await level_name.enqueue(level="critical")
        later = await level_name.enqueue(level="bulk")
        await Worker(jobs, levels=["critical", "high"]).run_until_idle()
        assert await urgent.result(0) == "critical"
        assert await later.status() is JobState.QUEUED  # not its level: left for another worker
        await Worker(jobs, levels=["bulk"]).run_until_idle()
        assert await later.result(0) == "bulk"

    run(main())


def test_sync_tasks_run_on_threads_at_once_up_to_concurrency() -> None:
    async def main() -> None:
        jobs = memory_queue()
        barrier = threading.Barrier(3, timeout=HANG)  # broken unless three run together

        @jobs.task
        def meet(i: int) -> int:
            barrier.wait()
            return i

        handles = [await meet.enqueue(i) for i in range(3)]
        await Worker(jobs, concurrency=3).run_until_idle()
        assert [await h.result(HANG) for h in handles] == [0, 1, 2]

    run(main())


# -- shutting down -----------------------------------------------------------------


def test_stop_waits_for_running_jobs_within_grace() -> None:
    async def main() -> None:
        jobs = memory_queue()
        started, release = asyncio.Event(), asyncio.Event()

        @jobs.task
        async def slow() -> str:
            started.set()
            await release.wait()
            return "done"

        handle = await slow.enqueue()
        worker = Worker(jobs, grace=HANG)
        task = asyncio.create_task(worker.run())
        await wait_for(started.wait())
        worker.stop()
        release.set()
        await wait_for(task)
        assert await handle.result(0) == "done"
        assert worker.stats.processed["released"] == 0

    run(main())


def test_graceful_stop_releases_jobs_still_running_after_grace_and_they_run_later(
    make_queue: Callable[..., JobQueue],
) -> None:
    async def main() -> None:
        jobs = make_queue()
        started: asyncio.Queue[int] = asyncio.Queue()
        release = asyncio.Event()

        @jobs.task
        async def hold(i: int) -> int:
            started.put_nowait(i)
            await release.wait()
            return i

        handles = [await hold.enqueue(i) for i in range(3)]
        first = Worker(jobs, concurrency=2, grace=0.05)
        async with running(first):
            await wait_for(started.get())
            await wait_for(started.get())
        assert first.stats.processed["released"] == 2
        for handle in handles:
            job = await handle.job()
            assert (job.state, job.attempts) == (JobState.QUEUED, 0)  # the run is not counted
        release.set()
        await Worker(jobs, concurrency=2).run_until_idle()
        for i, handle in enumerate(handles):
            assert await handle.result(HANG) == i
            assert (await handle.job()).attempts == 1
        await jobs.close()

    run(main())


def test_immediate_stop_releases_running_jobs_without_waiting_for_grace() -> None:
    async def main() -> None:
        jobs = memory_queue()
        started = asyncio.Event()

        @jobs.task
        async def forever() -> None:
            started.set()
            await asyncio.Event().wait()

        handle = await forever.enqueue()
        worker = Worker(jobs, grace=3600)
        task = asyncio.create_task(worker.run())
        await wait_for(started.wait())
        worker.stop()
        worker.stop(immediate=True)
        await wait_for(task)
        assert await handle.status() is JobState.QUEUED

    run(main())


def test_stop_from_another_thread_ends_run() -> None:
    async def main() -> None:
        jobs = memory_queue()
        worker = Worker(jobs)

        @jobs.task
        def stop_it() -> str:
            threading.Thread(target=worker.stop).start()
            return "stopping"

        handle = await stop_it.enqueue()
        await wait_for(worker.run())
        assert await handle.result(0) == "stopping"

    run(main())


def test_a_worker_stopped_before_it_runs_returns_at_once_and_may_run_again() -> None:
    async def main() -> None:
        jobs = memory_queue()

        @jobs.task
        async def noop() -> None:
            return None

        handle = await noop.enqueue()
        worker = Worker(jobs)
        worker.stop()
        await wait_for(worker.run())
        assert await handle.status() is JobState.QUEUED
        await worker.run_until_idle()
        assert await handle.status() is JobState.SUCCEEDED

    run(main())


def test_running_a_worker_twice_at_once_is_refused() -> None:
    async def main() -> None:
        jobs = memory_queue()
        started = asyncio.Event()

        @jobs.task
        async def hold() -> None:
            started.set()
            await asyncio.Event().wait()

        await hold.enqueue()
        worker = Worker(jobs, name="w-1", grace=0)
        async with running(worker):
            await wait_for(started.wait())
            with pytest.raises(RuntimeError, match=r"^worker w-1 is running already$"):
                await worker.run()

    run(main())


# -- broker trouble ------------------------------------------------------------------


class Flaky:
    """The broker as is, but its first calls of some methods raise ConnectionError.

    Only for this unit test of the worker's retry loop: the fault tests
    (test_worker_fault.py) break real brokers and real processes instead.
    """

    def __init__(self, inner: Broker, failures: dict[str, int]) -> None:
        self.inner = inner
        self.failures = dict(failures)
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if name not in self.failures:
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            if self.failures[name] > 0 and (name != "reserve" or kwargs.get("finished")):
                self.failures[name] -= 1
                raise ConnectionError(f"{name}: connection reset (test)")
            return await method(*args, **kwargs)

        return call


def test_broker_errors_are_logged_and_retried_without_losing_outcomes(
    make_queue: Callable[..., JobQueue], caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        real = make_queue()
        flaky = Flaky(real.broker, {"reserve": 3, "wait_for_work": 1, "stats": 1})
        jobs = JobQueue(flaky, policy=real.gate_policy)  # type: ignore[arg-type]

        @jobs.task
        async def double(i: int) -> int:
            return 2 * i

        handles = [await double.enqueue(i) for i in range(30)]
        handles.append(await double.enqueue(30, delay=0.05))  # so the worker waits for work
        with caplog.at_level(logging.WARNING, "prioritize.jobs.worker"):
            await Worker(jobs, concurrency=3).run_until_idle()
        for i, handle in enumerate(handles):
            assert await handle.result(HANG) == 2 * i
            assert (await handle.job()).attempts == 1  # outcomes kept and sent again: no rerun
        assert flaky.failures == {"reserve": 0, "wait_for_work": 0, "stats": 0}
        messages = [r.getMessage() for r in caplog.records]
        assert any(m.startswith("broker reserve failed (3 in a row);") for m in messages)
        await real.broker.close()

    run(main())


class SlowToCancel:
    """The broker as is, but a cancelled ``wait_for_work`` first waits out its timeout.

    As a broker's wait does when a cancellation arrives in a race it loses
    (asyncio.wait_for on Python 3.11 can swallow one).
    """

    def __init__(self, inner: Broker) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def wait_for_work(self, timeout: float) -> None:
        try:
            await self.inner.wait_for_work(timeout)
        except asyncio.CancelledError:
            await self.inner.wait_for_work(timeout)


def test_a_broker_wait_slow_to_cancel_does_not_hold_up_the_acks() -> None:
    async def main() -> None:
        inner = MemoryBroker()
        jobs = JobQueue(SlowToCancel(inner))  # type: ignore[arg-type]

        @jobs.task
        async def quick() -> str:
            return "done"

        handle = await quick.enqueue()
        worker = Worker(jobs, lease=3600, idle_wait=3600)
        await asyncio.wait_for(worker.run_until_idle(), HANG)  # not 3600 s
        assert await handle.result(0) == "done"

    run(main())


def test_lost_lease_is_logged_and_its_late_outcome_ignored(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        jobs = JobQueue(MemoryBroker(clock=clock))
        started, release, lost = asyncio.Event(), asyncio.Event(), asyncio.Event()

        @jobs.task
        async def slow() -> str:
            started.set()
            await release.wait()
            return "late"

        class Notice(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if "lease lost" in record.getMessage():
                    lost.set()

        handler = Notice()
        logging.getLogger("prioritize.jobs.worker").addHandler(handler)
        handle = await slow.enqueue()
        worker = Worker(jobs, concurrency=1, lease=10, heartbeat=0.02)
        try:
            async with running(worker):
                await wait_for(started.wait())
                clock.advance(11)  # the lease runs out; another worker takes the job
                (again,) = await jobs.broker.reserve("other", 1, lease=60)
                assert (again.id, again.attempts) == (handle.id, 2)
                await wait_for(lost.wait())
                release.set()
        finally:
            logging.getLogger("prioritize.jobs.worker").removeHandler(handler)
        job = await handle.job()
        assert (job.state, job.worker, job.attempts) == (JobState.RUNNING, "other", 2)
        assert worker.stats.processed["succeeded"] == 1

    with caplog.at_level(logging.WARNING, "prioritize.jobs.worker"):
        run(main())
    assert any(
        r.getMessage().endswith(
            "lease lost; it runs again elsewhere and this run's outcome will be ignored"
        )
        for r in caplog.records
    )


# -- jobs no retry can mend ------------------------------------------------------------


def test_unknown_task_goes_to_dead_letter_naming_the_registered_ones() -> None:
    async def main() -> None:
        jobs = memory_queue()

        @jobs.task(name="known")
        async def known() -> None:
            return None

        handle = await jobs.enqueue("unknown.task", retries=5)
        await Worker(jobs).run_until_idle()
        job = await handle.job()
        assert (job.state, job.attempts) == (JobState.DEAD, 1)
        assert job.error == (
            "UnknownTask: no task named 'unknown.task' is registered on this worker's queue "
            "(registered: known); deploy the code that defines it, then requeue the job from "
            "the dead-letter set"
        )

    run(main())


def test_payload_that_is_not_args_and_kwargs_goes_to_dead_letter() -> None:
    async def main() -> None:
        jobs = memory_queue()

        @jobs.task(name="takes")
        async def takes(x: int) -> int:
            return x

        job = takes.build((1,), {}).evolve(payload=b'{"x": 1}')
        await jobs.broker.enqueue(job)
        await Worker(jobs).run_until_idle()
        stored = await jobs.broker.get(job.id)
        assert stored is not None
        assert (stored.state, stored.attempts) == (JobState.DEAD, 1)
        assert stored.error == (
            f"SerializationError: job {job.id} (takes): its payload reads as dict, "
            "not [args, kwargs]; was it enqueued with another serializer?"
        )

    run(main())


def test_result_the_serializer_cannot_write_goes_to_dead_letter_without_retrying() -> None:
    async def main() -> None:
        jobs = memory_queue()

        @jobs.task(retries=3)
        async def returns_a_set() -> set[int]:
            return {1}

        handle = await returns_a_set.enqueue()
        await Worker(jobs).run_until_idle()
        job = await handle.job()
        assert (job.state, job.attempts) == (JobState.DEAD, 1)
        assert job.error is not None
        assert job.error.startswith("SerializationError: value = {1} is a set, which JSON")

    run(main())


def test_run_until_idle_waits_for_delayed_jobs() -> None:
    async def main() -> None:
        jobs = memory_queue()

        @jobs.task
        async def later() -> str:
            return "ran"

        handle = await later.enqueue(delay=0.1)
        await Worker(jobs).run_until_idle()
        assert await handle.result(0) == "ran"

    run(main())


# -- logs and metrics ------------------------------------------------------------------


@contextmanager
def json_log() -> Iterator[io.StringIO]:
    """The worker's log records, every level, formatted by the CLI's JSON formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("prioritize.jobs.worker")
    before = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        log.removeHandler(handler)
        log.setLevel(before)


def test_log_lines_are_json_objects_with_the_job_fields() -> None:
    async def main() -> dict[str, str]:
        jobs = memory_queue()

        @jobs.task(name="ok")
        async def ok() -> int:
            return 1

        @jobs.task(name="bad", retry=RetryPolicy(retries=1, base=0.01))
        async def bad() -> None:
            raise KeyError("missing")

        ids = {"ok": (await ok.enqueue(level="high")).id, "bad": (await bad.enqueue()).id}
        await Worker(jobs).run_until_idle()
        return ids

    with json_log() as stream:
        ids = run(main())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    by_job = [line for line in lines if "job_id" in line]
    started = [x for x in by_job if x["log_level"] == "debug" and x["job_id"] == ids["ok"]]
    assert started[0]["message"].endswith("started, attempt 1")
    (succeeded,) = [x for x in by_job if x["log_level"] == "info" and x["job_id"] == ids["ok"]]
    assert (succeeded["task"], succeeded["level"], succeeded["attempt"]) == ("ok", "high", 1)
    assert succeeded["duration"] >= 0
    assert succeeded["logger"] == "prioritize.jobs.worker"
    assert "time" in succeeded
    (failed,) = [x for x in by_job if x["log_level"] == "warning"]
    assert (failed["job_id"], failed["attempt"], failed["error"]) == (
        ids["bad"],
        1,
        "KeyError: 'missing'",
    )
    assert failed["retry_in"] >= 0
    (dead,) = [x for x in by_job if x["log_level"] == "error"]
    assert (dead["job_id"], dead["attempt"], dead["level"]) == (ids["bad"], 2, "normal")
    assert "no retries left; moved to dead letter" in dead["message"]


def test_json_formatter_keeps_exceptions_and_extra_fields() -> None:
    formatter = JsonFormatter()
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.getLogger("x").makeRecord(
            "x",
            logging.ERROR,
            "f.py",
            1,
            "it %s",
            ("broke",),
            exc_info=sys.exc_info(),
            extra={"job_id": "j"},
        )
    line = json.loads(formatter.format(record))
    assert (line["message"], line["log_level"], line["job_id"]) == ("it broke", "error", "j")
    assert "RuntimeError: boom" in line["exception"]


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_exposition_of_the_worker_and_the_queue() -> None:
    registry = CollectorRegistry()

    async def main() -> Worker:
        jobs = memory_queue()

        @jobs.task(name="ok", level="high")
        async def ok() -> None:
            return None

        @jobs.task(name="fails", retries=0)
        async def fails() -> None:
            raise OSError("disk")

        for _ in range(3):
            await ok.enqueue()
        await fails.enqueue()
        worker = Worker(jobs, concurrency=4)
        register_worker(worker, registry)
        await worker.run_until_idle()
        return worker

    worker = run(main())
    got = samples(registry)
    processed = "prioritize_jobs_processed_total"
    key = (("gate", "jobs"), ("level", "high"), ("outcome", "succeeded"), ("task", "ok"))
    assert got[(processed, key)] == 3
    key = (("gate", "jobs"), ("level", "normal"), ("outcome", "dead"), ("task", "fails"))
    assert got[(processed, key)] == 1
    key = (("gate", "jobs"), ("level", "high"), ("outcome", "failed"), ("task", "ok"))
    assert got[(processed, key)] == 0  # series exist from the start
    high = (("gate", "jobs"), ("level", "high"))
    assert got[("prioritize_job_run_seconds_count", high)] == 3
    assert got[("prioritize_job_run_seconds_bucket", (*high[:1], ("le", "+Inf"), high[1]))] == 3
    assert got[("prioritize_jobs_running", high)] == 0
    assert got[("prioritize_worker_slots", (("gate", "jobs"),))] == 4
    # the queue as sampled when the worker started: four jobs queued
    queued = (("gate", "jobs"), ("level", "high"), ("state", "queued"))
    assert got[("prioritize_jobs", queued)] == 3
    assert ("prioritize_jobs_oldest_wait_seconds", high) in got
    assert got[("prioritize_jobs_sampled_timestamp_seconds", (("gate", "jobs"),))] > 0
    assert worker.stats.queue is not None


def test_second_collector_in_one_registry_is_refused() -> None:
    registry = CollectorRegistry()
    worker = Worker(memory_queue())
    WorkerMetrics(worker, registry)
    QueueMetrics(worker, registry)
    with pytest.raises(ValueError, match=r"^this registry already exports a job worker's metrics"):
        WorkerMetrics(worker, registry)
    with pytest.raises(ValueError, match=r"^this registry already exports a job queue's metrics"):
        QueueMetrics(worker, registry)


def test_metrics_module_names_the_extra_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "prioritize.jobs.metrics")
    with pytest.raises(ImportError) as caught:
        importlib.import_module("prioritize.jobs.metrics")
    assert str(caught.value) == (
        "prioritize.jobs.metrics needs prometheus-client; install it with "
        "pip install 'prioritize[metrics]'"
    )


# -- settings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency = 0: expected a whole number ≥ 1"),
        ({"concurrency": True}, "concurrency = True: expected a whole number ≥ 1"),
        ({"lease": 0}, "lease = 0: expected a finite number of seconds > 0"),
        ({"lease": float("inf")}, "lease = inf: expected a finite number of seconds > 0"),
        ({"heartbeat": -1}, "heartbeat = -1: expected a finite number of seconds > 0"),
        (
            {"lease": 10, "heartbeat": 10},
            "heartbeat = 10: expected fewer seconds than the lease (10), "
            "or the lease runs out between two renewals",
        ),
        ({"grace": -1}, "grace = -1: expected a finite number of seconds ≥ 0"),
        ({"idle_wait": 0}, "idle_wait = 0: expected a finite number of seconds > 0"),
        ({"stats_interval": 0}, "stats_interval = 0: expected a finite number of seconds > 0"),
        (
            {"levels": ["critical", "urgent"]},
            "levels = ['critical', 'urgent']: unknown level(s) 'urgent'; the queue's levels "
            "are critical, high, normal, low, bulk",
        ),
        (
            {"levels": []},
            "levels = []: no level; the queue's levels are critical, high, normal, low, bulk",
        ),
    ],
)
def test_bad_settings_are_refused_naming_the_value(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=r"^\w+ = ") as caught:
        Worker(memory_queue(), **options)
    assert str(caught.value) == message


def test_worker_takes_a_job_queue() -> None:
    with pytest.raises(TypeError, match=r"^queue = 'jobs': expected a JobQueue$"):
        Worker("jobs")  # type: ignore[arg-type]


def test_defaults_and_repr() -> None:
    worker = Worker(memory_queue(), lease=9, levels="high")
    assert worker.heartbeat == 3
    assert worker.levels == ["high"]
    assert worker.name.count(":") == 2
    assert repr(worker) == f"<Worker {worker.name} idle, 0/10 slots busy, 0 runs ended>"


def test_the_back_off_after_broker_failures_stays_bounded_however_long_the_outage() -> None:
    from prioritize.jobs._broker_retry import BACKOFF_FIRST, BACKOFF_MAX, backoff_delay

    assert backoff_delay(1) == BACKOFF_FIRST
    assert backoff_delay(2) == 2 * BACKOFF_FIRST
    assert backoff_delay(5_000) == BACKOFF_MAX  # an hour of failures: no OverflowError
