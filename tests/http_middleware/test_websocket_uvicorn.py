"""Websockets through a real uvicorn: admitted at connect, refused with 503 when shed."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from prioritize.http.middleware import PriorityMiddleware
from tests.servers import serve_asgi

from .apps import policy


class Live:
    """``/hold`` (HTTP) keeps the api gate's only seat; ``/live`` and ``/export`` are websockets."""

    def __init__(self) -> None:
        self.hold = threading.Event()
        self.entered = threading.Event()
        self.middleware = PriorityMiddleware(self, policy(), gate="api")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] == "http":
            self.entered.set()
            await asyncio.to_thread(self.hold.wait)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        message = await receive()
        level = scope["state"]["priority"].name
        await send({"type": "websocket.send", "text": f"{level}:{message.get('text')}"})
        await send({"type": "websocket.close", "code": 1000})

    def in_use(self) -> int:
        return self.middleware.gates["api"].scheduler.in_use


def test_a_websocket_is_admitted_at_connect_and_keeps_no_seat_for_its_session() -> None:
    live = Live()

    async def body(base: str) -> None:
        async with connect(base.replace("http", "ws") + "/payments/live") as socket:
            assert live.in_use() == 0  # accepted: the seat went back with the answer
            await socket.send("hello")
            assert await socket.recv() == "critical:hello"

    with serve_asgi(live.middleware, ws="websockets-sansio") as base:
        asyncio.run(body(base))
    assert live.in_use() == 0


def test_a_shed_websocket_gets_503_with_a_problem_body() -> None:
    live = Live()

    async def body(base: str) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            holding = asyncio.ensure_future(http.get("/hold"))
            await asyncio.to_thread(live.entered.wait)
            with pytest.raises(InvalidStatus) as refused:
                async with connect(base.replace("http", "ws") + "/export/live"):
                    pass
            live.hold.set()
            assert (await holding).status_code == 200
        response = refused.value.response
        assert response.status_code == 503
        assert response.headers["Retry-After"].isdigit()
        problem = json.loads(response.body)
        assert (problem["level"], problem["reason"]) == ("bulk", "limit")

    with serve_asgi(live.middleware, ws="websockets-sansio") as base:
        asyncio.run(body(base))
