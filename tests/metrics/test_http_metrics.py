"""The HTTP middleware's own counters and its gates, scraped through metrics_app."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import httpx
from prometheus_client import REGISTRY, CollectorRegistry

from prioritize import TrustPolicy, parse_policy
from prioritize.http.middleware import PriorityMiddleware
from prioritize.metrics import (
    GateMetrics,
    HttpMetrics,
    metrics_app,
    register_middleware,
    unregister,
)

from .exposition import Exposition


async def ok(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def middleware() -> PriorityMiddleware:
    policy = parse_policy({"gates": {"web": {"capacity": 4}}})
    trust = TrustPolicy(secrets=(b"the secret both services share",))
    return PriorityMiddleware(ok, dataclasses.replace(policy, trust=trust), gate="web")


async def scrape(app: object) -> Exposition:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://metrics") as client:
        return Exposition.parse((await client.get("/metrics")).text)


def test_ignored_tokens_and_the_gates_requests_are_exported() -> None:
    async def body() -> None:
        mw = middleware()
        registry = CollectorRegistry()
        GateMetrics(registry).add(mw.gates["web"], "web")
        HttpMetrics(mw, registry)
        forged = TrustPolicy(secrets=(b"a guess",)).sign("critical", time.time())
        transport = httpx.ASGITransport(app=mw)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            await client.get("/", headers=forged)
            await client.get("/", headers={"x-priority-token": "v1.garbage"})
            await client.get("/")
        seen = await scrape(metrics_app(registry))
        ignored = "prioritize_http_priority_headers_ignored_total"
        assert seen.value(ignored, reason="forged") == 1
        assert seen.value(ignored, reason="malformed") == 1
        assert seen.value(ignored, reason="expired") == 0
        assert seen.value("prioritize_http_abandoned_total") == 0
        granted = seen.value(
            "prioritize_requests_total", gate="web", level="normal", outcome="granted"
        )
        assert granted == 3  # the forged ones were served, at the default level

    asyncio.run(body())


def test_register_middleware_exports_its_gates_and_counters_in_the_default_registry() -> None:
    async def body() -> None:
        mw = middleware()
        collector = register_middleware(mw)
        try:
            seen = await scrape(metrics_app())
            assert seen.value("prioritize_capacity", gate="web") == 4
            assert seen.value("prioritize_http_abandoned_total") == 0
        finally:
            unregister("web")
            REGISTRY.unregister(collector)

    asyncio.run(body())
