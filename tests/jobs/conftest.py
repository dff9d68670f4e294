"""Brokers for the conformance suite: every test of it runs against each of them.

``brokers.open(gate_policy)`` opens a configured broker on a fresh,
empty store whose time is the test's `ManualClock`: leases, delays,
deadlines and TTLs are tested by moving the clock, never by sleeping.
The Redis brokers run against real servers this fixture starts (a
standalone one, and a three-node cluster through ``redis.asyncio.cluster``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from prioritize.core.policy import GatePolicy
from prioritize.jobs import Broker, MemoryBroker
from tests.redis_servers import redis_cluster, redis_server

BROKERS = ["memory", "sqlite", "redis", "redis-cluster"]


class ManualClock:
    """Epoch seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def redis_cluster_urls() -> Iterator[list[str]]:
    with redis_cluster(3) as urls:
        yield urls


_queue_names = itertools.count()
_stores = itertools.count(1)


class BrokerFactory:
    """Opens configured brokers of one kind over one fresh store, inside the test's event loop.

    ``async with brokers.open(gate) as broker:`` — several opens in one test
    share the store (several workers, a restart); each is closed on leaving.
    """

    def __init__(
        self,
        kind: str,
        clock: ManualClock,
        tmp_path: Path,
        request: pytest.FixtureRequest,
        store: int = 0,
    ) -> None:
        self.kind = kind
        self.clock = clock
        self._path = tmp_path / f"jobs-{store}.db"
        self._request = request
        self._queue = f"conformance-{next(_queue_names)}-{time.time_ns()}"

    def fresh(self) -> BrokerFactory:
        """A factory of the same kind over another fresh, empty store (same clock)."""
        return BrokerFactory(self.kind, self.clock, self._path.parent, self._request, next(_stores))

    def make(self, gate: GatePolicy) -> Broker:
        """A new configured broker (connections open lazily, in the running loop)."""
        broker: Broker
        if self.kind == "memory":
            if not hasattr(self, "_memory"):
                self._memory = MemoryBroker(clock=self.clock)
            broker = self._memory
        elif self.kind == "sqlite":
            from prioritize.jobs.brokers.sqlite import SQLiteBroker

            broker = SQLiteBroker(self._path, clock=self.clock)
        else:
            from prioritize.jobs.brokers.redis import RedisBroker

            if self.kind == "redis":
                url = self._request.getfixturevalue("redis_url")
            else:
                urls = self._request.getfixturevalue("redis_cluster_urls")
                url = urls[0].replace("redis://", "redis+cluster://")
            broker = RedisBroker.from_url(url, queue=self._queue, clock=self.clock)
        broker.configure(gate)
        return broker

    @asynccontextmanager
    async def open(self, gate: GatePolicy) -> AsyncIterator[Broker]:
        broker = self.make(gate)
        try:
            yield broker
        finally:
            await broker.close()


@pytest.fixture(params=BROKERS)
def brokers(request: pytest.FixtureRequest, clock: ManualClock, tmp_path: Path) -> BrokerFactory:
    """One kind of broker per run of a test: memory, SQLite, Redis, Redis Cluster."""
    if request.param.startswith("redis"):  # start the servers outside the test's loop
        request.getfixturevalue("redis_url" if request.param == "redis" else "redis_cluster_urls")
    return BrokerFactory(request.param, clock, tmp_path, request)


@pytest.fixture(params=[kind for kind in BROKERS if kind != "memory"])
def stored_brokers(
    request: pytest.FixtureRequest, clock: ManualClock, tmp_path: Path
) -> BrokerFactory:
    """The brokers with a store of their own (checked in lockstep against the memory broker)."""
    if request.param.startswith("redis"):
        request.getfixturevalue("redis_url" if request.param == "redis" else "redis_cluster_urls")
    return BrokerFactory(request.param, clock, tmp_path, request)
