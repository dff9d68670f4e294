"""`BudgetTransport`: an httpx transport that spends a `Budget` on every call it sends.

The official ``openai`` and ``anthropic`` clients take an httpx client, so one
argument puts them behind a budget::

    client = AsyncOpenAI(http_client=httpx.AsyncClient(transport=BudgetTransport(budget)))

Clients built on ``httpx2`` (anthropic 2) take an ``httpx2.AsyncClient``; give the
transport httpx2's own to send with: ``BudgetTransport(budget,
httpx2.AsyncHTTPTransport())``. The transport only calls what both share.

Around each request the transport:

1. picks the level: an ``x-priority`` header (taken off the request, never
   sent to the provider; with the official clients, ``extra_headers=``),
   else ``request.extensions["priority"]``, else the transport's ``level``,
   else `prioritize.current_level()` (the HTTP request's or the job's),
   else the policy's default level;
2. estimates the call's tokens (`estimate_tokens`: the prompt plus
   ``max_tokens``) and waits for budget by its level's share, or raises
   `Rejected` (reason, ``retry_after``) when shed;
3. sends it, then reconciles with the ``usage`` the provider reports
   (read from the JSON answer, or from the event stream as it closes);
4. lowers the budget to the provider's ``x-ratelimit-remaining-*`` /
   ``anthropic-ratelimit-*-remaining`` headers, and on a ``429`` backs off
   and pauses for its ``retry-after-ms`` / ``Retry-After``. The 429 itself is
   returned to the client, whose own retry then waits in the budget's queue.

A call that fails before an answer (a refused connection, a timeout) keeps
its estimate: the provider may well have counted it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Hashable
from typing import Any, final

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "prioritize.llm.transport needs httpx: pip install 'prioritize[llm]'"
    ) from exc

from ..core.levels import Level
from ..http.client import retry_after_seconds
from .budget import Budget, Spend
from .tokens import estimate_tokens, stream_usage, usage_tokens

__all__ = ["HEADER", "BudgetTransport", "remaining_of"]

#: the request header naming a call's level; removed before the call is sent
HEADER = "x-priority"
_EXTENSION = "priority"
_REMAINING = {
    "requests": ("x-ratelimit-remaining-requests", "anthropic-ratelimit-requests-remaining"),
    "tokens": ("x-ratelimit-remaining-tokens", "anthropic-ratelimit-tokens-remaining"),
}


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


@final
class BudgetTransport(httpx.AsyncBaseTransport):
    """Wraps the transport that really sends (``httpx.AsyncHTTPTransport()`` by default).

    ``estimate`` replaces the token estimate (called with the request);
    ``level`` fixes the level of every call without a header or extension.
    """

    def __init__(
        self,
        budget: Budget,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        level: Level | str | None = None,
        estimate: Callable[[httpx.Request], float] | None = None,
    ) -> None:
        if not isinstance(budget, Budget):
            raise TypeError(f"BudgetTransport() takes a Budget, not {type(budget).__name__}")
        self.budget = budget
        self._inner = transport if transport is not None else httpx.AsyncHTTPTransport()
        self._level = None if level is None else budget.scheduler.levels.resolve(level)
        self._estimate = estimate

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        level = self._level_of(request)
        flow = request.extensions.get("flow")
        tokens = self._tokens(request)
        spend = self.budget.spend(level, tokens=tokens, flow=flow if _hashable(flow) else None)
        await spend.__aenter__()
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException as exc:
            await spend.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._observe(response, spend)
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            response.stream = _settled(response.stream, spend)
            return response
        try:
            content = await response.aread()
            if response.status_code < 400:
                _report_usage(spend, usage_tokens(_json(response, content)))
        finally:
            await spend.__aexit__(None, None, None)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()

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

    def _observe(self, response: httpx.Response, spend: Spend) -> None:
        remaining = remaining_of(response.headers, self.budget.scheduler.dimensions)
        if remaining:
            self.budget.observe(remaining)
        if response.status_code == 429:
            spend.refused(_retry_after(response.headers))


class _SettledStream:
    """An event stream that settles its call with the usage seen in it, when closed.

    Its base class is the stream's own ``AsyncByteStream`` (httpx's or httpx2's),
    chosen by `_settled`, since each client checks for its own.
    """

    def __init__(self, stream: AsyncIterable[bytes], spend: Spend) -> None:
        self._stream = stream
        self._spend = spend
        self._seen = bytearray()
        self._settled = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            self._seen += chunk
            yield chunk

    async def aclose(self) -> None:
        try:
            closing = getattr(self._stream, "aclose", None)
            if closing is not None:
                await closing()
        finally:
            if not self._settled:
                self._settled = True
                _report_usage(self._spend, stream_usage(bytes(self._seen)))
                await self._spend.__aexit__(None, None, None)


_STREAM_CLASSES: dict[type, type] = {}


def _settled(stream: Any, spend: Spend) -> Any:
    base = next(
        (cls for cls in type(stream).__mro__ if cls.__name__ == "AsyncByteStream"),
        httpx.AsyncByteStream,
    )
    cls = _STREAM_CLASSES.get(base)
    if cls is None:
        cls = _STREAM_CLASSES[base] = type("SettledStream", (_SettledStream, base), {})
    return cls(stream, spend)


def _report_usage(spend: Spend, tokens: int | None) -> None:
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
