"""PriorityMiddleware in front of a Starlette app, served by a real uvicorn on loopback."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from prioritize import current_level
from prioritize.http.middleware import PriorityMiddleware
from tests.servers import serve_asgi

from .apps import policy


class Service:
    """A Starlette app whose ``/hold`` and ``/stream`` block on events the test sets."""

    def __init__(self) -> None:
        self.hold = threading.Event()
        self.entered = threading.Event()
        self.chunk = threading.Semaphore(0)
        self.seen: list[str] = []
        self.lock = threading.Lock()
        routes = [
            Route("/hold", self.held),
            Route("/stream", self.stream),
            Route("/{path:path}", self.work, methods=["GET", "POST"]),
        ]
        self.middleware = PriorityMiddleware(Starlette(routes=routes), policy(), gate="api")

    async def held(self, request: Request) -> JSONResponse:
        self.entered.set()
        await asyncio.to_thread(self.hold.wait)
        return JSONResponse({"level": request.state.priority.name})

    async def work(self, request: Request) -> JSONResponse:
        level = current_level()
        with self.lock:
            self.seen.append(request.url.path)
        return JSONResponse({"level": level.name if level else None})

    async def stream(self, request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(3):
                await asyncio.to_thread(self.chunk.acquire)
                yield b"x"

        return StreamingResponse(chunks())

    def waiting(self) -> int:
        return self.middleware.gates["api"].scheduler.waiting

    def in_use(self) -> int:
        return self.middleware.gates["api"].scheduler.in_use


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition on the server's state, which lives in the server's thread."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition never held")
        await asyncio.sleep(0.005)


@pytest.fixture
def service() -> Service:
    return Service()


def test_concurrent_clients_are_served_in_policy_order_and_bulk_is_shed(service: Service) -> None:
    async def body(base: str) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            holding = asyncio.ensure_future(http.get("/hold"))
            await asyncio.to_thread(service.entered.wait)
            paths = ["/reports/1", "/catalog/2", "/payments/3", "/catalog/4", "/payments/5"]
            waiting = []
            for path in paths:  # one at a time, so arrival order is known
                waiting.append(asyncio.ensure_future(http.get(path)))
                queued = len(waiting)
                await until(lambda queued=queued: service.waiting() == queued)
            shed = await http.get("/export/6")
            service.hold.set()
            responses = await asyncio.gather(holding, *waiting)
        assert [r.status_code for r in responses] == [200] * 6
        assert service.seen == [
            "/payments/3",
            "/payments/5",
            "/catalog/2",
            "/catalog/4",
            "/reports/1",
        ]
        assert [r.json()["level"] for r in responses[1:]] == [
            "low",
            "normal",
            "critical",
            "normal",
            "critical",
        ]
        assert shed.status_code == 503
        assert shed.headers["content-type"] == "application/problem+json"
        assert shed.headers["retry-after"].isdigit()
        assert shed.json()["level"] == "bulk"

    with serve_asgi(service.middleware) as base:
        asyncio.run(body(base))
    assert service.in_use() == 0


def test_a_client_that_gives_up_while_waiting_frees_its_place(service: Service) -> None:
    async def body(base: str) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            holding = asyncio.ensure_future(http.get("/hold"))
            await asyncio.to_thread(service.entered.wait)
            async with httpx.AsyncClient(base_url=base, timeout=30) as impatient:
                leaving = asyncio.ensure_future(impatient.get("/catalog"))
                await until(lambda: service.waiting() == 1)
                leaving.cancel()  # the client closes its connection while queued
                with pytest.raises(asyncio.CancelledError):
                    await leaving
            await until(lambda: service.middleware.abandoned == 1)
            assert service.waiting() == 0
            service.hold.set()
            assert (await holding).status_code == 200
        assert service.seen == []  # the app never ran the abandoned request

    with serve_asgi(service.middleware) as base:
        asyncio.run(body(base))
    assert service.in_use() == 0


def test_a_streamed_response_keeps_its_seat_until_the_end(service: Service) -> None:
    async def body(base: str) -> None:
        async with (
            httpx.AsyncClient(base_url=base, timeout=30) as http,
            http.stream("GET", "/stream") as response,
        ):
            chunks = response.aiter_raw()
            service.chunk.release()
            assert await anext(chunks) == b"x"
            assert service.in_use() == 1
            queued = asyncio.ensure_future(http.get("/catalog"))  # waits behind the stream
            await until(lambda: service.waiting() == 1)
            service.chunk.release()
            service.chunk.release()
            assert b"".join([c async for c in chunks]) == b"xx"
            assert (await queued).json()["level"] == "normal"

    with serve_asgi(service.middleware) as base:
        asyncio.run(body(base))
    assert service.in_use() == 0
