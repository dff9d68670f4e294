"""RedisBroker: the same answers as MemoryBroker, and what only Redis has (slots, scripts, URLs).

The decisive check runs a `MemoryBroker` (the reference) and a `RedisBroker`
side by side on random operations over random gate policies, with one
manual clock, and requires identical answers at every step. The examples
after it pin what the conformance suite cannot see: every key in one
cluster slot, scripts reloaded after ``SCRIPT FLUSH``, URLs and their errors.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from prioritize.core.levels import LevelSet
from prioritize.core.policy import GatePolicy
from prioritize.jobs import (
    Broker,
    Job,
    MemoryBroker,
    Outcome,
    OutcomeKind,
    RetryPolicy,
    StoreError,
)
from prioritize.jobs.brokers import open_broker
from prioritize.jobs.brokers._redis_client import where
from prioritize.jobs.brokers._redis_scripts import SCRIPTS
from prioritize.jobs.brokers.redis import RedisBroker
from tests.core.test_scheduler_stateful import gate_policies
from tests.redis_servers import _server, free_port, require_redis

from .conftest import ManualClock

T = TypeVar("T")
_queues = itertools.count()


def unique_queue(name: str) -> str:
    return f"{name}-{next(_queues)}-{time.time_ns()}"


# -- the twin: MemoryBroker and RedisBroker in lockstep ------------------------------

DEAD_TTL = 120.0
WORKERS = ["w0", "w1"]
FLOWS = ["", "a", "b"]
KEYS = [None, None, "k0", "k1"]
#: steps every run must execute, counted, not estimated from the settings
MIN_STEPS = 600


class TwinMachine(RuleBasedStateMachine):
    """The same calls on both brokers; every answer must be the same.

    Wider than tests/jobs/test_lockstep.py: random gate policies (strict and
    weighted, mins and maxes), dead-letter reads, heartbeats on ids not held,
    stale outcomes. One knowing difference: MemoryBroker.wait still returns
    a finished job past its TTL that nothing has dropped yet, where
    RedisBroker treats an expired job as gone; the twin calls the memory
    broker's `get` (which drops them) before each step.
    """

    url = ""
    steps = 0

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = ManualClock()
        self.memory = MemoryBroker(clock=self.clock, dead_ttl=DEAD_TTL)
        self.redis = RedisBroker.from_url(
            self.url, queue=unique_queue("twin"), clock=self.clock, dead_ttl=DEAD_TTL
        )
        self.ids: list[str] = []
        self.held: dict[str, dict[str, int]] = {w: {} for w in WORKERS}
        self.count = itertools.count()

    def both(self, call: Callable[[Broker], Awaitable[T]]) -> T:
        async def run() -> tuple[T, T]:
            await self.memory.get("")  # drop expired jobs, as RedisBroker does on every read
            return await call(self.memory), await call(self.redis)

        TwinMachine.steps += 1
        expected, got = self.loop.run_until_complete(run())
        assert got == expected
        return got

    def teardown(self) -> None:
        self.loop.run_until_complete(self.redis.close())
        self.loop.close()

    @initialize(policy=gate_policies())
    def start(self, policy: GatePolicy) -> None:
        self.policy = policy
        self.levels = policy.level_set.names
        self.memory.configure(policy)
        self.redis.configure(policy)

    @rule(data=st.data(), size=st.integers(1, 3))
    def enqueue(self, data: st.DataObject, size: int) -> None:
        now = self.clock()
        jobs = []
        for _ in range(size):
            delay = data.draw(st.sampled_from([None, None, -1.0, 0.0, 5.0, 30.0]))
            deadline = data.draw(st.sampled_from([None, None, 0.0, 10.0, 60.0]))
            jobs.append(
                Job(
                    id=f"j{next(self.count)}",
                    task="t",
                    payload=b"\x00args",
                    level=data.draw(st.sampled_from(self.levels)),
                    flow=data.draw(st.sampled_from(FLOWS)),
                    retry=RetryPolicy(data.draw(st.integers(0, 2))),
                    deadline=None if deadline is None else now + deadline,
                    run_at=None if delay is None else now + delay,
                    idempotency_key=data.draw(st.sampled_from(KEYS)),
                    result_ttl=data.draw(st.sampled_from([30.0, 500.0])),
                )
            )
        if size == 1:
            self.both(lambda b: b.enqueue(jobs[0]))
        else:
            self.both(lambda b: b.enqueue_many(jobs))
        self.ids.extend(job.id for job in jobs)

    @precondition(lambda self: self.ids)
    @rule(data=st.data(), twice=st.booleans())
    def enqueue_taken_id(self, data: st.DataObject, twice: bool) -> None:
        """All or nothing: a batch with an id stored, or given twice, stores none."""
        taken = data.draw(st.sampled_from(self.ids))
        fresh = f"j{next(self.count)}"
        ids = [fresh, fresh] if twice else [fresh, taken]
        jobs = [Job(id=i, task="t", payload=b"", level=self.levels[0]) for i in ids]

        async def attempt(broker: Broker) -> str:
            try:
                await broker.enqueue_many(jobs)
            except ValueError as error:
                return str(error)
            return "stored"

        self.both(attempt)

    def outcomes(self, data: st.DataObject, worker: str) -> list[Outcome]:
        held = self.held[worker]
        chosen = data.draw(
            st.lists(st.sampled_from(sorted(held)), unique=True) if held else st.just([])
        )
        out = []
        now = self.clock()
        for job_id in chosen:
            kind = data.draw(st.sampled_from(list(OutcomeKind)))
            attempt = held.pop(job_id) + data.draw(st.sampled_from([0, 0, 0, 1]))
            retry_at = data.draw(st.sampled_from([None, now - 1, now, now + 7]))
            error = data.draw(st.sampled_from([None, "ValueError: no"]))
            out.append(
                Outcome(
                    job_id,
                    attempt,
                    kind,
                    result=b"r",
                    error=error,
                    traceback=error,
                    retry_at=retry_at,
                )
            )
        return out

    @rule(
        data=st.data(),
        worker=st.sampled_from(WORKERS),
        limit=st.integers(0, 3),
        lease=st.sampled_from([5.0, 20.0]),
    )
    def reserve(self, data: st.DataObject, worker: str, limit: int, lease: float) -> None:
        finished = self.outcomes(data, worker)
        levels = data.draw(
            st.one_of(st.none(), st.lists(st.sampled_from(self.levels), unique=True))
        )
        jobs = self.both(
            lambda b: b.reserve(worker, limit, lease=lease, levels=levels, finished=finished)
        )
        for job in jobs:
            self.held[worker][job.id] = job.attempts

    @rule(data=st.data(), worker=st.sampled_from(WORKERS))
    def finish(self, data: st.DataObject, worker: str) -> None:
        outcomes = self.outcomes(data, worker)
        self.both(lambda b: b.finish(worker, outcomes))

    @rule(worker=st.sampled_from(WORKERS), lease=st.sampled_from([5.0, 20.0]), data=st.data())
    def heartbeat(self, worker: str, lease: float, data: st.DataObject) -> None:
        ids = sorted(self.held[worker]) + data.draw(st.lists(st.sampled_from(self.ids or ["x"])))
        lost = self.both(lambda b: b.heartbeat(worker, ids, lease))
        for job_id in lost:
            self.held[worker].pop(job_id, None)

    @rule(seconds=st.sampled_from([0.5, 3.0, 6.0, 25.0, 130.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.ids))
        self.both(lambda b: b.cancel(job_id))

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.ids))
        self.both(lambda b: b.get(job_id))
        self.both(lambda b: b.wait(job_id, 0.0))

    @rule(limit=st.integers(0, 4))
    def dead(self, limit: int) -> None:
        self.both(lambda b: b.dead(limit))

    @rule(data=st.data())
    def requeue_dead(self, data: st.DataObject) -> None:
        ids = data.draw(
            st.one_of(st.none(), st.lists(st.sampled_from(self.ids or ["x"]), unique=True))
        )
        self.both(lambda b: b.requeue_dead(ids))

    @rule()
    def stats(self) -> None:
        self.both(lambda b: b.stats())


def test_redis_broker_answers_as_memory_broker_does(redis_url: str) -> None:
    TwinMachine.url = redis_url
    TwinMachine.steps = 0
    run_state_machine_as_test(
        TwinMachine,
        settings=settings(
            max_examples=60,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )
    assert TwinMachine.steps >= MIN_STEPS


# -- what only Redis has ---------------------------------------------------------------

POLICY = GatePolicy(capacity=10, name="jobs")


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())  # type: ignore[arg-type]


def cluster_url(urls: list[str]) -> str:
    return urls[0].replace("redis://", "redis+cluster://")


@asynccontextmanager
async def opened(url: str, queue: str, **options: object) -> AsyncIterator[RedisBroker]:
    broker = RedisBroker.from_url(url, queue=queue, **options)  # type: ignore[arg-type]
    broker.configure(POLICY)
    try:
        yield broker
    finally:
        await broker.close()


def job(job_id: str, level: str = "normal", **fields: Any) -> Job:
    return Job(id=job_id, task="t", payload=b"[]", level=level, **fields)


#: every kind of key a queue has, before any ':<rank>' or ':<id>' (see redis.py)
KEY_KINDS = {
    "meta", "counters", "clocks", "flows", "gate", "scheduled", "leases", "deadlines",
    "expiries", "dead", "idem", "watched", "woken", "memo", "memo_times", "ready", "waiting",
    "sleepers",
}  # fmt: skip


def test_every_key_of_a_queue_shares_one_cluster_slot(redis_cluster_urls: list[str]) -> None:
    """Every key a script is given (KEYS) and every key found on the nodes is in one slot.

    Found keys are the declared ones, or job hashes, which the scripts name
    themselves from the same hash tag.
    """
    queue = unique_queue("slots")
    clock = ManualClock()

    async def body() -> None:
        async with opened(cluster_url(redis_cluster_urls), queue, clock=clock) as broker:
            now = clock()
            await broker.enqueue_many(
                [
                    job("a", flow="tenant", idempotency_key="k"),
                    job("b", run_at=now + 30),
                    job("c", retry=RetryPolicy(0)),
                    job("d", level="low", deadline=now + 60),
                ]
            )
            held = await broker.reserve("w", 2, lease=60)
            assert [j.id for j in held] == ["a", "c"]
            await broker.reserve(
                "w", 0, lease=60, finished=[Outcome("c", 1, OutcomeKind.FAILED, retry_at=None)]
            )
            assert [j.id for j in await broker.dead()] == ["c"]
            declared = [key.decode() for key in broker._keys]

        found: list[str] = []
        for url in redis_cluster_urls:
            node = Redis.from_url(url)
            found += [k.decode() async for k in node.scan_iter(match=f"{{prioritize:{queue}}}*")]
            slots = {await node.execute_command("CLUSTER", "KEYSLOT", k) for k in declared + found}
            await node.aclose()
            assert len(slots) == 1
        base = f"{{prioritize:{queue}}}:"
        assert declared == [base + "meta"]
        jobs = {k for k in found if k.startswith(base + "job:")}
        assert len(jobs) == 4
        kinds = {k.removeprefix(base).split(":")[0] for k in set(found) - jobs}
        assert kinds <= KEY_KINDS
        assert len(kinds) >= 12  # most kinds of key were made: all of them in the slot

    run(body)


@pytest.mark.parametrize("kind", ["redis", "redis-cluster"])
def test_scripts_are_loaded_again_after_script_flush(
    kind: str, request: pytest.FixtureRequest
) -> None:
    if kind == "redis":
        urls = [request.getfixturevalue("redis_url")]
        url = urls[0]
    else:
        urls = request.getfixturevalue("redis_cluster_urls")
        url = cluster_url(urls)

    async def flush() -> None:
        for node_url in urls:
            node = Redis.from_url(node_url)
            assert await node.script_flush()
            await node.aclose()

    async def body() -> None:
        async with opened(url, unique_queue("flush")) as broker:
            await broker.enqueue(job("a"))
            await flush()
            assert len(await broker.reserve("w", 1, lease=60)) == 1
            await flush()
            assert await broker.finish("w", [Outcome("a", 1, OutcomeKind.SUCCEEDED)]) == [True]
            assert (await broker.stats()).levels["normal"].succeeded == 1

    run(body)


@pytest.fixture(scope="module")
def unix_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis listening on a unix socket (and a loopback port nobody uses here)."""
    require_redis()
    directory = tmp_path_factory.mktemp("redis-unix")
    path = str(directory / "redis.sock")
    with _server(directory, "--unixsocket", path, "--unixsocketperm", "700"):
        yield path


