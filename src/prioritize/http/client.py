"""Outbound HTTP calls: carry the level to the next service, and back off from an overloaded one.

`PriorityTransport` (for ``httpx.AsyncClient``) and `SyncPriorityTransport`
(for ``httpx.Client``) wrap the transport that really sends, and do two
things to every call:

* **Propagation.** The call's level travels in the priority headers that
  `TrustPolicy.sign` produces: a plain ``x-priority`` header, and with a
  shared secret a signed ``x-priority-token`` that lets the next service
  (running `PriorityMiddleware` with the same secret) serve the call at that
  level even when it is higher than its own rules would give. By default
  the level is the one of the request being served (`current_level`), as
  Google's SRE practice propagates criticality from call to call.
* **Client-side throttling** per downstream ``host:port`` and level
  (`ClientThrottle`): while a host rejects calls (429, 503, transport
  errors) some calls are refused here, before they are sent, the least
  important levels first, and a ``Retry-After`` pauses the host. A refused
  call raises `Rejected` with reason ``throttled`` and a ``retry_after``,
  never a silent drop; the downstream's own responses, 503s included, are
  returned to the caller untouched.

The level of a call is, in order: ``request.extensions["priority"]`` (a
level name or `Level`), the transport's fixed ``level``, `current_level()`;
with none of them no priority header is sent, and the call is throttled as
the middle level of the set (as `Classifier` defaults).

Both transports guard the throttle with a lock, taken only around its
counters, never around I/O, so one transport may serve many threads or
event loops. The window runs on ``clock`` (monotonic by default, injectable
for tests); HTTP dates in ``Retry-After`` and token expiry use
``wall_clock``.
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import final

import httpx

from ..context import current_level
from ..core.levels import DEFAULT_LEVELS, Level, LevelSet
from ..core.throttle import ClientThrottle, ThrottleStats
from ..core.tickets import Reason
from ..core.trust import TrustPolicy
from ..errors import ConfigError, Rejected, did_you_mean

__all__ = ["EXTENSION", "PriorityTransport", "SyncPriorityTransport", "retry_after_seconds"]

#: the request extension naming a call's level: ``client.get(url, extensions={"priority": "low"})``
EXTENSION = "priority"
#: the statuses with which a downstream says it is overloaded
_OVERLOADED = frozenset({429, 503})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SECONDS = re.compile(r"^\d+(?:\.\d+)?$")


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value, or None if absent or unreadable.

    Accepts delay-seconds (``"120"``, leniently ``"1.5"``) and an HTTP date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``), counted from ``now`` (unix time);
    a date in the past is 0. Never raises: the value comes from a server.
    """
    if value is None:
        return None
    value = value.strip()
    if _SECONDS.match(value):
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC with no claim about local time
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True, slots=True)
class _Call:
    """A call the throttle let through, to be recorded when its outcome is known."""

    throttle: ClientThrottle
    host: str
    rank: int


