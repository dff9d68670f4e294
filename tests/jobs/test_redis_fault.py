"""RedisBroker loses nothing when its connections are killed or its server restarts.

Two faults, each in the middle of a run that enqueues, reserves, finishes
and waits through several brokers at once (several processes, as far as
Redis can tell):

* every client connection is killed, again and again (``CLIENT KILL TYPE
  normal`` and ``TYPE pubsub``): commands are resent, a resent reservation
  returns its first answer, the subscriber subscribes again and wakes its
  waiters to look again;
* the server stops and starts again on the same port, its data kept in an
  append-only file: a command sent while it is down waits for it, scripts
  are loaded again, waiters are woken.

Nothing here waits a fixed time. A lost wakeup would leave a waiter asleep
for an hour; `guard` turns that into a failure after `GUARD` seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from prioritize.core.policy import GatePolicy
from prioritize.jobs import Job, JobState, Outcome, OutcomeKind
from prioritize.jobs.brokers.redis import RedisBroker
from tests.redis_servers import _cli, _stop, _wait_until, free_port, require_redis

from .conftest import ManualClock

T = TypeVar("T")
POLICY = GatePolicy(capacity=50, name="jobs")
#: seconds before a waiter that was never woken fails the test (it would sleep an hour)
GUARD = 60.0
#: the wait every waiter here is given: far beyond GUARD, so only a wakeup ends it early
LONG = 3600.0
_queues = itertools.count()


async def guard(awaitable: Awaitable[T], what: str) -> T:
    try:
        return await asyncio.wait_for(awaitable, GUARD)
    except TimeoutError:
        pytest.fail(f"{what} was not done within {GUARD}s: a wakeup or a job was lost")


def patient(url: str, queue: str, clock: ManualClock) -> RedisBroker:
    """A broker whose client retries for longer than a restart takes (about 100 s)."""
    retry = Retry(ExponentialWithJitterBackoff(base=0.02, cap=0.5), retries=200)
    broker = RedisBroker.from_url(url, queue=queue, clock=clock, retry=retry)
    broker.configure(POLICY)
    return broker


def job(number: int) -> Job:
    return Job(
        id=f"job-{number:04d}", task="t", payload=b"[]", level="normal", flow=f"f{number % 3}"
    )


def ok(held: Job) -> Outcome:
    return Outcome(held.id, held.attempts, OutcomeKind.SUCCEEDED, result=held.id.encode())


# -- connections killed ----------------------------------------------------------------


async def kill_connections(nodes: list[str]) -> int:
    """Kill every normal and pub/sub client connection on each node; how many."""
    killed = 0
    for url in nodes:
        admin = Redis.from_url(url)
        killed += await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        killed += await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        await admin.aclose()
    return killed


async def killed_mid_run(url: str, nodes: list[str], jobs: int = 240) -> None:
    clock = ManualClock()
    queue = f"fault-{next(_queues)}-{time.time_ns()}"
    producer, worker, watcher = (patient(url, queue, clock) for _ in range(3))
    reserved: list[Job] = []

    async def work() -> None:
        done = 0
        while done < jobs:
            held = await worker.reserve("w", 10, lease=600)
            if not held:
                await worker.wait_for_work(LONG)
                continue
            reserved.extend(held)
            assert await worker.finish("w", [ok(j) for j in held]) == [True] * len(held)
            done += len(held)

    working = asyncio.create_task(work())
    waiters = []
    killed = 0
    for number in range(jobs):
        await producer.enqueue(job(number))
        if number % 8 == 0:
            waiters.append(asyncio.create_task(watcher.wait(job(number).id, LONG)))
        if number % 40 == 20:
            killed += await kill_connections(nodes)
    await guard(working, "the worker")
    waited = await guard(asyncio.gather(*waiters), "the waiters")

    assert killed > 0
    assert sorted(j.id for j in reserved) == [job(n).id for n in range(jobs)]
    assert all(j.attempts == 1 for j in reserved)  # a resent reservation started nothing twice
    assert all(j is not None and j.state is JobState.SUCCEEDED for j in waited)
    assert [j.result for j in waited if j is not None] == [
        job(n).id.encode() for n in range(0, jobs, 8)
    ]
    stats = (await producer.stats()).levels["normal"]
    assert (stats.succeeded, stats.queued, stats.running) == (jobs, 0, 0)
    for broker in (producer, worker, watcher):
        await broker.close()


def test_killed_connections_lose_nothing_and_wake_every_waiter(redis_url: str) -> None:
    asyncio.run(killed_mid_run(redis_url, [redis_url]))


def test_killed_connections_on_a_cluster_lose_nothing(redis_cluster_urls: list[str]) -> None:
    url = redis_cluster_urls[0].replace("redis://", "redis+cluster://")
    asyncio.run(killed_mid_run(url, redis_cluster_urls))


async def asleep(broker: RedisBroker) -> None:
    """Until a ``wait_for_work`` of ``broker`` waits for its wakeup (no Redis call left)."""
    while not (broker._subscriber.work_waiters and broker._bounds is None):
        await asyncio.sleep(0)  # a turn of the loop: lets the waiting task run


def spy(monkeypatch: pytest.MonkeyPatch, broker: RedisBroker, script: str) -> asyncio.Event:
    """An event set once ``broker`` has run ``script`` (for "read", only a watching read)."""
    done = asyncio.Event()
    call = broker._call

    async def spied(name: str, args: list[str], now: float | None = None) -> object:
        reply = await call(name, args, now)
        if name == script and (name != "read" or args[1] == "1"):
            done.set()
        return reply

    monkeypatch.setattr(broker, "_call", spied)
    return done


@pytest.mark.parametrize("kind", ["redis", "redis-cluster"])
def test_wakeups_lost_while_the_subscriber_was_away_are_made_up_for(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A waiter and a sleeping worker miss their messages; subscribing again wakes both.

    The messages are lost on purpose, deterministically: the job is taken
    out of the watched set and the sleepers are forgotten before the finish
    and the enqueue, so neither publishes. Killing the connections then
    makes the subscriber subscribe again, which must wake both to look.
    """
    if kind == "redis":
        nodes = [request.getfixturevalue("redis_url")]
        url = nodes[0]
    else:
        nodes = request.getfixturevalue("redis_cluster_urls")
        url = nodes[0].replace("redis://", "redis+cluster://")

    async def body() -> None:
        clock = ManualClock()
        queue = f"lost-{next(_queues)}-{time.time_ns()}"
        watcher, worker, other = (patient(url, queue, clock) for _ in range(3))
        await other.enqueue(job(1))
        (held,) = await other.reserve("w", 1, lease=600)
        has_read = spy(monkeypatch, watcher, "read")
        waiting = asyncio.create_task(watcher.wait(held.id, LONG))
        await guard(has_read.wait(), "the waiter's read")
        # subscribing counts as a wakeup, so this first wait returns at once
        await guard(worker.wait_for_work(LONG), "the worker's first wait")
        # subscribed now, this reservation makes it a sleeper, so its wait needs no call
        assert await worker.reserve("w2", 1, lease=600) == []
        sleeping = asyncio.create_task(worker.wait_for_work(LONG))
        await guard(asleep(worker), "the worker's sleep")

        admin = (RedisCluster if kind == "redis-cluster" else Redis).from_url(nodes[0])
        base = f"{{prioritize:{queue}}}:"
        assert await admin.srem(base + "watched", held.id) == 1
        sleepers = [base + f"sleepers:{rank}" for rank in range(len(POLICY.level_set))]
        assert await admin.delete(*sleepers) >= 1
        await admin.aclose()
        assert await other.finish("w", [ok(held)]) == [True]
        await other.enqueue(job(2))
        assert not waiting.done()
        assert not sleeping.done()

        await kill_connections(nodes)
        finished = await guard(waiting, "the waiter")
        assert finished is not None
        assert finished.state is JobState.SUCCEEDED
        await guard(sleeping, "the sleeping worker")
        assert [j.id for j in await worker.reserve("w2", 1, lease=600)] == [job(2).id]
        for broker in (watcher, worker, other):
            await broker.close()

    asyncio.run(body())


