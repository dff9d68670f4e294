"""What a budget transport does around one HTTP call, apart from sending it.

`BudgetTransport` (asyncio) and `SyncBudgetTransport` (threads) differ only
in how they wait and send; what they read from the request and the answer
is one `Exchange`, so both behave alike: the level (an ``x-priority``
header, taken off; the ``"priority"`` extension; the transport's level;
else the budget decides), the flow, the token estimate, the provider's
remaining headers, a 429's pause, and the usage in a JSON answer or, as it
closes, an event stream (`StreamUsage`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Protocol

import httpx

from ..core.budget import RateScheduler
from ..core.levels import Level
from ..http.client import retry_after_seconds
from ._shared import Settling
from .tokens import estimate_tokens, stream_usage, usage_tokens

__all__ = [
    "HEADER",
    "Exchange",
    "StreamUsage",
    "check_budget",
    "remaining_of",
    "report_usage",
    "stream_class",
]

#: the request header naming a call's level; removed before the call is sent
HEADER = "x-priority"
_EXTENSION = "priority"
_REMAINING = {
    "requests": ("x-ratelimit-remaining-requests", "anthropic-ratelimit-requests-remaining"),
    "tokens": ("x-ratelimit-remaining-tokens", "anthropic-ratelimit-tokens-remaining"),
}


class _Budgeted(Protocol):
    """What an exchange needs of a budget: either front-end has it."""

    @property
    def scheduler(self) -> RateScheduler: ...

    def observe(self, remaining: Mapping[str, float]) -> None: ...


def remaining_of(headers: httpx.Headers, dimensions: tuple[str, ...]) -> dict[str, float]:
    """What the provider's rate-limit headers say remains, for the dimensions given."""
    out: dict[str, float] = {}
    for dimension in dimensions:
        for name in _REMAINING.get(dimension, ()):
            value = headers.get(name)
            if value is not None:
                try:
                    out[dimension] = float(value)
                except ValueError:
                    continue  # a server's header: ignored when unreadable, never fatal
                break
    return out


def _retry_after(headers: httpx.Headers) -> float | None:
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    return retry_after_seconds(headers.get("retry-after"), time.time())


def check_budget(front: str, budget: object, expected: type, other: type, other_front: str) -> None:
    """A `TypeError` unless ``budget`` is an ``expected``; a budget of the other kind is named."""
    if isinstance(budget, expected):
        return
    message = f"{front}() takes a {expected.__name__}, not {type(budget).__name__}"
    if isinstance(budget, other):
        message += f" (a {other.__name__} goes with {other_front})"
    raise TypeError(message)


class Exchange:
    """The transport's reading of requests and answers, for a budget of either kind."""

    __slots__ = ("_budget", "_estimate", "_level")

    def __init__(
        self,
        budget: _Budgeted,
        level: Level | str | None,
        estimate: Callable[[httpx.Request], float] | None,
    ) -> None:
        self._budget = budget
        self._level = None if level is None else budget.scheduler.levels.resolve(level)
        if estimate is not None and not callable(estimate):
            raise TypeError(f"estimate = {estimate!r}: expected a function of the request")
        self._estimate = estimate

    def ask(self, request: httpx.Request) -> tuple[Level | str | None, float, Hashable | None]:
        """The call's level (None: the budget's choice), estimated tokens and flow.

        Takes the ``x-priority`` header off the request.
        """
        flow = request.extensions.get("flow")
        return self._level_of(request), self._tokens(request), flow if _hashable(flow) else None

    def answered(self, response: httpx.Response, spend: Settling) -> bool:
        """Read the answer's headers into the budget; True if it is an event stream."""
        remaining = remaining_of(response.headers, self._budget.scheduler.dimensions)
        if remaining:
            self._budget.observe(remaining)
        if response.status_code == 429:
            spend.refused(_retry_after(response.headers))
        return bool(response.headers.get("content-type", "").startswith("text/event-stream"))

    @staticmethod
    def read(response: httpx.Response, content: bytes, spend: Settling) -> None:
        """Report the usage of a read (not streamed) answer."""
        if response.status_code < 400:
            report_usage(spend, usage_tokens(_json(response, content)))

    def _level_of(self, request: httpx.Request) -> Level | str | None:
        if HEADER in request.headers:
            named = str(request.headers[HEADER]).strip()
            del request.headers[HEADER]
            return named
        asked: object = request.extensions.get(_EXTENSION)
        if isinstance(asked, Level | str):
            return asked
        return self._level

    def _tokens(self, request: httpx.Request) -> float:
        if self._estimate is not None:
            return float(self._estimate(request))
        try:
            content = request.content
        except Exception as exc:  # RequestNotRead, of httpx or httpx2: a streamed upload
            if type(exc).__name__ != "RequestNotRead":
                raise
            return 0.0
        return float(estimate_tokens(content))


class StreamUsage:
    """An event stream's bytes as they pass, and the usage they report when it closes.

    The transports' stream wrappers build on it; their other base is the
    stream's own byte-stream class (`stream_class`).
    """

    def __init__(self, stream: Any, spend: Settling) -> None:
        self._stream = stream
        self._spend = spend
        self._seen = bytearray()
        self._finished = False

    def _finish(self) -> bool:
        """Report the usage seen, once: True the first time (then end the spend)."""
        if self._finished:
            return False
        self._finished = True
        report_usage(self._spend, stream_usage(bytes(self._seen)))
        return True


_CLASSES: dict[tuple[type, type], type] = {}


def stream_class(stream: object, wrapper: type, base_name: str, fallback: type) -> type:
    """``wrapper`` mixed with the stream's own ``base_name`` class (httpx's or httpx2's),
    since each client checks its response streams against its own."""
    base = next((c for c in type(stream).__mro__ if c.__name__ == base_name), fallback)
    cls = _CLASSES.get((wrapper, base))
    if cls is None:
        cls = _CLASSES[wrapper, base] = type("SettledStream", (wrapper, base), {})
    return cls


def report_usage(spend: Settling, tokens: int | None) -> None:
    if tokens is not None and not spend.is_refused:
        spend.actual(tokens)


def _json(response: httpx.Response, content: bytes) -> object:
    if not response.headers.get("content-type", "").startswith("application/json"):
        return None
    try:
        return response.json() if content else None
    except ValueError:
        return None


def _hashable(value: object) -> bool:
    return isinstance(value, Hashable)