class _Outbound:
    """What both transports do around the inner one: the level, the headers, the throttle."""

    def __init__(
        self,
        *,
        level: Level | str | None,
        levels: LevelSet,
        trust: TrustPolicy | None,
        propagate: bool,
        throttle: ClientThrottle | bool,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        seed: int | None,
    ) -> None:
        if not isinstance(levels, LevelSet):
            raise TypeError(f"levels must be a LevelSet, not {levels!r}")
        if trust is not None and not isinstance(trust, TrustPolicy):
            raise TypeError(f"trust must be a TrustPolicy or None, not {trust!r}")
        if not isinstance(propagate, bool):
            raise TypeError(f"propagate must be True or False, not {propagate!r}")
        if throttle is True:
            throttle = ClientThrottle(levels)
        elif isinstance(throttle, ClientThrottle) and throttle.levels != levels:
            raise ConfigError(
                f"the throttle's levels {throttle.levels.names} differ from the transport's "
                f"{levels.names}; build it with ClientThrottle(levels)"
            )
        elif throttle is not False and not isinstance(throttle, ClientThrottle):
            raise TypeError(f"throttle must be True, False or a ClientThrottle, not {throttle!r}")
        for name, fn in (("clock", clock), ("wall_clock", wall_clock)):
            if not callable(fn):
                raise TypeError(f"{name} must be a callable returning seconds, not {fn!r}")
        self.levels = levels
        self.level = None if level is None else _fixed_level(level, levels)
        self.trust = TrustPolicy() if trust is None else trust
        self.propagate = propagate
        self.throttle = throttle or None
        self.clock = clock
        self.wall_clock = wall_clock
        self.refused: Counter[str] = Counter()
        self._unlabelled = levels[len(levels) // 2]
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def level_of(self, request: httpx.Request) -> Level | None:
        """The call's level: its extension, else the fixed level, else the current one."""
        asked = request.extensions.get(EXTENSION)
        if asked is not None:
            return self._known(asked, f"request.extensions[{EXTENSION!r}]")
        if self.level is not None:
            return self.level
        current = current_level()
        if current is None:
            return None
        hint = "pass the policy's levels to the transport; "
        return self._known(current, "the current level (prioritize.current_level())", hint)

    def _known(self, level: object, where: str, hint: str = "") -> Level:
        name = level.name if isinstance(level, Level) else level
        if isinstance(name, str) and name in self.levels:
            return self.levels[name]
        raise ValueError(
            f"{where} = {name!r}: not a level of this transport; {hint}"
            f"{did_you_mean(name, self.levels.names)}valid levels are {self.levels.names}"
        )

    def before(self, request: httpx.Request) -> _Call | None:
        """Throttle, then label the call; raises `Rejected` if it is refused here."""
        level = self.level_of(request)
        call = None
        if self.throttle is not None:
            throttled_as = level or self._unlabelled
            call = _Call(self.throttle, _host_key(request.url), throttled_as.rank)
            with self._lock:
                draw = self._random.random()
                wait = call.throttle.decide(call.host, call.rank, self.clock(), draw)
                if wait is not None:
                    self.refused[throttled_as.name] += 1
            if wait is not None:
                raise Rejected(throttled_as.name, Reason.THROTTLED, wait)
        if self.propagate and level is not None:
            headers = request.headers
            headers.pop(self.trust.signed_header, None)  # a forwarded token must not outrank us
            headers.update(self.trust.sign(level.name, self.wall_clock()))
        return call

    def answered(self, call: _Call | None, response: httpx.Response) -> None:
        if call is None:
            return
        if response.status_code in _OVERLOADED:
            retry = retry_after_seconds(response.headers.get("retry-after"), self.wall_clock())
            self._record(call, accepted=False, retry_after=retry)
        else:
            self._record(call, accepted=True, retry_after=None)

    def failed(self, call: _Call | None) -> None:
        """The call never got an answer (refused connection, timeout): not accepted."""
        if call is not None:
            self._record(call, accepted=False, retry_after=None)

    def _record(self, call: _Call, accepted: bool, retry_after: float | None) -> None:
        with self._lock:
            call.throttle.record(call.host, call.rank, self.clock(), accepted, retry_after)

    def stats(self, host: str) -> ThrottleStats:
        if self.throttle is None:
            raise RuntimeError("this transport does not throttle (throttle=False)")
        with self._lock:
            return self.throttle.stats(host, self.clock())


def _fixed_level(level: Level | str, levels: LevelSet) -> Level:
    name = level.name if isinstance(level, Level) else level
    if isinstance(name, str) and name in levels:
        return levels[name]
    raise ConfigError(
        f"level = {name!r}: not a level; {did_you_mean(name, levels.names)}"
        f"valid levels are {levels.names}, or None for the current level"
    )


def _host_key(url: httpx.URL) -> str:
    """``host:port`` of a URL, the default port filled in, IPv6 hosts in brackets."""
    port = url.port or _DEFAULT_PORTS.get(url.scheme, 0)
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{host}:{port}"


class _Views:
    """The constructor arguments and the read-only views both transports share."""

    _outbound: _Outbound

    @property
    def levels(self) -> LevelSet:
        return self._outbound.levels

    @property
    def trust(self) -> TrustPolicy:
        return self._outbound.trust

    @property
    def throttle(self) -> ClientThrottle | None:
        """The throttle, or None with ``throttle=False``. Read it through `stats`."""
        return self._outbound.throttle

    @property
    def refused(self) -> Counter[str]:
        """Calls refused here (`Rejected`, reason ``throttled``) so far, by level name."""
        return self._outbound.refused

    def stats(self, host: str) -> ThrottleStats:
        """The throttle's window for ``host`` (``"api.example.com:443"``) as of now."""
        return self._outbound.stats(host)


@final
class PriorityTransport(_Views, httpx.AsyncBaseTransport):
    """An ``httpx.AsyncClient`` transport that propagates the level and throttles per host.

    ``transport`` is the one that really sends (default
    ``httpx.AsyncHTTPTransport()``). ``level`` fixes the level of every call
    (else each call's extension or the current level decides); ``levels``
    must be the set the service's policy uses. ``trust`` gives the header
    names and the secret to sign with (default: plain ``x-priority`` only);
    ``propagate=False`` sends no priority header at all (e.g. to a third
    party). ``throttle`` is True (a default `ClientThrottle`), False, or a
    configured one, not shared with another transport. ``seed`` makes the
    throttle's random draws repeatable. Raises `ConfigError` or `TypeError`
    for a bad argument.
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        level: Level | str | None = None,
        levels: LevelSet = DEFAULT_LEVELS,
        trust: TrustPolicy | None = None,
        propagate: bool = True,
        throttle: ClientThrottle | bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise TypeError(
                f"transport must be an httpx.AsyncBaseTransport (for SyncPriorityTransport: an "
                f"httpx.BaseTransport), not {type(transport).__name__}"
            )
        self._outbound = _Outbound(
            level=level,
            levels=levels,
            trust=trust,
            propagate=propagate,
            throttle=throttle,
            clock=clock,
            wall_clock=wall_clock,
            seed=seed,
        )
        self._transport = transport or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        call = self._outbound.before(request)
        try:
            response = await self._transport.handle_async_request(request)
        except httpx.TransportError:
            self._outbound.failed(call)
            raise
        self._outbound.answered(call, response)
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()

    def __repr__(self) -> str:
        return f"<PriorityTransport {self._outbound.throttle!r}>"


@final
class SyncPriorityTransport(_Views, httpx.BaseTransport):
    """`PriorityTransport` for ``httpx.Client``: the same arguments, a blocking inner transport.

    ``transport`` defaults to ``httpx.HTTPTransport()``.
    """

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        level: Level | str | None = None,
        levels: LevelSet = DEFAULT_LEVELS,
        trust: TrustPolicy | None = None,
        propagate: bool = True,
        throttle: ClientThrottle | bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        if transport is not None and not isinstance(transport, httpx.BaseTransport):
            raise TypeError(
                f"transport must be an httpx.BaseTransport (for PriorityTransport: an "
                f"httpx.AsyncBaseTransport), not {type(transport).__name__}"
            )
        self._outbound = _Outbound(
            level=level,
            levels=levels,
            trust=trust,
            propagate=propagate,
            throttle=throttle,
            clock=clock,
            wall_clock=wall_clock,
            seed=seed,
        )
        self._transport = transport or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        call = self._outbound.before(request)
        try:
            response = self._transport.handle_request(request)
        except httpx.TransportError:
            self._outbound.failed(call)
            raise
        self._outbound.answered(call, response)
        return response

    def close(self) -> None:
        self._transport.close()

    def __repr__(self) -> str:
        return f"<SyncPriorityTransport {self._outbound.throttle!r}>"