# -- the server restarted --------------------------------------------------------------


class RestartableServer:
    """A redis-server that keeps its data in an append-only file and restarts on its port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "always",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        process = self.process
        _wait_until(
            f"redis-server on port {self.port} did not answer PING",
            lambda: process.poll() is None and _cli(self.port, "ping") == "PONG",
        )

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RestartableServer]:
    require_redis()
    server = RestartableServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_server_restart_loses_nothing_and_the_broker_carries_on(
    server: RestartableServer,
) -> None:
    async def body() -> None:
        clock = ManualClock()
        broker, watcher = (patient(server.url, "restart", clock) for _ in range(2))
        await broker.enqueue_many([job(n) for n in range(20)])
        held = await broker.reserve("w", 5, lease=600)
        waiters = [asyncio.create_task(watcher.wait(j.id, LONG)) for j in held]
        await watcher.wait(job(19).id, 0.0)  # the watcher has read (and is subscribed)

        await asyncio.to_thread(server.stop)
        during = asyncio.create_task(broker.enqueue(job(20)))  # waits for the server
        await asyncio.to_thread(server.start)
        stored = await guard(during, "the enqueue sent while the server was down")
        assert stored.state is JobState.QUEUED

        assert await broker.finish("w", [ok(j) for j in held]) == [True] * 5
        waited = await guard(asyncio.gather(*waiters), "the waiters")
        assert [j.state for j in waited if j is not None] == [JobState.SUCCEEDED] * 5
        rest = await broker.reserve("w", 50, lease=600)
        assert sorted(j.id for j in rest) == [job(n).id for n in range(5, 21)]
        assert await broker.finish("w", [ok(j) for j in rest]) == [True] * 16
        stats = (await broker.stats()).levels["normal"]
        assert (stats.succeeded, stats.queued, stats.running) == (21, 0, 0)
        await broker.close()
        await watcher.close()

    asyncio.run(body())
