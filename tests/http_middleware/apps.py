"""ASGI apps and policies the middleware tests put behind `PriorityMiddleware`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

from prioritize import Policy, current_level, policy_from_toml

POLICY_TOML = """
[gates.api]
capacity = 1
queue = 8

[gates.api.levels.critical]
max_wait = 30

[gates.api.levels.high]
max_wait = 30

[gates.api.levels.normal]
max_wait = 30

[gates.api.levels.low]
max_wait = 30

[gates.api.levels.bulk]
max_wait = 0

[gates.admin]
capacity = 1

[[rules]]
path_prefix = "/payments"
level = "critical"

[[rules]]
path_prefix = "/export"
level = "bulk"

[[rules]]
path_prefix = "/reports"
level = "low"
"""


def policy(toml: str = POLICY_TOML) -> Policy:
    return policy_from_toml(toml, "middleware-test.toml")


class Recorder:
    """An ASGI app that answers with what it saw, and can be held at a gate by the test.

    ``GET /hold/...`` waits on ``release`` before answering, so a test can
    keep a seat taken. Every request records ``(path, level)`` in ``seen``
    in the order the app was entered.
    """

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        self.release = asyncio.Event()
        self.entered = asyncio.Event()
        self.lifespan: list[str] = []

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                self.lifespan.append(message["type"])
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        level = current_level()
        state_level = scope.get("state", {}).get("priority")
        self.seen.append((scope["path"], level.name if level else None))
        self.entered.set()
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"].startswith("/hold"):
            await self.release.wait()
        if scope["path"].startswith("/boom"):
            raise RuntimeError("the app failed")
        payload = {
            "level": level.name if level else None,
            "state": state_level.name if state_level else None,
            "body": body.decode(),
        }
        data = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": data})


class Streamer:
    """Streams ``chunks`` chunks, each sent when the test sets ``go`` (then cleared)."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        self.go = asyncio.Event()
        self.sent = 0

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for index in range(self.chunks):
            await self.go.wait()
            self.go.clear()
            self.sent += 1
            more = index < self.chunks - 1
            await send({"type": "http.response.body", "body": b"x", "more_body": more})