def test_from_url_opens_each_kind_of_url(
    redis_url: str, redis_cluster_urls: list[str], unix_socket: str
) -> None:
    async def works(url: str) -> type:
        broker = open_broker(url)
        assert isinstance(broker, RedisBroker)
        broker = RedisBroker.from_url(url, queue=unique_queue("urls"))
        broker.configure(POLICY)
        try:
            await broker.enqueue(job("a"))
            assert (await broker.get("a")) is not None
            return type(broker._client)
        finally:
            await broker.close()

    async def body() -> None:
        assert await works(redis_url) is Redis
        assert await works(f"unix://{unix_socket}?db=2") is Redis
        assert await works(cluster_url(redis_cluster_urls)) is RedisCluster
        assert await works(cluster_url(redis_cluster_urls) + "/0") is RedisCluster

    run(body)


def test_from_url_passes_options_to_the_client_and_knows_tls(redis_url: str) -> None:
    broker = RedisBroker.from_url(redis_url, socket_timeout=7.5, client_name="jobs-test")
    assert isinstance(broker._client, Redis)
    assert broker._client.connection_pool.connection_kwargs["socket_timeout"] == 7.5
    tls = RedisBroker.from_url(redis_url.replace("redis://", "rediss://"))
    assert isinstance(tls._client, Redis)
    assert tls._client.connection_pool.connection_class is SSLConnection
    assert "rediss://127.0.0.1:" in where(tls._client)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:6379", "Redis URL 'localhost:6379': expected 'redis://host:port/db'"),
        ("http://localhost/0", "Redis URL 'http://localhost/0': scheme 'http' is not one of"),
        ("redis://localhost:notaport/0", "Redis URL 'redis://localhost:notaport/0': Port could"),
        ("redis+cluster:///0", "Redis URL 'redis\\+cluster:///0': name a node of the cluster"),
        ("redis+cluster://h:7000/3", "a cluster has only database 0; remove '/3' from the URL"),
    ],
)
def test_a_bad_url_is_refused_naming_what_is_accepted(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedisBroker.from_url(url)


def test_bad_settings_are_refused_naming_what_is_accepted(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    with pytest.raises(ValueError, match=r"queue = 'a\{b\}': expected a non-empty name without"):
        RedisBroker(client, queue="a{b}")
    with pytest.raises(ValueError, match="prefix = '': expected a non-empty name"):
        RedisBroker(client, prefix="")
    for ttl in (0, float("inf"), True):
        with pytest.raises(ValueError, match=f"dead_ttl = {ttl!r}: expected a finite number"):
            RedisBroker(client, dead_ttl=ttl)
    decoding = Redis.from_url(redis_url, decode_responses=True)
    with pytest.raises(ValueError, match="Redis client has decode_responses=True: RedisBroker"):
        RedisBroker(decoding)
    cluster = RedisCluster(host="127.0.0.1", port=7000, decode_responses=True)
    with pytest.raises(ValueError, match="RedisCluster client has decode_responses=True"):
        RedisBroker(cluster)


def test_an_unconfigured_broker_says_how_to_configure_it(redis_url: str) -> None:
    async def body() -> None:
        broker = RedisBroker.from_url(redis_url)
        with pytest.raises(RuntimeError, match=r"not configured: .* broker.configure\(gate_p"):
            await broker.enqueue(job("a"))
        await broker.close()

    run(body)


def test_a_queue_keeps_the_levels_it_was_made_with(redis_url: str) -> None:
    queue = unique_queue("levels")
    other = GatePolicy(capacity=2, level_set=LevelSet(["fast", "slow"]))

    async def body() -> None:
        async with opened(redis_url, queue) as broker:
            await broker.enqueue(job("a"))
            with pytest.raises(ValueError, match="it cannot switch to \\['fast', 'slow'\\]"):
                broker.configure(other)
        elsewhere = RedisBroker.from_url(redis_url, queue=queue)
        elsewhere.configure(other)
        message = (
            f"queue '{queue}' \\(prefix 'prioritize'\\) in Redis holds jobs of levels "
            "\\['critical', 'high', 'normal', 'low', 'bulk'\\]; this broker is configured "
            "for \\['fast', 'slow'\\]"
        )
        with pytest.raises(ValueError, match=message):
            await elsewhere.stats()
        await elsewhere.close()

    run(body)


def test_a_server_that_cannot_be_reached_raises_store_error() -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/3"

    async def body() -> None:
        broker = RedisBroker.from_url(url, queue="q", retry=Retry(NoBackoff(), 1))
        broker.configure(POLICY)
        message = (
            f"the job store redis://127.0.0.1:{port}/3 \\(queue 'q'\\) cannot be used: "
            "ConnectionError"
        )
        with pytest.raises(StoreError, match=message) as caught:
            await broker.enqueue(job("a"))
        assert isinstance(caught.value, OSError)
        await broker.close()

    run(body)


@pytest.mark.parametrize("kind", ["url", "client", "cluster-client"])
def test_copy_serves_another_event_loop(kind: str, request: pytest.FixtureRequest) -> None:
    queue = unique_queue("copy")
    if kind == "cluster-client":
        host, port = request.getfixturevalue("redis_cluster_urls")[0][8:].split(":")
        client: Redis | RedisCluster = RedisCluster(host=host, port=int(port))
        broker = RedisBroker(client, queue=queue)
    elif kind == "client":
        broker = RedisBroker(Redis.from_url(request.getfixturevalue("redis_url")), queue=queue)
    else:
        broker = RedisBroker.from_url(request.getfixturevalue("redis_url"), queue=queue)
    broker.configure(POLICY)
    copy = broker.copy()
    assert copy._client is not broker._client
    assert type(copy._client) is type(broker._client)

    async def store() -> None:
        await broker.enqueue(job("a"))
        await broker.close()

    async def read() -> None:
        assert (await copy.get("a")) is not None
        await copy.close()

    asyncio.run(store())
    result: list[BaseException | None] = [None]

    def other_thread() -> None:
        try:
            asyncio.run(read())
        except BaseException as error:  # reported in the test's thread
            result[0] = error

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert result[0] is None


def test_a_resent_call_returns_its_first_answer_instead_of_acting_twice(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py resends a command whose reply a dropped connection lost; the token it
    carries (the same on a resend) makes the script answer as it did the first time."""
    calls = itertools.count()  # each call below is made twice: the second one is the resend

    async def body() -> None:
        async with opened(redis_url, unique_queue("resend")) as broker:
            monkeypatch.setattr(
                "prioritize.jobs.brokers.redis.secrets.token_hex", lambda n: f"t{next(calls) // 2}"
            )
            first = await broker.enqueue(job("a", retry=RetryPolicy(0)))
            assert await broker.enqueue(job("a", retry=RetryPolicy(0))) == first
            assert await broker.enqueue(job("b")) == await broker.enqueue(job("b"))
            held = await broker.reserve("w", 1, lease=60)
            assert await broker.reserve("w", 1, lease=60) == held
            assert held[0].attempts == 1
            outcome = Outcome("a", 1, OutcomeKind.FAILED, error="E: no")
            assert await broker.finish("w", [outcome]) == [True]
            assert await broker.finish("w", [outcome]) == [True]
            assert await broker.requeue_dead() == 1
            assert await broker.requeue_dead() == 1
            stats = (await broker.stats()).levels["normal"]
            assert (stats.queued, stats.running, stats.failed, stats.dead) == (2, 0, 1, 0)

    run(body)


def test_repr_shows_the_queue_the_server_kind_and_the_waiters(redis_url: str) -> None:
    broker = RedisBroker.from_url(redis_url, queue="q", prefix="app")
    assert repr(broker) == "<RedisBroker {app:q} on a Redis server, 0 waiting>"


def test_the_lua_scripts_ship_inside_the_package() -> None:
    """The broker reads its scripts as package data: every one it names is there."""
    folder = resources.files("prioritize.jobs.brokers").joinpath("lua")
    shipped = {p.name for p in folder.iterdir() if p.name.endswith(".lua")}
    assert shipped == {f"{name}.lua" for name in (*SCRIPTS, "common", "gate")}
