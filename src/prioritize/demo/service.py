"""The demo's service: an endpoint whose work is awaited time, behind `PriorityMiddleware`.

Every path answers ``GET ?work_ms=N`` by awaiting N
milliseconds (as a query or a downstream call would) and replying with the
level the middleware gave the request, so a test can check the rules. The
load generator draws each request's work, which makes the two runs' requests
identical; the server only bounds it. ``/_demo/cpu`` reports the server's
CPU seconds so far and bypasses admission.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from ..config import policy_from_toml
from ..http.middleware import PriorityMiddleware
from .setup import GATE

__all__ = ["CPU_PATH", "MAX_WORK_MS", "build_app", "work_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The path that reports the server's CPU seconds; exempt from admission.
CPU_PATH = "/_demo/cpu"
#: The most work one request may ask for.
MAX_WORK_MS = 10_000.0


async def work_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The endpoint: await the requested work, then answer with the request's level."""
    if scope["type"] != "http":
        return  # lifespan: nothing to set up
    if scope["path"] == CPU_PATH:
        await _reply(send, 200, {"cpu": time.process_time()})
        return
    work = _work_ms(scope.get("query_string", b""))
    if work is None:
        message = f"work_ms must be a number of milliseconds from 0 to {MAX_WORK_MS:g}"
        await _reply(send, 400, {"error": message})
        return
    await asyncio.sleep(work / 1000)
    level = scope.get("state", {}).get("priority")
    await _reply(send, 200, {"level": getattr(level, "name", None), "work_ms": work})


def build_app(policy_toml: str) -> PriorityMiddleware:
    """`work_app` behind the middleware, admitting by the policy in ``policy_toml``."""
    policy = policy_from_toml(policy_toml, "<demo policy>")
    return PriorityMiddleware(work_app, policy, gate=GATE, exempt=["/_demo"])


def _work_ms(query: bytes) -> float | None:
    values = parse_qs(query.decode("latin-1")).get("work_ms", ["0"])
    try:
        work = float(values[0])
    except ValueError:
        return None
    return work if 0 <= work <= MAX_WORK_MS else None


async def _reply(send: Send, status: int, payload: dict[str, object]) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
