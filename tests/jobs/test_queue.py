"""The job API: tasks, enqueue options, handles, and errors that name the problem."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from prioritize import GatePolicy, LevelPolicy, level_scope, parse_policy
from prioritize.core.levels import DEFAULT_LEVELS
from prioritize.jobs import (
    JobNotFound,
    JobQueue,
    JobState,
    JsonSerializer,
    MemoryBroker,
    Outcome,
    OutcomeKind,
    RetryPolicy,
    SerializationError,
    TaskFailed,
    open_broker,
)
from tests.jobs.conftest import ManualClock


def make_queue(clock: ManualClock | None = None) -> JobQueue:
    return JobQueue(MemoryBroker(clock=clock or ManualClock()))


async def finish(queue: JobQueue, kind: OutcomeKind, **fields: object) -> None:
    (held,) = await queue.broker.reserve("w", 1, lease=60)
    await queue.broker.finish("w", [Outcome(held.id, held.attempts, kind, **fields)])  # type: ignore[arg-type]


def test_a_task_runs_directly_and_is_registered_by_name() -> None:
    jobs = make_queue()

    @jobs.task(level="high", retries=5, timeout=30)
    async def charge(order: str, cents: int) -> dict[str, object]:
        """Charge an order."""
        return {"order": order, "cents": cents}

    assert asyncio.run(charge("o-1", 5)) == {"order": "o-1", "cents": 5}
    name = f"{__name__}.test_a_task_runs_directly_and_is_registered_by_name.<locals>.charge"
    assert jobs.tasks == {name: charge}
    assert (charge.name, charge.level, charge.retry.retries, charge.timeout) == (
        name,
        "high",
        5,
        30,
    )
    assert charge.is_async
    assert charge.__doc__ == "Charge an order."

    @jobs.task
    def plain(x: int) -> int:
        return x

    assert not plain.is_async
    assert plain.retry == RetryPolicy()


def test_enqueue_stores_the_job_with_its_options() -> None:
    clock = ManualClock()
    jobs = make_queue(clock)

    @jobs.task(level="low", retries=1, name="report")
    async def report(day: str, *, full: bool = False) -> None: ...

    async def body() -> None:
        handle = await report.enqueue(
            "2026-11-23", full=True, flow="tenant-9", idempotency_key="r-1", deadline=60
        )
        job = await handle.job()
        assert (job.task, job.level, job.flow, job.idempotency_key) == (
            "report", "low", "tenant-9", "r-1",
        )  # fmt: skip
        assert jobs.serializer.loads(job.payload) == [["2026-11-23"], {"full": True}]
        assert job.retry.retries == 1
        assert job.deadline is not None
        assert math.isclose(job.deadline - job.enqueued_at, 60, abs_tol=5)
        assert await handle.status() is JobState.QUEUED
        assert handle.created
        again = await report.enqueue("2026-11-23", idempotency_key="r-1")
        assert again == handle
        assert not again.created
        urgent = await report.enqueue("x", level="critical", retries=0, timeout=2.5)
        job = await urgent.job()
        assert (job.level, job.retry.retries, job.timeout) == ("critical", 0, 2.5)

    asyncio.run(body())


def test_delay_accepts_seconds_timedelta_and_aware_datetimes() -> None:
    jobs = make_queue()

    @jobs.task
    async def later() -> None: ...

    async def body() -> None:
        for delay in (30, timedelta(seconds=30), datetime.now(UTC) + timedelta(seconds=30)):
            job = await (await later.enqueue(delay=delay)).job()
            assert job.state is JobState.SCHEDULED
            assert job.run_at is not None

    asyncio.run(body())


def test_the_level_comes_from_enqueue_then_task_then_current_request() -> None:
    jobs = make_queue()

    @jobs.task
    async def free() -> None: ...

    @jobs.task(level="low")
    async def fixed() -> None: ...

    async def level_of(coro: object) -> str:
        return (await (await coro).job()).level  # type: ignore[misc]

    async def body() -> None:
        assert await level_of(free.enqueue()) == "normal"
        with level_scope(DEFAULT_LEVELS["critical"]):
            assert await level_of(free.enqueue()) == "critical"
            assert await level_of(fixed.enqueue()) == "low"
            assert await level_of(free.enqueue(level="bulk")) == "bulk"

    asyncio.run(body())


def test_a_policy_gives_the_queue_its_gate_and_default_level() -> None:
    policy = parse_policy(
        {
            "levels": ["urgent", "routine"],
            "default_level": "routine",
            "gates": {"jobs": {"capacity": 7, "levels": {"routine": {"max": 3}}}},
        }
    )
    jobs = JobQueue(MemoryBroker(), policy=policy)
    assert jobs.gate_policy.capacity == 7
    assert jobs.default_level.name == "routine"
    other = JobQueue(MemoryBroker(), policy=policy, gate="missing")
    assert other.levels.names == ["urgent", "routine"]
    bare = JobQueue(
        MemoryBroker(), policy=GatePolicy(capacity=2, levels={"low": LevelPolicy(max=1)})
    )
    assert (bare.gate_policy.capacity, bare.default_level.name) == (2, "normal")


def test_a_result_is_awaited_and_decoded() -> None:
    jobs = make_queue()

    @jobs.task
    async def add(a: int, b: int) -> int:
        return a + b

    async def body() -> None:
        handle = await add.enqueue(1, 2)
        waiting = asyncio.create_task(handle.result(timeout=30))
        await finish(jobs, OutcomeKind.SUCCEEDED, result=b"3")
        assert await waiting == 3
        assert await jobs.handle(handle.id).result() == 3

    asyncio.run(body())


def test_a_job_that_ends_without_a_result_raises_task_failed() -> None:
    jobs = make_queue()

    @jobs.task(retries=0)
    async def boom() -> None: ...

    async def body() -> None:
        dead = await boom.enqueue()
        await finish(jobs, OutcomeKind.FAILED, error="ValueError: no", traceback="tb")
        with pytest.raises(TaskFailed, match=r"failed after 1 run\(s\): ValueError: no") as info:
            await dead.result()
        assert info.value.job.traceback == "tb"
        cancelled = await boom.enqueue()
        assert await cancelled.cancel()
        with pytest.raises(TaskFailed, match="was cancelled before it ran"):
            await cancelled.result()

    asyncio.run(body())


def test_a_result_not_ready_in_time_raises_timeout_error() -> None:
    jobs = make_queue()

    @jobs.task
    async def slow() -> None: ...

    async def body() -> None:
        handle = await slow.enqueue()
        with pytest.raises(TimeoutError, match=r"is still queued after 0.05s"):
            await handle.result(timeout=0.05)
        with pytest.raises(
            ValueError, match=r"timeout = -1: expected a finite number of seconds ≥ 0"
        ):
            await handle.result(timeout=-1)

    asyncio.run(body())


def test_an_unknown_job_id_raises_job_not_found() -> None:
    jobs = make_queue()

    async def body() -> None:
        handle = jobs.handle("nope")
        for call in (handle.status(), handle.result(), handle.cancel()):
            with pytest.raises(JobNotFound, match="no job nope: never enqueued, or dropped"):
                await call

    asyncio.run(body())


def test_a_running_job_is_not_cancelled() -> None:
    jobs = make_queue()

    @jobs.task
    async def work() -> None: ...

    async def body() -> None:
        handle = await work.enqueue()
        await jobs.broker.reserve("w", 1, lease=60)
        assert not await handle.cancel()
        assert await handle.status() is JobState.RUNNING

    asyncio.run(body())


def test_sync_code_enqueues_and_waits_through_the_queue_thread() -> None:
    jobs = make_queue()

    @jobs.task
    def double(x: int) -> int:
        return 2 * x

    handle = double.enqueue_sync(21, level="high")
    assert handle.status_sync() is JobState.QUEUED

    async def complete() -> None:
        await finish(jobs, OutcomeKind.SUCCEEDED, result=b"42")

    asyncio.run(complete())
    assert handle.result_sync(timeout=5) == 42
    second = double.enqueue_sync(1)
    assert second.cancel_sync()
    with pytest.raises(JobNotFound, match="no job nope"):
        jobs.handle("nope").status_sync()
    asyncio.run(jobs.close())


def test_enqueue_by_name_reaches_tasks_only_workers_know() -> None:
    jobs = make_queue()

    async def body() -> None:
        handle = await jobs.enqueue("billing.charge", ["o-1"], {"cents": 5}, level="high")
        job = await handle.job()
        assert (job.task, job.level) == ("billing.charge", "high")
        assert jobs.serializer.loads(job.payload) == [["o-1"], {"cents": 5}]
        assert (await jobs.stats()).levels["high"].queued == 1

    asyncio.run(body())


# -- errors name what was wrong and what is accepted -----------------------------------


def test_arguments_that_do_not_fit_the_signature_fail_at_enqueue() -> None:
    jobs = make_queue()

    @jobs.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(TypeError, match="task add: missing a required argument: 'b'"):
        asyncio.run(add.enqueue(1))
    with pytest.raises(TypeError, match=r"unknown enqueue option\(s\) \['priority'\]; accepted"):
        add.build((1, 2), {}, priority="high")


def test_an_unserializable_argument_fails_at_enqueue_naming_its_path() -> None:
    jobs = make_queue()

    @jobs.task
    async def store(payload: object) -> None: ...

    cases = [
        ({"when": datetime(2026, 1, 1)}, r"\[0\]\[0\]\['when'\] = datetime.datetime\(2026, 1, 1, 0, 0\) is a datetime, which JSON cannot carry"),  # noqa: E501
        ([1, {2: "x"}], r"\[0\]\[0\]\[1\] has key 2 \(int\): JSON object keys must be strings"),
        (float("nan"), r"\[0\]\[0\] = nan: JSON has no NaN or infinity"),
    ]  # fmt: skip
    for value, message in cases:
        with pytest.raises(SerializationError, match=message):
            asyncio.run(store.enqueue(value))
    with pytest.raises(SerializationError, match="stored data is not valid JSON"):
        JsonSerializer().loads(b"{nope")


def test_bad_options_are_refused_with_what_is_accepted() -> None:
    jobs = make_queue()

    @jobs.task
    async def t() -> None: ...

    cases: list[tuple[dict[str, object], type[Exception], str]] = [
        ({"level": "urgent"}, KeyError, "unknown level 'urgent'; valid levels are"),
        ({"flow": 7}, TypeError, "flow = 7: expected a str naming the flow"),
        ({"idempotency_key": ""}, TypeError, "idempotency_key = '': expected a non-empty str"),
        ({"delay": -1}, ValueError, "delay = -1: expected a finite number of seconds ≥ 0"),
        ({"deadline": math.inf}, ValueError, "deadline = inf: expected a finite number of seconds"),
        ({"delay": datetime(2030, 1, 1)}, ValueError, "has no time zone: give an aware datetime"),
        ({"timeout": 0}, ValueError, "timeout = 0: expected a finite number of seconds > 0"),
    ]
    for options, error, message in cases:
        with pytest.raises(error, match=message):
            t.build((), {}, **options)


def test_bad_task_registrations_are_refused() -> None:
    jobs = make_queue()

    @jobs.task(name="same")
    async def one() -> None: ...

    with pytest.raises(ValueError, match="a task named 'same' is already registered"):
        jobs.task(name="same")(one.function)
    with pytest.raises(KeyError, match="unknown level 'urgent'"):
        jobs.task(level="urgent")(one.function)
    with pytest.raises(ValueError, match="timeout = -2: expected a finite number of seconds > 0"):
        jobs.task(timeout=-2)(one.function)
    with pytest.raises(TypeError, match="@task decorates a function, not 3"):
        jobs.task(3)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="policy = 'x': expected a Policy, a GatePolicy or None"):
        JobQueue(MemoryBroker(), policy="x")  # type: ignore[arg-type]


def test_broker_urls_name_the_accepted_forms() -> None:
    assert isinstance(open_broker("memory://"), MemoryBroker)
    with pytest.raises(
        ValueError, match="broker URL 'ftp://x' is not understood: expected 'memory://'"
    ):
        open_broker("ftp://x")
    with pytest.raises(ValueError, match="broker URL '': expected"):
        open_broker("")


def test_importing_the_jobs_package_loads_only_the_standard_library() -> None:
    code = (
        "import sys; before = set(sys.modules); import prioritize.jobs; "
        "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "print(' '.join(sorted(m for m in new if m not in sys.stdlib_module_names)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["prioritize"]


def test_sqlite_urls_read_like_sqlalchemy() -> None:
    from prioritize.jobs.brokers import _sqlite_path

    assert _sqlite_path("sqlite:///jobs.db") == "jobs.db"
    assert _sqlite_path("sqlite:///./data/jobs.db") == "./data/jobs.db"
    assert _sqlite_path("sqlite:////var/lib/jobs.db") == "/var/lib/jobs.db"
    assert _sqlite_path("work/jobs.db") == "work/jobs.db"
    for bad in ("sqlite://jobs.db", "sqlite:///"):
        with pytest.raises(ValueError, match=r"expected 'sqlite:///relative/path.db' or"):
            _sqlite_path(bad)
