"""An asyncio Gate on virtual time, scraped through metrics_app in-process from its own loop."""

from __future__ import annotations

import asyncio
import math

import httpx
import pytest
from prometheus_client import CollectorRegistry

from prioritize import Gate, GatePolicy, LevelPolicy, Rejected
from prioritize.metrics import GateMetrics, metrics_app
from prioritize.testing import run_virtual as run_on_virtual_time

from .exposition import Exposition

POLICY = GatePolicy(
    capacity=2,
    name="api",
    levels={
        "critical": LevelPolicy(min=1),
        "bulk": LevelPolicy(queue=1, max_wait=math.inf),
        "low": LevelPolicy(max_wait=0.5),
    },
)


async def scrape(client: httpx.AsyncClient, **headers: str) -> Exposition:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200
    return Exposition.parse(
        response.text, openmetrics="openmetrics" in response.headers["content-type"]
    )


def test_a_scrape_reports_outcomes_waits_service_times_and_seats_per_level() -> None:
    async def body() -> None:
        gate = Gate(POLICY)
        registry = CollectorRegistry()
        GateMetrics(registry).add(gate)
        outcomes: dict[str, str] = {}

        async def hold(name: str, level: str, start: float, seconds: float) -> None:
            await asyncio.sleep(start)
            try:
                async with gate.slot(level):
                    outcomes[name] = "granted"
                    await asyncio.sleep(seconds)
            except Rejected as rejected:
                outcomes[name] = rejected.reason.value
            except asyncio.CancelledError:
                outcomes[name] = "cancelled"

        tasks = {
            "A": asyncio.create_task(hold("A", "bulk", 0.0, 3.0)),  # the one seat bulk may take
            "B": asyncio.create_task(hold("B", "bulk", 0.0, 0.25)),  # waits 3 s for it
            "C": asyncio.create_task(hold("C", "bulk", 0.0, 1.0)),  # bulk's queue is full
            "D": asyncio.create_task(hold("D", "normal", 0.0, 1.0)),  # waits, cancelled at 2
            "E": asyncio.create_task(hold("E", "low", 0.25, 1.0)),  # shed after 0.5 s
            "X": asyncio.create_task(hold("X", "critical", 1.0, 0.5)),  # the reserved seat
        }
        transport = httpx.ASGITransport(app=metrics_app(registry))
        async with httpx.AsyncClient(transport=transport, base_url="http://gate") as client:
            await asyncio.sleep(1.25)  # virtual time: X holds the critical seat now
            mid = await scrape(client)
            await asyncio.sleep(0.75)
            tasks["D"].cancel()
            await asyncio.gather(*tasks.values())
            end = await scrape(client, accept="application/openmetrics-text; version=1.0.0")

        assert outcomes == {
            "A": "granted",
            "B": "granted",
            "C": "queue_full",
            "D": "cancelled",
            "E": "timeout",
            "X": "granted",
        }
        api = {"gate": "api"}
        assert mid.value("prioritize_seats_in_use", **api, level="critical") == 1
        assert mid.value("prioritize_seats_in_use", **api, level="bulk") == 1
        assert mid.value("prioritize_waiting", **api, level="bulk") == 1
        assert mid.value("prioritize_waiting", **api, level="normal") == 1
        assert mid.value("prioritize_waiting", **api, level="low") == 0
        assert mid.value("prioritize_shed_total", **api, level="low", reason="timeout") == 1

        def requests(level: str, outcome: str) -> float:
            return end.value("prioritize_requests_total", **api, level=level, outcome=outcome)

        assert [requests("bulk", o) for o in ("granted", "shed", "cancelled")] == [2, 1, 0]
        assert [requests("normal", o) for o in ("granted", "shed", "cancelled")] == [0, 0, 1]
        assert [requests("low", o) for o in ("granted", "shed", "cancelled")] == [0, 1, 0]
        assert [requests("critical", o) for o in ("granted", "shed", "cancelled")] == [1, 0, 0]
        assert end.value("prioritize_shed_total", **api, level="bulk", reason="queue_full") == 1

        bulk = {**api, "level": "bulk"}
        waits = end.buckets("prioritize_wait_seconds", **bulk)
        assert (waits["0.0009765625"], waits["2.0"], waits["4.0"], waits["+Inf"]) == (1, 1, 2, 2)
        assert end.value("prioritize_wait_seconds_sum", **bulk) == 3.0
        service = end.buckets("prioritize_service_seconds", **bulk)
        assert (service["0.125"], service["0.25"], service["2.0"], service["4.0"]) == (0, 1, 1, 2)
        assert end.value("prioritize_service_seconds_sum", **bulk) == 3.25
        critical = {**api, "level": "critical"}
        assert end.buckets("prioritize_service_seconds", **critical)["0.5"] == 1
        assert end.value("prioritize_service_seconds_count", **critical) == 1
        for level in ("bulk", "normal", "critical"):
            assert end.value("prioritize_seats_in_use", **api, level=level) == 0
            assert end.value("prioritize_waiting", **api, level=level) == 0
        assert end.value("prioritize_capacity", **api) == 2

    run_on_virtual_time(body)


def test_metrics_app_serves_http_only() -> None:
    async def body() -> None:
        app = metrics_app(CollectorRegistry())

        async def receive() -> dict[str, object]:
            raise AssertionError("not reached")

        async def send(message: object) -> None:
            raise AssertionError("not reached")

        with pytest.raises(TypeError, match="metrics_app serves HTTP, not 'websocket' connections"):
            await app({"type": "websocket"}, receive, send)

    asyncio.run(body())


def test_metrics_app_completes_the_lifespan_handshake() -> None:
    async def body() -> None:
        app = metrics_app(CollectorRegistry())
        inbox: list[dict[str, object]] = [
            {"type": "lifespan.startup"},
            {"type": "lifespan.shutdown"},
        ]
        sent: list[object] = []

        async def receive() -> dict[str, object]:
            return inbox.pop(0)

        async def send(message: object) -> None:
            sent.append(message)

        await app({"type": "lifespan"}, receive, send)
        assert sent == [
            {"type": "lifespan.startup.complete"},
            {"type": "lifespan.shutdown.complete"},
        ]

    asyncio.run(body())


def test_metrics_app_is_routed_as_an_asgi_app_by_starlette() -> None:
    from starlette.applications import Starlette
    from starlette.routing import Route

    registry = CollectorRegistry()
    GateMetrics(registry).add(Gate(GatePolicy(capacity=3, name="api")))
    app = Starlette(routes=[Route("/metrics", metrics_app(registry))])

    async def body() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            assert (await scrape(client)).value("prioritize_capacity", gate="api") == 3
            assert (await client.get("/elsewhere")).status_code == 404

    asyncio.run(body())
