"""The rules every broker keeps, run against each: memory, SQLite, Redis, Redis Cluster.

Time is the test's manual clock: leases, delays, deadlines and TTLs are
tested by moving it. Several brokers opened on one store stand for several
worker processes (the memory broker is one store per test already).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import pytest

from prioritize.core.jobgate import JobGate, LevelSnapshot
from prioritize.core.policy import GatePolicy, LevelPolicy
from prioritize.core.retry import RetryPolicy
from prioritize.jobs import Broker, Job, JobState, Outcome, OutcomeKind
from tests.jobs.conftest import BrokerFactory

LEVELS = ["critical", "high", "normal", "low", "bulk"]
OPEN = GatePolicy(capacity=100, name="jobs")
_ids = itertools.count()


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())  # type: ignore[arg-type]


def job(level: str = "normal", flow: str = "", **fields: object) -> Job:
    """A job with a fresh readable id; ``fields`` override any other field."""
    values: dict[str, object] = {
        "id": f"job-{next(_ids):06d}",
        "task": "tests.add",
        "payload": b"[[1,2],{}]",
        "level": level,
        "flow": flow,
    }
    values.update(fields)
    return Job(**values)  # type: ignore[arg-type]


def ok(held: Job, value: bytes = b"3") -> Outcome:
    return Outcome(held.id, held.attempts, OutcomeKind.SUCCEEDED, result=value)


def failed(held: Job, retry_at: float | None) -> Outcome:
    return Outcome(
        held.id, held.attempts, OutcomeKind.FAILED, error="ValueError: bad", traceback="tb",
        retry_at=retry_at,
    )  # fmt: skip


async def take_all(broker: Broker, worker: str = "w1", *, lease: float = 60.0) -> list[Job]:
    """Reserve and finish one job at a time until none is left: the order served."""
    order: list[Job] = []
    outcomes: list[Outcome] = []
    while True:
        got = await broker.reserve(worker, 1, lease=lease, finished=outcomes)
        if not got:
            return order
        order.extend(got)
        outcomes = [ok(got[0])]


# -- storing and reading -----------------------------------------------------------


def test_an_enqueued_job_reads_back_as_stored(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            sent = job(
                "high", "tenant-1", retry=RetryPolicy(5, 0.5, 3.0, 60.0, "equal"), timeout=7.5,
                deadline=brokers.clock.now + 100, idempotency_key="k1", result_ttl=3600.0,
                payload=b'[["\\u00e9",{"a":[1,2.5,null]}],{"x":true}]',
            )  # fmt: skip
            stored = await broker.enqueue(sent)
            assert stored.state is JobState.QUEUED
            assert stored.enqueued_at == brokers.clock.now
            got = await broker.get(sent.id)
            assert got == stored
            assert got is not None
            for name in ("task", "payload", "level", "flow", "retry", "timeout", "deadline"):
                assert getattr(got, name) == getattr(sent, name), name
            assert (got.idempotency_key, got.result_ttl, got.attempts) == ("k1", 3600.0, 0)
            assert got.retry_chosen
            assert await broker.get("no-such-job") is None
            by_name = await broker.enqueue(job(retry_chosen=False))  # the task's policy applies
            (held,) = [j for j in await broker.reserve("w1", 5, lease=30) if j.id == by_name.id]
            assert not held.retry_chosen
            assert held == (await broker.get(by_name.id))

    run(body)


def test_reserve_hands_out_running_jobs_under_a_lease(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            sent = await broker.enqueue(job())
            brokers.clock.advance(2)
            (held,) = await broker.reserve("w1", 5, lease=30)
            assert held.id == sent.id
            assert held.state is JobState.RUNNING
            assert (held.attempts, held.worker) == (1, "w1")
            assert held.started_at == brokers.clock.now
            assert held.lease_until == brokers.clock.now + 30
            assert held.payload == sent.payload
            assert await broker.get(sent.id) == held
            assert await broker.reserve("w1", 5, lease=30) == []
            assert await broker.reserve("w1", 0, lease=30) == []

    run(body)


def test_reserve_gives_at_most_limit_jobs(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            for _ in range(5):
                await broker.enqueue(job())
            assert len(await broker.reserve("w1", 3, lease=30)) == 3
            assert len(await broker.reserve("w1", 3, lease=30)) == 2

    run(body)


# -- order -------------------------------------------------------------------------


def test_fifo_within_a_level_and_flow(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            sent = [await broker.enqueue(job("normal")) for _ in range(6)]
            order = await take_all(broker)
            assert [j.id for j in order] == [j.id for j in sent]

    run(body)


def test_strict_order_serves_the_most_important_level_first(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            for level in ["bulk", "low", "normal", "high", "critical"] * 2:
                await broker.enqueue(job(level))
            order = await take_all(broker)
            assert [j.level for j in order] == [lvl for lvl in LEVELS for _ in range(2)]

    run(body)


def test_flows_of_a_level_take_turns(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            for _ in range(3):
                await broker.enqueue(job("normal", "a"))
            for _ in range(3):
                await broker.enqueue(job("normal", "b"))
            await broker.enqueue(job("normal", "c"))
            order = await take_all(broker)
            assert [j.flow for j in order] == ["a", "b", "c", "a", "b", "a", "b"]

    run(body)


def test_a_new_flow_joins_the_current_round_not_behind_the_backlog(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            for _ in range(4):
                await broker.enqueue(job("normal", "big"))
            first = await take_all_n(broker, 2)
            await broker.enqueue(job("normal", "new"))
            rest = await take_all(broker)
            # it shares the round of big's next job (FIFO between them), not behind big's backlog
            assert [j.flow for j in first + rest] == ["big", "big", "big", "new", "big"]

    run(body)


async def take_all_n(broker: Broker, n: int) -> list[Job]:
    order = []
    for _ in range(n):
        (held,) = await broker.reserve("w1", 1, lease=60)
        await broker.finish("w1", [ok(held)])
        order.append(held)
    return order


def test_weighted_order_matches_the_gate_rules(brokers: BrokerFactory) -> None:
    gate = GatePolicy(
        capacity=1,
        order="weighted",  # type: ignore[arg-type]
        levels={"critical": LevelPolicy(weight=4), "low": LevelPolicy(weight=1)},
        name="jobs",
    )

    async def body() -> None:
        async with brokers.open(gate) as broker:
            for _ in range(10):
                await broker.enqueue(job("critical"))
                await broker.enqueue(job("low"))
            order = [j.level for j in await take_all(broker)]
        expected = []
        model = JobGate(gate)
        queued = {"critical": 10, "low": 10}
        for _ in range(20):
            snapshot = [LevelSnapshot(queued.get(name, 0), 0) for name in LEVELS]
            rank = model.reserve(snapshot)
            assert rank is not None
            expected.append(LEVELS[rank])
            queued[LEVELS[rank]] -= 1
        assert order == expected
        assert order[:5].count("critical") == 4  # the weights show, low is not starved

    run(body)


# -- limits across workers ---------------------------------------------------------


def test_a_level_max_holds_across_all_workers(brokers: BrokerFactory) -> None:
    gate = GatePolicy(
        capacity=10, levels={"low": LevelPolicy(max=2), "high": LevelPolicy(max=3)}, name="jobs"
    )

    async def body() -> None:
        async with brokers.open(gate) as one, brokers.open(gate) as two:
            for _ in range(5):
                await one.enqueue(job("low"))
                await one.enqueue(job("high"))
            first = await one.reserve("w1", 10, lease=60)
            second = await two.reserve("w2", 10, lease=60)
            held = first + second
            assert sorted(j.level for j in held) == ["high"] * 3 + ["low"] * 2
            # a finished low job frees one low seat, for whichever worker asks
            low = next(j for j in first + second if j.level == "low")
            owner = one if low in first else two
            await owner.finish(low.worker or "", [ok(low)])
            again = await two.reserve("w2", 10, lease=60)
            assert [j.level for j in again] == ["low"]

    run(body)


def test_capacity_is_the_global_wip(brokers: BrokerFactory) -> None:
    gate = GatePolicy(capacity=3, name="jobs")

    async def body() -> None:
        async with brokers.open(gate) as one, brokers.open(gate) as two:
            for _ in range(6):
                await one.enqueue(job())
            assert len(await one.reserve("w1", 2, lease=60)) == 2
            assert len(await two.reserve("w2", 5, lease=60)) == 1
            assert await one.reserve("w1", 5, lease=60) == []

    run(body)


def test_min_keeps_seats_for_a_more_important_level(brokers: BrokerFactory) -> None:
    gate = GatePolicy(capacity=4, levels={"critical": LevelPolicy(min=2)}, name="jobs")

    async def body() -> None:
        async with brokers.open(gate) as broker:
            for _ in range(4):
                await broker.enqueue(job("low"))
            assert len(await broker.reserve("w1", 4, lease=60)) == 2
            await broker.enqueue(job("critical"))
            await broker.enqueue(job("critical"))
            assert [j.level for j in await broker.reserve("w2", 4, lease=60)] == ["critical"] * 2

    run(body)


def test_a_dedicated_worker_takes_only_its_levels(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            await broker.enqueue(job("critical"))
            await broker.enqueue(job("low"))
            await broker.enqueue(job("high"))
            got = await broker.reserve("low-pool", 5, lease=60, levels=["low", "bulk"])
            assert [j.level for j in got] == ["low"]
            got = await broker.reserve("top-pool", 5, lease=60, levels=["critical", "high"])
            assert [j.level for j in got] == ["critical", "high"]

    run(body)


# -- outcomes ------------------------------------------------------------------------


def test_a_result_is_stored_and_waiters_are_woken(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            sent = await broker.enqueue(job())
            waiter = asyncio.create_task(broker.wait(sent.id, 30))
            (held,) = await broker.reserve("w1", 1, lease=60)
            assert await broker.finish("w1", [ok(held, b'{"sum":3}')]) == [True]
            done = await waiter
            assert done is not None
            assert done.state is JobState.SUCCEEDED
            assert (done.result, done.finished_at) == (b'{"sum":3}', brokers.clock.now)
            assert (await broker.stats()).levels["normal"].succeeded == 1

    run(body)


def test_wait_returns_the_job_as_it_is_when_time_runs_out(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            sent = await broker.enqueue(job())
            still = await broker.wait(sent.id, 0.05)
            assert still is not None
            assert still.state is JobState.QUEUED
            assert await broker.wait("no-such-job", 0.05) is None

    run(body)


def test_wait_on_another_broker_of_the_store_is_woken(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as service, brokers.open(OPEN) as worker:
            sent = await service.enqueue(job())
            waiter = asyncio.create_task(service.wait(sent.id, 30))
            (held,) = await worker.reserve("w1", 1, lease=60)
            await worker.finish("w1", [ok(held)])
            done = await waiter
            assert done is not None
            assert done.state is JobState.SUCCEEDED

    run(body)


def test_wait_for_work_is_woken_by_an_enqueue(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as worker, brokers.open(OPEN) as producer:
            idle = asyncio.create_task(worker.wait_for_work(3600))
            # the waiter may not be listening yet when the first job lands: keep adding
            # jobs until it wakes; a broker that never wakes it fails the liveness bound
            async with asyncio.timeout(60):
                while not idle.done():
                    await producer.enqueue(job())
                    await asyncio.wait([idle], timeout=0.2)
            assert len(await worker.reserve("w1", 1, lease=60)) == 1


def test_an_outcome_from_the_wrong_worker_or_run_is_ignored(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            await broker.enqueue(job())
            (held,) = await broker.reserve("w1", 1, lease=60)
            assert await broker.finish("w2", [ok(held)]) == [False]
            stale = Outcome(held.id, held.attempts + 1, OutcomeKind.SUCCEEDED, result=b"1")
            assert await broker.finish("w1", [stale]) == [False]
            unknown = Outcome("no-such-job", 1, OutcomeKind.SUCCEEDED, result=b"1")
            assert await broker.finish("w1", [unknown]) == [False]
            assert (await broker.get(held.id)) == held
            assert await broker.finish("w1", [ok(held)]) == [True]
            assert await broker.finish("w1", [ok(held)]) == [False]  # applied once only

    run(body)


def test_outcomes_given_to_reserve_are_applied_first(brokers: BrokerFactory) -> None:
    gate = GatePolicy(capacity=1, name="jobs")

    async def body() -> None:
        async with brokers.open(gate) as broker:
            await broker.enqueue(job())
            await broker.enqueue(job())
            (first,) = await broker.reserve("w1", 1, lease=60)
            (second,) = await broker.reserve("w1", 1, lease=60, finished=[ok(first)])
            assert second.id != first.id
            got = await broker.get(first.id)
            assert got is not None
            assert got.state is JobState.SUCCEEDED

    run(body)


def test_a_failed_job_backs_off_then_runs_again(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            sent = await broker.enqueue(job())
            (held,) = await broker.reserve("w1", 1, lease=60)
            retry_at = brokers.clock.now + 10
            assert await broker.finish("w1", [failed(held, retry_at)]) == [True]
            waiting = await broker.get(sent.id)
            assert waiting is not None
            assert (waiting.state, waiting.run_at) == (JobState.SCHEDULED, retry_at)
            assert (waiting.error, waiting.traceback) == ("ValueError: bad", "tb")
            assert await broker.reserve("w1", 1, lease=60) == []
            brokers.clock.advance(10)
            (again,) = await broker.reserve("w1", 1, lease=60)
            assert (again.id, again.attempts) == (sent.id, 2)
            stats = (await broker.stats()).levels["normal"]
            assert (stats.failed, stats.running) == (1, 1)

    run(body)


def test_a_retry_due_at_once_is_queued_at_once(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            await broker.enqueue(job())
            (held,) = await broker.reserve("w1", 1, lease=60)
            await broker.finish("w1", [failed(held, brokers.clock.now)])
            got = await broker.get(held.id)
            assert got is not None
            assert got.state is JobState.QUEUED

    run(body)


def test_a_job_out_of_retries_is_dead_until_requeued(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            sent = await broker.enqueue(job("high", retry=RetryPolicy(retries=0)))
            waiter = asyncio.create_task(broker.wait(sent.id, 30))
            (held,) = await broker.reserve("w1", 1, lease=60)
            await broker.finish("w1", [failed(held, None)])
            dead = await waiter
            assert dead is not None
            assert dead.state is JobState.DEAD
            assert dead.error == "ValueError: bad"
            assert [j.id for j in await broker.dead()] == [sent.id]
            stats = (await broker.stats()).levels["high"]
            assert (stats.dead, stats.failed) == (1, 1)
            assert await broker.requeue_dead() == 1
            assert await broker.dead() == []
            requeued = await broker.get(sent.id)
            assert requeued is not None
            assert (requeued.state, requeued.attempts) == (JobState.QUEUED, 0)
            (again,) = await broker.reserve("w1", 1, lease=60)
            assert (again.id, again.attempts) == (sent.id, 1)

    run(body)


def test_requeue_dead_takes_only_the_ids_given(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            for _ in range(3):
                await broker.enqueue(job(retry=RetryPolicy(retries=0)))
            for held in await broker.reserve("w1", 3, lease=60):
                await broker.finish("w1", [failed(held, None)])
            dead = await broker.dead()
            assert len(dead) == 3
            assert await broker.requeue_dead([dead[1].id, "no-such-job"]) == 1
            assert [j.id for j in await broker.dead()] == [dead[0].id, dead[2].id]
            assert len(await broker.dead(limit=1)) == 1

    run(body)


def test_a_released_job_goes_back_to_the_front_uncounted(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            first = await broker.enqueue(job())
            await broker.enqueue(job())
            (held,) = await broker.reserve("w1", 1, lease=60)
            released = Outcome(held.id, held.attempts, OutcomeKind.RELEASED)
            assert await broker.finish("w1", [released]) == [True]
            (again,) = await broker.reserve("w2", 1, lease=60)
            assert (again.id, again.attempts, again.worker) == (first.id, 1, "w2")

    run(body)


# -- leases --------------------------------------------------------------------------


def test_a_job_whose_lease_expires_is_redelivered_first(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as one, brokers.open(OPEN) as two:
            sent = await one.enqueue(job())
            later = await one.enqueue(job())
            (held,) = await one.reserve("dead-worker", 1, lease=10)
            brokers.clock.advance(9)
            (other,) = await two.reserve("w2", 1, lease=60)
            assert other.id == later.id  # the lease still holds
            brokers.clock.advance(2)
            (again,) = await two.reserve("w2", 1, lease=60)
            assert (again.id, again.attempts, again.worker) == (sent.id, 2, "w2")
            assert "LeaseExpired" in (again.error or "")
            assert await one.finish("dead-worker", [ok(held)]) == [False]
            assert (await two.stats()).levels["normal"].failed == 1

    run(body)


def test_a_heartbeat_keeps_the_lease(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            sent = await broker.enqueue(job())
            (held,) = await broker.reserve("w1", 1, lease=10)
            brokers.clock.advance(8)
            assert await broker.heartbeat("w1", [sent.id], 10) == set()
            brokers.clock.advance(8)
            assert await broker.reserve("w2", 1, lease=10) == []
            got = await broker.get(sent.id)
            assert got is not None
            assert (got.state, got.lease_until) == (JobState.RUNNING, brokers.clock.now + 2)
            assert await broker.heartbeat("w2", [sent.id], 10) == {sent.id}
            assert await broker.heartbeat("w1", ["no-such-job"], 10) == {"no-such-job"}
            brokers.clock.advance(3)
            assert await broker.heartbeat("w1", [sent.id], 10) == {sent.id}  # expired
            assert await broker.finish("w1", [ok(held)]) in ([False], [True])

    run(body)


def test_a_job_that_keeps_losing_its_worker_dies(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            sent = await broker.enqueue(job(retry=RetryPolicy(retries=1)))
            for _ in range(2):
                assert len(await broker.reserve("w", 1, lease=5)) == 1
                brokers.clock.advance(6)
            assert await broker.reserve("w", 1, lease=5) == []
            dead = await broker.get(sent.id)
            assert dead is not None
            assert (dead.state, dead.attempts) == (JobState.DEAD, 2)
            assert "LeaseExpired" in (dead.error or "")

    run(body)


# -- time: delays, deadlines, TTLs -----------------------------------------------------


def test_a_delayed_job_waits_for_its_time(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            later = await broker.enqueue(job(run_at=brokers.clock.now + 30))
            assert later.state is JobState.SCHEDULED
            assert (await broker.stats()).levels["normal"].scheduled == 1
            assert await broker.reserve("w1", 1, lease=60) == []
            brokers.clock.advance(30)
            (held,) = await broker.reserve("w1", 1, lease=60)
            assert held.id == later.id
            past = await broker.enqueue(job(run_at=brokers.clock.now - 5))
            assert past.state is JobState.QUEUED

    run(body)


def test_a_job_not_started_by_its_deadline_is_shed(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            late = await broker.enqueue(job("low", deadline=brokers.clock.now + 5))
            kept = await broker.enqueue(job("low", deadline=brokers.clock.now + 50))
            waiter = asyncio.create_task(broker.wait(late.id, 30))
            brokers.clock.advance(6)
            (held,) = await broker.reserve("w1", 5, lease=60)
            assert held.id == kept.id
            shed = await waiter
            assert shed is not None
            assert (shed.state, shed.reason) == (JobState.SHED, "timeout")
            assert (await broker.stats()).levels["low"].shed == 1

    run(body)


def test_a_started_job_is_not_shed_by_its_deadline(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            sent = await broker.enqueue(job(deadline=brokers.clock.now + 5))
            (held,) = await broker.reserve("w1", 1, lease=60)
            brokers.clock.advance(10)
            assert await broker.reserve("w1", 1, lease=60) == []
            assert await broker.finish("w1", [ok(held)]) == [True]
            got = await broker.get(sent.id)
            assert got is not None
            assert got.state is JobState.SUCCEEDED

    run(body)


def test_a_deadline_of_an_earlier_job_does_not_shed_a_new_job_of_the_same_id(
    brokers: BrokerFactory,
) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            first = await broker.enqueue(job(deadline=brokers.clock.now + 50, result_ttl=10.0))
            assert await broker.cancel(first.id) is not None
            brokers.clock.advance(20)  # the cancelled job is past its TTL: its id is free
            again = await broker.enqueue(job(id=first.id))
            brokers.clock.advance(40)  # past the first job's deadline
            stats = await broker.stats()
            assert (stats.levels["normal"].queued, stats.levels["normal"].shed) == (1, 0)
            (held,) = await broker.reserve("w1", 1, lease=60)
            assert (held.id, held.deadline) == (again.id, None)

    run(body)


def test_finished_jobs_are_dropped_after_their_ttl(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            sent = await broker.enqueue(job(result_ttl=100.0, idempotency_key="once"))
            (held,) = await broker.reserve("w1", 1, lease=60)
            await broker.finish("w1", [ok(held)])
            brokers.clock.advance(99)
            assert await broker.get(sent.id) is not None
            brokers.clock.advance(2)
            await broker.reserve("w1", 1, lease=60)  # upkeep runs here at the latest
            assert await broker.get(sent.id) is None
            again = await broker.enqueue(job(idempotency_key="once"))
            assert again.id != sent.id  # the key was released with the job

    run(body)


# -- idempotency and cancelling ----------------------------------------------------------


def test_an_idempotency_key_returns_the_existing_job(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            first = await broker.enqueue(job(idempotency_key="order-17"))
            second = await broker.enqueue(job("critical", idempotency_key="order-17"))
            assert second == first
            other = await broker.enqueue(job(idempotency_key="order-18"))
            assert other.id != first.id
            assert (await broker.stats()).total("queued") == 2

    run(body)


def test_cancel_stops_a_job_that_has_not_started(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            queued = await broker.enqueue(job("low"))
            delayed = await broker.enqueue(job("low", run_at=brokers.clock.now + 10))
            running = await broker.enqueue(job("critical"))
            (held,) = await broker.reserve("w1", 1, lease=60)
            assert held.id == running.id
            waiter = asyncio.create_task(broker.wait(queued.id, 30))
            for sent in (queued, delayed):
                cancelled = await broker.cancel(sent.id)
                assert cancelled is not None
                assert (cancelled.state, cancelled.reason) == (JobState.CANCELLED, "cancelled")
            still = await broker.cancel(running.id)
            assert still is not None
            assert still.state is JobState.RUNNING
            assert await broker.cancel("no-such-job") is None
            done = await waiter
            assert done is not None
            assert done.state is JobState.CANCELLED
            brokers.clock.advance(20)
            assert await broker.reserve("w1", 5, lease=60) == []
            stats = (await broker.stats()).levels["low"]
            assert (stats.cancelled, stats.queued, stats.scheduled) == (2, 0, 0)

    run(body)


# -- stats ---------------------------------------------------------------------------------


def test_stats_count_every_state_per_level(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            await broker.enqueue(job("high"))
            brokers.clock.advance(5)
            await broker.enqueue(job("high"))
            await broker.enqueue(job("low", run_at=brokers.clock.now + 60))
            await broker.enqueue(job("critical"))
            brokers.clock.advance(3)
            (held,) = await broker.reserve("w1", 1, lease=60)
            assert held.level == "critical"
            stats = await broker.stats()
            assert list(stats.levels) == LEVELS
            high = stats.levels["high"]
            assert (high.queued, high.running, high.oldest_wait) == (2, 0, 8.0)
            assert stats.levels["critical"].running == 1
            assert stats.levels["critical"].oldest_wait == 0.0
            assert stats.levels["low"].scheduled == 1
            assert stats.total("queued") == 2
            assert stats.total("oldest_wait") == 8.0

    run(body)


def test_unknown_levels_are_refused_with_the_accepted_names(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            with pytest.raises(KeyError, match="urgent"):
                await broker.enqueue(job("urgent"))
            with pytest.raises(KeyError, match="urgent"):
                await broker.reserve("w1", 1, lease=60, levels=["urgent"])

    run(body)


def test_enqueue_many_stores_all_in_order_or_none(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            batch = [job("low"), job("low", idempotency_key="k"), job("low", idempotency_key="k")]
            stored = await broker.enqueue_many(batch)
            assert [j.id for j in stored] == [batch[0].id, batch[1].id, batch[1].id]
            assert all(j.state is JobState.QUEUED for j in stored)
            clash = [job("high"), job("high", id=batch[0].id)]
            with pytest.raises(
                ValueError, match=f"a job with id '{batch[0].id}' is already stored"
            ):
                await broker.enqueue_many(clash)
            assert await broker.get(clash[0].id) is None
            assert [j.id for j in await take_all(broker)] == [batch[0].id, batch[1].id]

    run(body)


def test_requeue_dead_ignores_a_repeated_id(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            await broker.enqueue(job(retry=RetryPolicy(retries=0)))
            (held,) = await broker.reserve("w1", 1, lease=60)
            await broker.finish("w1", [failed(held, None)])
            assert await broker.requeue_dead([held.id, held.id]) == 1
            assert (await broker.stats()).levels["normal"].queued == 1

    run(body)


def test_an_expired_job_is_gone_for_every_operation(brokers: BrokerFactory) -> None:
    async def body() -> None:
        async with brokers.open(OPEN) as broker:
            sent = await broker.enqueue(job(result_ttl=10.0, idempotency_key="k"))
            assert await broker.cancel(sent.id) is not None
            brokers.clock.advance(11)
            assert await broker.cancel(sent.id) is None
            again = await broker.enqueue(job(idempotency_key="k"))
            assert again.id != sent.id

    run(body)
