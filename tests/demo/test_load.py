"""The open-loop schedule and the sender: drawn from the seed alone, sent whatever the answers."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from prioritize.demo.client import Response
from prioritize.demo.driver import Kind, drive
from prioritize.demo.load import Arrival, offered_load, schedule
from prioritize.demo.setup import DEFAULT_ROUTES, Route, Setup

SETUP = Setup()


def test_the_same_seed_draws_the_same_schedule() -> None:
    assert schedule(SETUP, 300, 5, seed=3) == schedule(SETUP, 300, 5, seed=3)
    assert schedule(SETUP, 300, 5, seed=3) != schedule(SETUP, 300, 5, seed=4)


def test_the_schedule_is_in_time_order_within_its_window_and_bounds() -> None:
    arrivals = schedule(SETUP, 300, 5, seed=1)
    times = [a.time for a in arrivals]
    assert times == sorted(times)
    assert times[0] > 0
    assert times[-1] < 5
    low, high = SETUP.work_range
    assert all(low <= a.work <= high for a in arrivals)
    paths = {route.level: route.path for route in SETUP.routes}
    assert all(paths[a.level] == a.path for a in arrivals)
    assert {a.level for a in arrivals} == set(paths)


def test_changing_one_levels_share_leaves_the_others_requests_alone() -> None:
    routes = list(DEFAULT_ROUTES)
    routes[3], routes[4] = replace(routes[3], share=0.35), replace(routes[4], share=0.25)
    other = Setup(routes=tuple(routes))
    before, after = schedule(SETUP, 300, 5, seed=1), schedule(other, 300, 5, seed=1)
    for level in ("critical", "high", "normal"):
        assert [a for a in before if a.level == level] == [a for a in after if a.level == level]


def test_the_target_carries_the_work_in_milliseconds() -> None:
    assert Arrival(0.5, "bulk", "/export", 0.0625).target == "/export?work_ms=62.500"


def test_offered_load_is_work_per_second_over_capacity() -> None:
    arrivals = [Arrival(t, "bulk", "/export", 0.5) for t in (0.1, 0.2, 1.5, 2.5)]
    # two arrivals of 0.5 s in [0, 1): 1 s of work per second over 4 seats
    assert offered_load(arrivals, 0.0, 1.0, capacity=4) == 0.25


@pytest.mark.parametrize(("rate", "duration"), [(0, 5), (-1, 5), (10, 0)])
def test_a_schedule_needs_a_positive_rate_and_duration(rate: float, duration: float) -> None:
    with pytest.raises(ValueError, match="expected"):
        schedule(SETUP, rate, duration, seed=1)


class HeldClient:
    """Answers nothing until every request of the schedule has been sent."""

    def __init__(self, expected: int) -> None:
        self.sent: list[str] = []
        self.expected = expected
        self.all_sent = asyncio.Event()

    async def get(self, target: str) -> Response:
        self.sent.append(target)
        if len(self.sent) == self.expected:
            self.all_sent.set()
        await self.all_sent.wait()
        status = 503 if target.startswith("/export") else 200
        if status == 200:
            return Response(200, {}, b'{"level": "critical"}')
        body = b'{"status": 503, "reason": "queue_full"}'
        return Response(503, {"content-type": "application/problem+json"}, body)


def test_every_request_is_sent_on_schedule_without_waiting_for_answers() -> None:
    arrivals = [
        Arrival(i * 0.002, "critical" if i % 2 else "bulk", "/checkout" if i % 2 else "/export", 0)
        for i in range(20)
    ]
    client = HeldClient(len(arrivals))

    async def run() -> list[object]:
        # a closed loop would wait for the first answer forever: the timeout only ends a hang
        async with asyncio.timeout(60):
            return await drive(client, arrivals)  # type: ignore[arg-type]

    outcomes = asyncio.run(run())
    assert client.sent == [a.target for a in arrivals]
    assert [o.kind for o in outcomes] == [  # type: ignore[attr-defined]
        Kind.SERVED if a.level == "critical" else Kind.SHED for a in arrivals
    ]
    for outcome, arrival in zip(outcomes, arrivals, strict=True):
        assert outcome.scheduled == arrival.time  # type: ignore[attr-defined]
        # latency runs from the scheduled time, so it includes any lateness in sending
        assert outcome.latency >= outcome.lag  # type: ignore[attr-defined]


def test_routes_must_share_out_the_whole_load() -> None:
    with pytest.raises(ValueError, match="add up to 1"):
        Setup(routes=(Route("critical", "/checkout", 0.5),))
