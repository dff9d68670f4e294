"""How the Redis broker wakes sleeping workers: one per job, the latest first, never a dead one.

Every enqueue used to wake every sleeping worker, and all of them but one
reserved nothing. These tests pin the rules of ``lua/common.lua`` instead:
a job wakes one sleeper (the one that slept last), a sleeper already woken
is not woken again before it reserves, a broker that is gone is skipped,
and a worker that fills up hands the wakeup on. What a broker received is
read from its own subscriber: a probe published after the enqueue arrives
after anything the enqueue published, on the same connection.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TypeVar

import pytest
from redis.asyncio import Redis

from prioritize.core.policy import GatePolicy, LevelPolicy
from prioritize.jobs import Job, Outcome, OutcomeKind
from prioritize.jobs.brokers.redis import RedisBroker

POLICY = GatePolicy(capacity=64, name="jobs")
#: one seat for normal jobs: the second waits for the first to end
ONE_SEAT = GatePolicy(capacity=64, levels={"normal": LevelPolicy(max=1)}, name="jobs")
GUARD = 30.0
LONG = 3600.0
_queues = itertools.count()
T = TypeVar("T")


async def guard(awaitable: Awaitable[T], what: str) -> T:
    try:
        return await asyncio.wait_for(awaitable, GUARD)
    except TimeoutError:
        pytest.fail(f"{what} was not done within {GUARD}s")


def job(job_id: str) -> Job:
    return Job(id=job_id, task="t", payload=b"[]", level="normal")


class Observed:
    """A broker, and the wakeups its subscriber has received."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self.wakeups: list[bytes] = []
        self.probes: asyncio.Queue[bytes] = asyncio.Queue()
        subscriber = broker._subscriber
        dispatch = subscriber.dispatch

        def observe(kind: str, channel: object, data: object) -> None:
            if kind == "smessage" and isinstance(data, bytes):
                if channel == subscriber.wake_channel_bytes:
                    self.wakeups.append(data)
                elif data.startswith(b"jprobe"):
                    self.probes.put_nowait(data)
            dispatch(kind, channel, data)

        subscriber.dispatch = observe  # type: ignore[method-assign]

    async def sleep(self, worker: str, limit: int = 1) -> asyncio.Task[None]:
        """Subscribe, reserve nothing (which makes it a sleeper), then wait for work."""
        await guard(self.broker.wait_for_work(LONG), "the wait that subscribes")
        assert await self.broker.reserve(worker, limit, lease=60) == []
        task = asyncio.create_task(self.broker.wait_for_work(LONG))
        while not self.broker._subscriber.work_waiters:
            await asyncio.sleep(0)  # a turn of the loop: lets the task start waiting
        return task

    async def drained(self, admin: Redis, probe: str) -> None:
        """Until everything published before now has reached this broker's subscriber."""
        await admin.execute_command("SPUBLISH", self.broker._subscriber.channel, f"jprobe-{probe}")
        assert await guard(self.probes.get(), "the probe") == f"jprobe-{probe}".encode()


@asynccontextmanager
async def queue_of(
    redis_url: str, count: int, policy: GatePolicy = POLICY
) -> AsyncIterator[tuple[list[Observed], Redis]]:
    name = f"wakeups-{next(_queues)}-{time.time_ns()}"
    brokers = [RedisBroker.from_url(redis_url, queue=name) for _ in range(count)]
    for broker in brokers:
        broker.configure(policy)
    admin = Redis.from_url(redis_url)
    try:
        yield [Observed(broker) for broker in brokers], admin
    finally:
        for broker in brokers:
            await broker.close()
        await admin.aclose()


def test_a_job_wakes_one_sleeper_the_latest_and_not_the_others(redis_url: str) -> None:
    async def body() -> None:
        async with queue_of(redis_url, 3) as ((first, latest, producer), admin):
            first_asleep = await first.sleep("first")
            latest_asleep = await latest.sleep("latest")
            await producer.broker.enqueue(job("j1"))
            await guard(latest_asleep, "the latest sleeper's wakeup")
            # woken, not yet reserved: a second job need not wake anyone else
            await producer.broker.enqueue(job("j2"))
            await first.drained(admin, "1")
            assert first.wakeups == []
            assert not first_asleep.done()
            assert [j.id for j in await latest.broker.reserve("latest", 5, lease=60)] == [
                "j1",
                "j2",
            ]
            first_asleep.cancel()

    asyncio.run(body())


def test_a_sleeper_that_is_gone_is_skipped(redis_url: str) -> None:
    async def body() -> None:
        async with queue_of(redis_url, 3) as ((alive, gone, producer), admin):
            alive_asleep = await alive.sleep("alive")
            gone_asleep = await gone.sleep("gone")  # the latest: it would be woken first
            gone_asleep.cancel()
            await gone.broker.close()  # its subscriber ends: nobody hears its channel
            await producer.broker.enqueue(job("j1"))
            await guard(alive_asleep, "the live sleeper's wakeup")
            assert [j.id for j in await alive.broker.reserve("alive", 1, lease=60)] == ["j1"]
            base = alive.broker._base
            for rank in range(len(POLICY.level_set)):
                members = await admin.zrange(f"{base}sleepers:{rank}", 0, -1)
                assert gone.broker._id.encode() not in members

    asyncio.run(body())


def test_a_worker_that_fills_up_hands_the_wakeup_on(redis_url: str) -> None:
    async def body() -> None:
        async with queue_of(redis_url, 3) as ((other, small, producer), admin):
            other_asleep = await other.sleep("other", limit=5)
            small_asleep = await small.sleep("small", limit=1)
            await producer.broker.enqueue_many([job("j1"), job("j2"), job("j3")])
            await guard(small_asleep, "the latest sleeper's wakeup")
            await other.drained(admin, "1")
            assert other.wakeups == []  # the one woken will look at all three
            assert [j.id for j in await small.broker.reserve("small", 1, lease=60)] == ["j1"]
            await guard(other_asleep, "the wakeup handed on")
            assert [j.id for j in await other.broker.reserve("other", 5, lease=60)] == [
                "j2",
                "j3",
            ]

    asyncio.run(body())


def test_a_freed_seat_wakes_a_sleeper_the_gate_held_back(redis_url: str) -> None:
    """At the level's ``max``, jobs wait; the ack that frees a seat wakes one sleeper."""

    async def body() -> None:
        async with queue_of(redis_url, 3, ONE_SEAT) as ((waiting, running, producer), admin):
            await producer.broker.enqueue_many([job("j1"), job("j2")])
            (held,) = await running.broker.reserve("running", 1, lease=60)
            waiting_asleep = await waiting.sleep("waiting", limit=5)  # j2 waits for the seat
            await waiting.drained(admin, "1")
            assert not waiting_asleep.done()
            ack = Outcome(held.id, held.attempts, OutcomeKind.SUCCEEDED, result=b"1")
            assert await running.broker.finish("running", [ack]) == [True]
            await guard(waiting_asleep, "the wakeup for the freed seat")
            assert [j.id for j in await waiting.broker.reserve("waiting", 5, lease=60)] == ["j2"]

    asyncio.run(body())
