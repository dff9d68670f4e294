"""The transports' arguments, and reading Retry-After; every bad argument's message."""

from __future__ import annotations

import re

import httpx
import pytest

from prioritize import ConfigError, LevelSet, TrustPolicy
from prioritize.core.throttle import ClientThrottle
from prioritize.http.client import PriorityTransport, SyncPriorityTransport, retry_after_seconds
from tests.servers import serve_asgi

from .services import Overloaded

NOW = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:28:30 -0000", 30.0),
        ("Wed, 21 Oct 2015 09:28:30 +0200", 30.0),
        ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0),  # in the past: retry now
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1e3", None),
        ("nan", None),
        ("9" * 400, None),  # too large for a float
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(
    value: str | None, seconds: float | None
) -> None:
    assert retry_after_seconds(value, NOW) == seconds


def test_the_transports_expose_their_settings() -> None:
    trust = TrustPolicy(secrets=(b"s",))
    throttle = ClientThrottle(k=3.0)
    transport = PriorityTransport(trust=trust, throttle=throttle)
    assert (transport.trust, transport.throttle, transport.levels.names[0]) == (
        trust,
        throttle,
        "critical",
    )
    assert repr(transport) == (
        "<PriorityTransport <ClientThrottle k=3 window=120s/12 buckets, 0 hosts>>"
    )
    assert PriorityTransport().trust == TrustPolicy()
    unthrottled = SyncPriorityTransport(throttle=False)
    assert unthrottled.throttle is None
    assert repr(unthrottled) == "<SyncPriorityTransport None>"
    with pytest.raises(RuntimeError, match=re.escape("does not throttle (throttle=False)")):
        unthrottled.stats("api:443")


def test_an_unthrottled_transport_sends_everything() -> None:
    service = Overloaded(capacity=0)
    transport = SyncPriorityTransport(throttle=False)
    with serve_asgi(service, lifespan="off") as url, httpx.Client(transport=transport) as client:
        statuses = {client.get(url, extensions={"priority": "bulk"}).status_code for _ in range(50)}
    assert statuses == {503}
    assert service.seen == {"bulk": 50}
    assert transport.refused == {}


ALL = "valid levels are ['critical', 'high', 'normal', 'low', 'bulk']"


@pytest.mark.parametrize("kind", [PriorityTransport, SyncPriorityTransport])
@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"level": "urgent"}, ConfigError, f"level = 'urgent': not a level; {ALL}, or None"),
        ({"level": "hgh"}, ConfigError, "level = 'hgh': not a level; did you mean 'high'?"),
        ({"levels": ["a", "b"]}, TypeError, "levels must be a LevelSet, not ['a', 'b']"),
        ({"trust": "x-priority"}, TypeError, "trust must be a TrustPolicy or None, not 'x-"),
        ({"propagate": "yes"}, TypeError, "propagate must be True or False, not 'yes'"),
        ({"throttle": 2.0}, TypeError, "throttle must be True, False or a ClientThrottle, not 2.0"),
        (
            {"throttle": ClientThrottle(LevelSet(["gold", "silver"]))},
            ConfigError,
            "the throttle's levels ['gold', 'silver'] differ from the transport's ['critical',",
        ),
        ({"clock": 5.0}, TypeError, "clock must be a callable returning seconds, not 5.0"),
        ({"wall_clock": None}, TypeError, "wall_clock must be a callable returning seconds, not"),
    ],
)
def test_a_bad_argument_is_named(
    kind: type[PriorityTransport], arguments: dict[str, object], error: type, message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        kind(**arguments)  # type: ignore[arg-type]


def test_an_inner_transport_of_the_wrong_kind_is_named() -> None:
    with pytest.raises(TypeError, match=re.escape("transport must be an httpx.AsyncBaseTransport")):
        PriorityTransport(httpx.HTTPTransport())  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=re.escape("transport must be an httpx.BaseTransport (for Priority")
    ):
        SyncPriorityTransport(httpx.AsyncHTTPTransport())  # type: ignore[arg-type]
