"""httpx transports that spend a budget on every call they send.

`BudgetTransport` spends a `Budget` (asyncio), `SyncBudgetTransport` a
`SyncBudget` (threads). The official ``openai`` and ``anthropic`` clients take
an httpx client, so one argument puts them behind a budget::

    client = AsyncOpenAI(http_client=httpx.AsyncClient(transport=BudgetTransport(budget)))
    client = OpenAI(http_client=httpx.Client(transport=SyncBudgetTransport(sync_budget)))

Clients built on ``httpx2`` (anthropic 2) take an ``httpx2.AsyncClient`` or
``httpx2.Client``; give the transport httpx2's own to send with:
``BudgetTransport(budget, httpx2.AsyncHTTPTransport())``,
``SyncBudgetTransport(sync_budget, httpx2.HTTPTransport())``. The
transports only call what both share.

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

Both transports read requests and answers through one `Exchange`, so they
behave alike; only waiting and sending differ.

A call that fails before an answer (a refused connection, a timeout) keeps
its estimate: the provider may well have counted it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any, final

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "prioritize.llm.transport needs httpx: pip install 'prioritize[llm]'"
    ) from exc

from ..core.levels import Level
from ._exchange import HEADER, Exchange, StreamUsage, check_budget, remaining_of, stream_class
from .budget import Budget, Spend
from .sync_budget import SyncBudget, SyncSpend

__all__ = ["HEADER", "BudgetTransport", "SyncBudgetTransport", "remaining_of"]


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
        check_budget("BudgetTransport", budget, Budget, SyncBudget, "SyncBudgetTransport")
        self.budget = budget
        self._exchange = Exchange(budget, level, estimate)
        self._inner = transport if transport is not None else httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        level, tokens, flow = self._exchange.ask(request)
        spend = self.budget.spend(level, tokens=tokens, flow=flow)
        await spend.__aenter__()
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException as exc:
            await spend.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        if self._exchange.answered(response, spend):
            response.stream = _settled(response.stream, spend)
            return response
        try:
            Exchange.read(response, await response.aread(), spend)
        finally:
            await spend.__aexit__(None, None, None)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@final
class SyncBudgetTransport(httpx.BaseTransport):
    """`BudgetTransport` for ``httpx.Client``: the calling thread waits for its budget.

    Wraps the transport that really sends (``httpx.HTTPTransport()`` by
    default); ``level`` and ``estimate`` as for `BudgetTransport`.
    """

    def __init__(
        self,
        budget: SyncBudget,
        transport: httpx.BaseTransport | None = None,
        *,
        level: Level | str | None = None,
        estimate: Callable[[httpx.Request], float] | None = None,
    ) -> None:
        check_budget("SyncBudgetTransport", budget, SyncBudget, Budget, "BudgetTransport")
        self.budget = budget
        self._exchange = Exchange(budget, level, estimate)
        self._inner = transport if transport is not None else httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        level, tokens, flow = self._exchange.ask(request)
        spend = self.budget.spend(level, tokens=tokens, flow=flow)
        spend.__enter__()
        try:
            response = self._inner.handle_request(request)
        except BaseException as exc:
            spend.__exit__(type(exc), exc, exc.__traceback__)
            raise
        if self._exchange.answered(response, spend):
            response.stream = _settled_sync(response.stream, spend)
            return response
        try:
            Exchange.read(response, response.read(), spend)
        finally:
            spend.__exit__(None, None, None)
        return response

    def close(self) -> None:
        self._inner.close()


class _SettledStream(StreamUsage):
    """An event stream that settles its call with the usage seen in it, when closed."""

    _stream: AsyncIterable[bytes]
    _spend: Spend

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
            if self._finish():
                await self._spend.__aexit__(None, None, None)


class _SyncSettledStream(StreamUsage):
    """`_SettledStream` for a thread's stream."""

    _stream: Iterable[bytes]
    _spend: SyncSpend

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._stream:
            self._seen += chunk
            yield chunk

    def close(self) -> None:
        try:
            closing = getattr(self._stream, "close", None)
            if closing is not None:
                closing()
        finally:
            if self._finish():
                self._spend.__exit__(None, None, None)


def _settled(stream: Any, spend: Spend) -> Any:
    return stream_class(stream, _SettledStream, "AsyncByteStream", httpx.AsyncByteStream)(
        stream, spend
    )


def _settled_sync(stream: Any, spend: SyncSpend) -> Any:
    return stream_class(stream, _SyncSettledStream, "SyncByteStream", httpx.SyncByteStream)(
        stream, spend
    )
