"""The demo's server in its child process: rules, shed answers, start-up failures."""

from __future__ import annotations

import asyncio
import json

import pytest

from prioritize.demo.client import HttpClient
from prioritize.demo.driver import Kind, drive
from prioritize.demo.load import Arrival
from prioritize.demo.process import ServerError, running_server
from prioritize.demo.setup import Setup

#: One seat and no room to wait: of requests that arrive together, one is served.
ONE_SEAT = """
[gates.api]
capacity = 1
queue = 0
[[rules]]
level = "critical"
path_prefix = "/checkout"
"""


def test_each_route_is_served_at_its_level_and_fifo_at_its_one_level() -> None:
    setup = Setup()

    async def levels(policy: str) -> dict[str, object]:
        async with running_server(policy) as server:
            client = HttpClient("127.0.0.1", server.port)
            try:
                paths = [route.path for route in setup.routes] + ["/elsewhere"]
                answers = [await client.get(f"{path}?work_ms=0") for path in paths]
            finally:
                await client.aclose()
        assert [a.status for a in answers] == [200] * len(answers)
        return {path: json.loads(a.body)["level"] for path, a in zip(paths, answers, strict=True)}

    async def both() -> tuple[dict[str, object], dict[str, object]]:
        return await levels(setup.priority_toml()), await levels(setup.fifo_toml())

    priorities, fifo = asyncio.run(both())
    assert priorities == {
        **{route.path: route.level for route in setup.routes},
        "/elsewhere": "normal",
    }
    assert set(fifo.values()) == {"fifo"}


def test_requests_beyond_the_seats_are_shed_with_problem_details() -> None:
    # all sent at once; each holds its seat for a second, so only one can be served
    arrivals = [Arrival(0.0, "critical", "/checkout", 1.0) for _ in range(4)]

    async def run() -> tuple[list[Kind], list[str], list[bytes]]:
        async with running_server(ONE_SEAT) as server:
            client = HttpClient("127.0.0.1", server.port)
            try:
                outcomes = await drive(client, arrivals)
                raw = await asyncio.gather(
                    client.get("/checkout?work_ms=1000"), client.get("/checkout?work_ms=1000")
                )
            finally:
                await client.aclose()
        shed = [r for r in raw if r.status == 503]
        return [o.kind for o in outcomes], [o.detail for o in outcomes], [r.body for r in shed]

    kinds, details, bodies = asyncio.run(run())
    assert kinds.count(Kind.SERVED) == 1
    assert kinds.count(Kind.SHED) == 3
    assert [d for d, k in zip(details, kinds, strict=True) if k is Kind.SHED] == ["queue_full"] * 3
    assert len(bodies) == 1
    problem = json.loads(bodies[0])
    assert problem["status"] == 503
    assert problem["level"] == "critical"
    assert problem["reason"] == "queue_full"
    assert problem["type"] == "urn:prioritize:problem:shed"


def test_a_server_that_cannot_start_says_why() -> None:
    async def start() -> None:
        async with running_server("[gates.api]\ncapacity = 0\n"):
            pytest.fail("a policy with no seats must not be served")

    with pytest.raises(ServerError, match=r"failed to start: .*capacity"):
        asyncio.run(start())


def test_work_outside_its_bounds_is_a_400() -> None:
    async def run() -> list[int]:
        async with running_server(ONE_SEAT) as server:
            client = HttpClient("127.0.0.1", server.port)
            try:
                targets = ["/x?work_ms=-1", "/x?work_ms=nan", "/x?work_ms=abc", "/x?work_ms=1e9"]
                return [(await client.get(t)).status for t in targets]
            finally:
                await client.aclose()

    assert asyncio.run(run()) == [400, 400, 400, 400]


def test_leaving_the_block_stops_the_server_and_a_dead_one_is_reported() -> None:
    async def run() -> tuple[int | None, int | None]:
        async with running_server(ONE_SEAT) as server:
            server.check_alive()
            stopped = server.process
        async with running_server(ONE_SEAT) as server:
            server.process.kill()
            await server.process.wait()
            with pytest.raises(ServerError, match="exited during the run"):
                server.check_alive()
        return stopped.returncode, server.process.returncode

    graceful, killed = asyncio.run(run())
    assert graceful == 0  # stdin closed: uvicorn shut down on its own
    assert killed is not None
    assert killed != 0
