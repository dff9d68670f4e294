"""PriorityMiddleware in-process: classification, 503 bodies, order, streaming, websockets."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from prioritize import ConfigError, Reason, TrustPolicy
from prioritize.http.middleware import PriorityMiddleware
from prioritize.http.problem import PROBLEM_TYPE
from prioritize.testing import VirtualClock

from .apps import POLICY_TOML, Recorder, Streamer, policy


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())


@contextlib.asynccontextmanager
async def seat_held(http: httpx.AsyncClient, app: Recorder) -> AsyncIterator[None]:
    """A ``/hold`` request keeps the api gate's only seat for the block, then completes."""
    holding = asyncio.ensure_future(http.get("/hold"))
    await app.entered.wait()
    yield
    app.release.set()
    assert (await holding).status_code == 200


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until ``condition`` holds (each step lets every ready task run)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def test_rules_set_the_level_seen_in_scope_state_and_current_level() -> None:
    async def body() -> None:
        app = Recorder()
        async with client(PriorityMiddleware(app, policy(), gate="api")) as http:
            paid = (await http.post("/payments/42")).json()
            plain = (await http.get("/catalog")).json()
        assert paid == {"level": "critical", "state": "critical", "body": ""}
        assert plain["level"] == plain["state"] == "normal"  # the default level

    run(body)


def test_a_client_may_lower_its_priority_but_not_raise_it_without_trust() -> None:
    async def body() -> None:
        app = Recorder()
        async with client(PriorityMiddleware(app, policy(), gate="api")) as http:
            lowered = (await http.post("/payments/1", headers={"x-priority": "bulk"})).json()
            raised = (await http.get("/catalog", headers={"x-priority": "critical"})).json()
            nonsense = (await http.get("/catalog", headers={"x-priority": "urgent!!"})).json()
        assert lowered["level"] == "bulk"
        assert raised["level"] == "normal"
        assert nonsense["level"] == "normal"

    run(body)


def test_a_shed_request_gets_503_retry_after_and_a_problem_body() -> None:
    async def body() -> None:
        app = Recorder()
        middleware = PriorityMiddleware(app, policy(), gate="api")
        async with client(middleware) as http, seat_held(http, app):
            shed = await http.get("/export/all")  # bulk may not wait: shed at once
        assert shed.status_code == 503
        assert shed.headers["content-type"] == "application/problem+json"
        assert int(shed.headers["retry-after"]) >= 1
        problem = shed.json()
        assert problem["type"] == PROBLEM_TYPE
        assert problem["status"] == 503
        assert problem["title"] == "Service Unavailable"
        assert problem["level"] == "bulk"
        assert problem["reason"] == Reason.LIMIT.value
        assert problem["gate"] == "api"
        assert problem["instance"] == "/export/all"
        assert problem["retry_after"] == int(shed.headers["retry-after"])
        assert [path for path, _ in app.seen] == ["/hold"]  # the app never saw the shed one

    run(body)


def test_waiting_requests_are_served_in_the_gates_order() -> None:
    async def body() -> None:
        app = Recorder()
        middleware = PriorityMiddleware(app, policy(), gate="api")
        gate = middleware.gates["api"]
        async with client(middleware) as http:
            holding = asyncio.ensure_future(http.get("/hold"))
            await app.entered.wait()
            paths = ["/reports/a", "/catalog/b", "/payments/c", "/reports/d", "/payments/e"]
            waiting = [asyncio.ensure_future(http.get(p)) for p in paths]
            await until(lambda: gate.stats().waiting == len(paths))
            app.release.set()
            responses = await asyncio.gather(holding, *waiting)
        assert all(r.status_code == 200 for r in responses)
        order = [path for path, _ in app.seen[1:]]
        assert order == ["/payments/c", "/payments/e", "/catalog/b", "/reports/a", "/reports/d"]
        assert gate.stats().in_use == 0

    run(body)


def test_routes_send_requests_to_their_own_gate_and_exempt_paths_bypass() -> None:
    async def body() -> None:
        app = Recorder()
        middleware = PriorityMiddleware(
            app, policy(), gate="api", routes={"/admin": "admin"}, exempt=["/healthz"]
        )
        async with client(middleware) as http, seat_held(http, app):
            admin = await http.get("/admin/users")
            health = await http.get("/healthz")
            shed = await http.get("/export")
        assert admin.status_code == 200
        assert health.status_code == 200
        assert health.json()["state"] is None  # not classified: bypassed
        assert shed.status_code == 503
        assert middleware.gates["admin"].stats().levels[2].granted == 1

    run(body)


