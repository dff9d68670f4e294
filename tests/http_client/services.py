"""Real downstream services for the outbound transport's tests, served by uvicorn.

`Overloaded` holds up to ``capacity`` requests at once and answers every
request beyond that with 503 and ``Retry-After``; the test releases the held
ones when a wave of calls has been fully answered or held, so how many calls
a wave gets served is exact, never a matter of timing. `Echo` answers with
the headers it received.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]


async def respond(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class Overloaded:
    """A service of ``capacity`` concurrent requests; beyond it: 503 with ``Retry-After``.

    Held requests wait for `release`. ``healthy = True`` serves every request
    at once. ``seen`` counts arrivals by their ``x-priority`` header,
    ``rejected`` the 503s. ``on_hold`` is called (in the server's thread)
    whenever a request starts being held.
    """

    def __init__(self, capacity: int, retry_after: str | None = "1") -> None:
        self.capacity = capacity
        self.retry_after = retry_after
        self.healthy = False
        self.held = 0
        self.seen: Counter[str | None] = Counter()
        self.rejected: Counter[str | None] = Counter()
        self.on_hold: Callable[[], None] = lambda: None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release: asyncio.Event | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        level = header(scope, b"x-priority")
        with self._lock:
            self.seen[level] += 1
        if self.healthy:
            await respond(send, 200, b"ok", [])
            return
        if self.held >= self.capacity:
            with self._lock:
                self.rejected[level] += 1
            extra = (
                [] if self.retry_after is None else [(b"retry-after", self.retry_after.encode())]
            )
            await respond(send, 503, b"overloaded", extra)
            return
        if self._release is None:
            self._loop = asyncio.get_running_loop()
            self._release = asyncio.Event()
        release = self._release
        self.held += 1
        self.on_hold()
        await release.wait()
        self.held -= 1
        await respond(send, 200, b"ok", [])

    def release(self) -> None:
        """Answer every held request (callable from any thread)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._open)

    def _open(self) -> None:
        released, self._release = self._release, asyncio.Event()
        if released is not None:
            released.set()


class Echo:
    """Answers ``{"headers": {...}}`` with every header it received (names lowercase)."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.calls += 1
        headers = {
            key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]
        }
        body = json.dumps({"headers": headers}).encode()
        await respond(send, 200, body, [(b"content-type", b"application/json")])
