"""The level travels with outbound calls: headers seen by a real echo service on loopback."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from prioritize import DEFAULT_LEVELS, LevelSet, TrustPolicy, level_scope
from prioritize.core.signing import Verified, verify_priority
from prioritize.http.client import PriorityTransport, SyncPriorityTransport
from tests.servers import serve_asgi

from .services import Echo

SECRET = b"a secret the two services share"
HIGH = DEFAULT_LEVELS["high"]


@pytest.fixture(scope="module")
def echo() -> Echo:
    return Echo()


@pytest.fixture(scope="module")
def url(echo: Echo) -> Iterator[str]:
    with serve_asgi(echo, lifespan="off") as base:
        yield base


def seen(url: str, transport: PriorityTransport, **request: object) -> dict[str, str]:
    """The headers the echo service received for one GET through ``transport``."""

    async def body() -> dict[str, str]:
        async with httpx.AsyncClient(transport=transport, base_url=url) as client:
            response = await client.get("/", **request)  # type: ignore[arg-type]
            headers: dict[str, str] = response.json()["headers"]
            return headers

    return asyncio.run(body())


def test_the_current_level_is_sent_in_the_plain_header(url: str) -> None:
    with level_scope(HIGH):
        headers = seen(url, PriorityTransport())
    assert headers["x-priority"] == "high"
    assert "x-priority-token" not in headers


def test_the_request_extension_overrides_the_current_level(url: str) -> None:
    with level_scope(HIGH):
        headers = seen(url, PriorityTransport(), extensions={"priority": "bulk"})
    assert headers["x-priority"] == "bulk"


def test_a_fixed_level_applies_when_the_request_names_none(url: str) -> None:
    transport = PriorityTransport(level="low")
    with level_scope(HIGH):
        assert seen(url, transport)["x-priority"] == "low"
        assert seen(url, transport, extensions={"priority": "critical"})["x-priority"] == "critical"


def test_without_a_level_no_priority_header_is_sent(url: str) -> None:
    headers = seen(url, PriorityTransport())
    assert "x-priority" not in headers
    assert "x-priority-token" not in headers


def test_with_a_secret_the_level_is_signed_and_verifies_downstream(url: str) -> None:
    now = time.time()
    transport = PriorityTransport(trust=TrustPolicy(secrets=(SECRET,)), wall_clock=lambda: now)
    with level_scope(DEFAULT_LEVELS["critical"]):
        headers = seen(url, transport)
    assert headers["x-priority"] == "critical"
    token = headers["x-priority-token"]
    assert verify_priority(token, secrets=[SECRET], now=now) == Verified("critical", None)
    assert verify_priority(token, secrets=[b"another secret"], now=now).problem == "forged"


def test_custom_header_names_are_used(url: str) -> None:
    trust = TrustPolicy(priority_header="x-lane", signed_header="x-lane-proof", secrets=(SECRET,))
    headers = seen(url, PriorityTransport(trust=trust), extensions={"priority": "normal"})
    assert headers["x-lane"] == "normal"
    assert verify_priority(headers["x-lane-proof"], secrets=[SECRET], now=time.time()).level == (
        "normal"
    )
    assert "x-priority" not in headers


def test_a_forwarded_token_is_replaced_so_it_cannot_outrank_the_call(url: str) -> None:
    upstream = TrustPolicy(secrets=(SECRET,)).sign("critical", time.time())
    headers = seen(url, PriorityTransport(), headers=upstream, extensions={"priority": "low"})
    assert headers["x-priority"] == "low"
    assert "x-priority-token" not in headers


def test_propagate_false_sends_no_priority_header(url: str) -> None:
    with level_scope(HIGH):
        headers = seen(url, PriorityTransport(propagate=False))
    assert "x-priority" not in headers


def test_the_sync_transport_propagates_the_same_way(url: str) -> None:
    trust = TrustPolicy(secrets=(SECRET,))
    with httpx.Client(transport=SyncPriorityTransport(trust=trust), base_url=url) as client:
        with level_scope(HIGH):
            headers = client.get("/").json()["headers"]
        explicit = client.get("/", extensions={"priority": "bulk"}).json()["headers"]
    assert headers["x-priority"] == "high"
    assert verify_priority(
        headers["x-priority-token"], secrets=[SECRET], now=time.time()
    ).level == ("high")
    assert explicit["x-priority"] == "bulk"


def test_the_sync_transport_counts_every_call_from_many_threads(url: str) -> None:
    transport = SyncPriorityTransport()
    with httpx.Client(transport=transport, base_url=url) as client:

        def call(index: int) -> int:
            level = DEFAULT_LEVELS.names[index % 5]
            return client.get("/", extensions={"priority": level}).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(call, range(200))) == {200}
    stats = transport.stats(f"127.0.0.1:{httpx.URL(url).port}")
    assert (stats.requests, stats.accepts) == (200, 200)
    assert stats.requests_by_level == dict.fromkeys(DEFAULT_LEVELS.names, 40)


def test_an_unknown_level_in_the_extension_is_refused_before_sending(url: str, echo: Echo) -> None:
    before = echo.calls
    message = (
        "request.extensions['priority'] = 'hihg': not a level of this transport; "
        "did you mean 'high'? valid levels are ['critical', 'high', 'normal', 'low', 'bulk']"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        seen(url, PriorityTransport(), extensions={"priority": "hihg"})
    with (
        httpx.Client(transport=SyncPriorityTransport(), base_url=url) as client,
        pytest.raises(ValueError, match=re.escape("request.extensions['priority'] = 3: not a")),
    ):
        client.get("/", extensions={"priority": 3})
    assert echo.calls == before


def test_a_current_level_of_another_level_set_is_refused(url: str) -> None:
    tiers = LevelSet(["gold", "silver"])
    message = (
        "the current level (prioritize.current_level()) = 'gold': not a level of this "
        "transport; pass the policy's levels to the transport; valid levels are "
    )
    with level_scope(tiers["gold"]), pytest.raises(ValueError, match=re.escape(message)):
        seen(url, PriorityTransport())
    with level_scope(tiers["silver"]):
        assert seen(url, PriorityTransport(levels=tiers))["x-priority"] == "silver"