def test_a_streamed_response_holds_its_seat_until_the_last_chunk() -> None:
    # Driven directly: httpx's in-process transport collects the whole body first.
    async def body() -> None:
        app = Streamer(chunks=3)
        middleware = PriorityMiddleware(app, policy(), gate="api")
        gate = middleware.gates["api"]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/download", "headers": []}
        streaming = asyncio.ensure_future(middleware(scope, receive, send))
        for chunk in (1, 2):
            app.go.set()
            await until(lambda n=chunk: app.sent == n)
            assert gate.stats().in_use == 1  # mid-stream: the seat is held
        app.go.set()
        await streaming
        assert [m.get("more_body") for m in sent[1:]] == [True, True, False]
        assert gate.stats().in_use == 0

    run(body)


def test_an_app_that_raises_gives_its_seat_back_and_the_error_propagates() -> None:
    async def body() -> None:
        app = Recorder()
        middleware = PriorityMiddleware(app, policy(), gate="api")
        async with client(middleware) as http:
            with pytest.raises(RuntimeError, match="the app failed"):
                await http.get("/boom")
        assert middleware.gates["api"].stats().in_use == 0

    run(body)


def test_lifespan_passes_through() -> None:
    async def body() -> None:
        app = Recorder()
        middleware = PriorityMiddleware(app, policy(), gate="api")
        messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return next(messages)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await middleware({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
        assert app.lifespan == ["lifespan.startup", "lifespan.shutdown"]
        assert [m["type"] for m in sent] == [
            "lifespan.startup.complete",
            "lifespan.shutdown.complete",
        ]

    run(body)


def test_a_request_body_sent_while_waiting_reaches_the_app_intact() -> None:
    async def body() -> None:
        app = Recorder()
        middleware = PriorityMiddleware(app, policy(), gate="api")
        gate = middleware.gates["api"]
        async with client(middleware) as http:
            async with seat_held(http, app):
                posting = asyncio.ensure_future(http.post("/payments", content=b"pay 42"))
                await until(lambda: gate.stats().waiting == 1)
            response = await posting
        assert response.json()["body"] == "pay 42"

    run(body)


def test_a_client_that_disconnects_while_waiting_frees_its_place() -> None:
    async def body() -> None:
        app = Recorder()
        middleware = PriorityMiddleware(app, policy(), gate="api")
        gate = middleware.gates["api"]
        disconnect = asyncio.Event()
        sent: list[dict[str, Any]] = []
        body_read = False

        async def receive() -> dict[str, Any]:
            nonlocal body_read
            if not body_read:
                body_read = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async with client(middleware) as http, seat_held(http, app):
            scope = {"type": "http", "method": "GET", "path": "/catalog", "headers": []}
            waiting = asyncio.ensure_future(middleware(scope, receive, send))
            await until(lambda: gate.stats().waiting == 1)
            disconnect.set()
            await waiting
            assert gate.stats().waiting == 0
            assert middleware.abandoned == 1
            assert sent == []  # nobody to answer
        assert gate.stats().in_use == 0
        assert gate.stats().levels[2].cancelled == 1

    run(body)


def _websocket_scope(path: str, extensions: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "websocket", "path": path, "headers": [], "extensions": extensions or {}}


class Echo:
    """A websocket app: accepts, then waits for the test before closing."""

    def __init__(self) -> None:
        self.accepted = asyncio.Event()
        self.finish = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        self.accepted.set()
        await self.finish.wait()
        await send({"type": "websocket.close", "code": 1000})


def test_a_websocket_holds_a_seat_only_until_it_is_accepted() -> None:
    async def body() -> None:
        app = Echo()
        middleware = PriorityMiddleware(app, policy(), gate="api")
        gate = middleware.gates["api"]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "websocket.connect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        session = asyncio.ensure_future(middleware(_websocket_scope("/live"), receive, send))
        await app.accepted.wait()
        assert gate.stats().in_use == 0  # admitted at connect, not held for the session
        app.finish.set()
        await session
        assert [m["type"] for m in sent] == ["websocket.accept", "websocket.close"]

    run(body)


@pytest.mark.parametrize("extensions", [{}, {"websocket.http.response": {}}])
def test_a_shed_websocket_is_refused_with_503_or_close_code_1013(
    extensions: dict[str, Any],
) -> None:
    async def body() -> None:
        app = Recorder()
        middleware = PriorityMiddleware(app, policy(), gate="api")
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "websocket.connect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async with client(middleware) as http, seat_held(http, app):
            await middleware(_websocket_scope("/export/live", extensions), receive, send)
        if extensions:
            assert sent[0]["type"] == "websocket.http.response.start"
            assert sent[0]["status"] == 503
            assert json.loads(sent[1]["body"])["reason"] == "limit"
        else:
            assert sent == [{"type": "websocket.close", "code": 1013, "reason": "bulk shed: limit"}]

    run(body)


def test_bad_configuration_names_what_is_wrong_and_what_is_accepted() -> None:
    with pytest.raises(ConfigError) as several:
        PriorityMiddleware(Recorder(), policy())
    assert "the policy has 2 gates ('api', 'admin'); name the one requests go through" in str(
        several.value
    )
    with pytest.raises(ConfigError) as unknown:
        PriorityMiddleware(Recorder(), policy(), gate="api", routes={"/a": "amdin", "b": "api"})
    message = str(unknown.value)
    assert "routes['/a']: no gate 'amdin'; did you mean 'admin'?" in message
    assert "routes['b']: a route is a path prefix starting with '/'" in message
    with pytest.raises(ConfigError, match=r"exempt\[0\]: 'healthz' is not a path prefix"):
        PriorityMiddleware(Recorder(), policy(), gate="api", exempt=["healthz"])
    with pytest.raises(ConfigError, match="no such gate"):
        PriorityMiddleware(Recorder(), policy(), gate="web")
    with pytest.raises(TypeError, match=r"takes a Policy .* not str"):
        PriorityMiddleware(Recorder(), POLICY_TOML, gate="api")  # type: ignore[arg-type]


TRUSTED_TOML = (
    POLICY_TOML
    + """
[trust]
trusted_networks = ["10.0.0.0/8"]
trusted_proxies = ["127.0.0.1/32"]
"""
)


def test_a_trusted_client_behind_a_trusted_proxy_may_raise_its_priority() -> None:
    # httpx's in-process transport reports the peer as 127.0.0.1: the trusted proxy
    async def body() -> None:
        app = Recorder()
        async with client(PriorityMiddleware(app, policy(TRUSTED_TOML), gate="api")) as http:
            # the header twice, as two proxies may write it: joined "10.1.2.3, 127.0.0.1",
            # read from the right past the trusted proxy (the last one alone would not do)
            two_hops = [
                ("x-forwarded-for", "10.1.2.3"),
                ("x-forwarded-for", "127.0.0.1"),
                ("x-priority", "critical"),
            ]
            trusted = (await http.get("/catalog", headers=two_hops)).json()
            outsider = [("x-forwarded-for", "203.0.113.9"), ("x-priority", "critical")]
            untrusted = (await http.get("/catalog", headers=outsider)).json()
        assert trusted["level"] == "critical"
        assert untrusted["level"] == "normal"

    run(body)


def test_a_signed_token_raises_and_a_forged_one_is_ignored_and_counted() -> None:
    async def body() -> None:
        app = Recorder()
        trust = TrustPolicy(secrets=(b"a shared secret of the two services",))
        signed = trust.sign("critical", time.time())
        forged = TrustPolicy(secrets=(b"some other secret",)).sign("critical", time.time())
        pol = dataclasses.replace(policy(), trust=trust)
        middleware = PriorityMiddleware(app, pol, gate="api")
        async with client(middleware) as http:
            raised = (await http.get("/catalog", headers=signed)).json()
            refused = (await http.get("/catalog", headers=forged)).json()
        assert raised["level"] == "critical"
        assert refused["level"] == "normal"
        assert middleware.ignored_headers == {"forged": 1}

    run(body)


ADAPTIVE_TOML = """
[gates.api]
capacity = { adaptive = "aimd", min = 2, max = 50, initial = 10, max_rtt = 0.5, window = 1 }
"""


def test_a_gate_with_an_adaptive_capacity_follows_how_long_requests_hold_their_seat() -> None:
    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(2.0)  # virtual seconds: slower than max_rtt
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def body() -> None:
        with VirtualClock().patch_loop():
            middleware = PriorityMiddleware(slow, policy(ADAPTIVE_TOML))
            gate = middleware.gates["api"]
            assert gate.capacity == 10
            async with client(middleware) as http:
                for _ in range(3):
                    responses = await asyncio.gather(*(http.get("/") for _ in range(10)))
                    assert {r.status_code for r in responses} == {200}
            assert gate.capacity < 10  # backed off: the service is slow

    run(body)
