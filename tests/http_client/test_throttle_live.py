"""Client-side throttling against a real overloaded service, served by uvicorn on loopback.

Calls go out in waves. Each wave's calls are all answered or held by the
service before the held ones are released, so the number of calls a wave
gets served is exactly the service's capacity: the outcome depends on the
throttle's seeded draws, never on timing. The transport's clock is virtual
and moves between waves, so the window ages without sleeping.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from prioritize import Reason, Rejected
from prioritize.http.client import PriorityTransport
from prioritize.testing import VirtualClock
from tests.servers import serve_asgi

from .services import Overloaded

#: one wave of calls: 4 critical, 8 high, 8 normal, 8 low, 12 bulk
MIX = ["critical"] * 4 + ["high"] * 8 + ["normal"] * 8 + ["low"] * 8 + ["bulk"] * 12
CAPACITY = 6
OVERLOAD_WAVES = 20
LEVELS = ["critical", "high", "normal", "low", "bulk"]


@pytest.fixture
def service() -> Overloaded:
    return Overloaded(CAPACITY, retry_after="1")


@pytest.fixture
def url(service: Overloaded) -> Iterator[str]:
    with serve_asgi(service, lifespan="off") as base:
        yield base


async def wave(client: httpx.AsyncClient, service: Overloaded, levels: list[str]) -> Counter[str]:
    """Send one call per level at once; the levels of the calls refused here."""
    changed = asyncio.Event()
    loop = asyncio.get_running_loop()

    def held() -> None:
        loop.call_soon_threadsafe(changed.set)

    service.on_hold = held
    tasks = [
        asyncio.create_task(client.get("/work", extensions={"priority": level})) for level in levels
    ]
    while True:
        changed.clear()
        pending = [task for task in tasks if not task.done()]
        if len(pending) == service.held:  # every call not yet answered is held by the service
            break
        woken = asyncio.ensure_future(changed.wait())
        await asyncio.wait([woken, *pending], return_when=asyncio.FIRST_COMPLETED)
        woken.cancel()
    service.release()
    refused: Counter[str] = Counter()
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(outcome, Rejected):
            assert outcome.reason is Reason.THROTTLED
            assert outcome.retry_after > 0
            refused[outcome.level] += 1
        else:
            assert isinstance(outcome, httpx.Response), outcome
            assert outcome.status_code in (200, 503)
    return refused


def overload(url: str, service: Overloaded, *, throttle: bool) -> tuple[Counter[str], int]:
    """Run the overloaded waves; calls refused here by level, and calls the service saw."""

    async def body() -> Counter[str]:
        clock = VirtualClock()
        transport = PriorityTransport(throttle=throttle, clock=clock, seed=7)
        refused: Counter[str] = Counter()
        async with httpx.AsyncClient(transport=transport, base_url=url, timeout=60) as client:
            for _ in range(OVERLOAD_WAVES):
                refused += await wave(client, service, MIX)
                clock.advance(1.0)  # the service's Retry-After: 1 has just run out
        assert refused == +transport.refused
        return refused

    refused = asyncio.run(body())
    return refused, sum(service.seen.values())


def test_the_client_refuses_calls_locally_least_important_first(
    url: str, service: Overloaded
) -> None:
    refused, seen = overload(url, service, throttle=True)
    offered = Counter(MIX)
    rate = {level: refused[level] / (offered[level] * OVERLOAD_WAVES) for level in LEVELS}
    assert sum(refused.values()) > 0
    assert rate["bulk"] >= rate["low"] >= rate["normal"] > rate["high"] >= rate["critical"]
    assert rate["critical"] == 0.0
    assert rate["bulk"] > 0.9  # every wave but the first, which nothing had been learned from
    assert rate["high"] < 0.1
    assert seen == len(MIX) * OVERLOAD_WAVES - sum(refused.values())
    assert service.seen["critical"] == offered["critical"] * OVERLOAD_WAVES


def test_the_service_sees_far_fewer_calls_than_without_the_throttle(
    url: str, service: Overloaded
) -> None:
    _, throttled_seen = overload(url, service, throttle=True)
    bare = Overloaded(CAPACITY, retry_after="1")
    with serve_asgi(bare, lifespan="off") as bare_url:
        not_refused, unthrottled_seen = overload(bare_url, bare, throttle=False)
    assert not_refused == Counter()
    assert unthrottled_seen == len(MIX) * OVERLOAD_WAVES
    assert throttled_seen < unthrottled_seen / 2
    # the calls served are the same: the service's capacity in every wave
    served = OVERLOAD_WAVES * CAPACITY
    assert throttled_seen - service.rejected.total() == served
    assert unthrottled_seen - bare.rejected.total() == served


def test_the_client_stops_refusing_once_the_service_recovers(url: str, service: Overloaded) -> None:
    async def body() -> None:
        clock = VirtualClock()
        transport = PriorityTransport(clock=clock, seed=11)
        host = httpx.URL(url).host + f":{httpx.URL(url).port}"
        async with httpx.AsyncClient(transport=transport, base_url=url, timeout=60) as client:
            for _ in range(OVERLOAD_WAVES):  # one wave per 10 s bucket, as after recovery
                await wave(client, service, MIX)
                clock.advance(10.0)
            assert transport.stats(host).probability > 0.5
            service.healthy = True
            refusals: list[int] = []
            for _ in range(20):
                refusals.append(sum((await wave(client, service, MIX)).values()))
                clock.advance(10.0)
            stats = transport.stats(host)
        assert refusals[0] > 0  # the throttle still remembers the overload
        assert refusals[0] >= refusals[len(refusals) // 4] >= refusals[len(refusals) // 2]
        first_clear = refusals.index(0)
        assert first_clear <= 12  # within one window (12 buckets) of the recovery
        assert refusals[first_clear:] == [0] * (20 - first_clear)
        assert stats.probability == 0.0
        assert stats.drop == dict.fromkeys(LEVELS, 0.0)

    asyncio.run(body())


def test_retry_after_pauses_the_rejected_level_and_below_but_not_critical() -> None:
    service = Overloaded(capacity=0, retry_after="30")

    async def body(url: str) -> None:
        clock = VirtualClock(100.0)
        transport = PriorityTransport(clock=clock, seed=1)
        async with httpx.AsyncClient(transport=transport, base_url=url, timeout=60) as client:
            first = await client.get("/", extensions={"priority": "low"})
            assert (first.status_code, first.headers["retry-after"]) == (503, "30")
            clock.advance(10.0)
            for level in ("low", "bulk"):
                with pytest.raises(Rejected) as refused:
                    await client.get("/", extensions={"priority": level})
                assert (refused.value.level, refused.value.reason) == (level, Reason.THROTTLED)
                assert refused.value.retry_after == 20.0
            critical = await client.get("/", extensions={"priority": "critical"})
            assert critical.status_code == 503  # sent: the most important level keeps probing
            host = f"127.0.0.1:{httpx.URL(url).port}"
            paused = transport.stats(host).paused
            assert paused == {
                "critical": 0.0,
                "high": 30.0,
                "normal": 30.0,
                "low": 30.0,
                "bulk": 30.0,
            }
            clock.advance(30.0)
            assert transport.stats(host).paused == dict.fromkeys(paused, 0.0)

    with serve_asgi(service, lifespan="off") as url:
        asyncio.run(body(url))
    assert service.seen == {"low": 1, "critical": 1}


def test_retry_after_as_an_http_date_is_read_against_the_wall_clock() -> None:
    service = Overloaded(capacity=0, retry_after="Wed, 21 Oct 2015 07:28:30 GMT")
    wall = 1445412480.0  # 2015-10-21 07:28:00 UTC

    async def body(url: str) -> None:
        clock = VirtualClock()
        transport = PriorityTransport(clock=clock, wall_clock=lambda: wall, seed=1)
        async with httpx.AsyncClient(transport=transport, base_url=url, timeout=60) as client:
            await client.get("/", extensions={"priority": "normal"})
            with pytest.raises(Rejected) as refused:
                await client.get("/", extensions={"priority": "normal"})
        assert refused.value.retry_after == 30.0

    with serve_asgi(service, lifespan="off") as url:
        asyncio.run(body(url))


def test_a_downstream_that_refuses_connections_counts_as_rejecting() -> None:
    with serve_asgi(Overloaded(1), lifespan="off") as url:
        pass  # the port is closed once the server has stopped
    port = httpx.URL(url).port
    transport = PriorityTransport(seed=3)

    async def body() -> list[str]:
        outcomes = []
        async with httpx.AsyncClient(transport=transport, base_url=url) as client:
            for _ in range(6):
                try:
                    await client.get("/", extensions={"priority": "critical"})
                except (httpx.ConnectError, Rejected) as exc:
                    outcomes.append(type(exc).__name__)
        return outcomes

    outcomes = asyncio.run(body())
    assert outcomes[0] == "ConnectError"
    assert "Rejected" in outcomes  # critical alone is the whole traffic, so it is refused too
    stats = transport.stats(f"127.0.0.1:{port}")
    assert (stats.requests, stats.accepts, stats.probability) == (6, 0, 6 / 7)
