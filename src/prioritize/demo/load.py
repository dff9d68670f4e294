"""The open-loop load: every request's send time, path and work, drawn before the run.

Open loop means requests are sent at their scheduled times whatever the
server does: a slow or shedding server does not slow the senders down, which
is what overload looks like from the outside (a closed loop of N clients
would send less the slower the service gets, and hide the overload). The
whole schedule is drawn up front from the seed alone, so it cannot depend on
any response, and the run with priorities and the FIFO run send identical
requests.

Each level is its own Poisson process (exponential gaps at its share of the
rate) drawn from ``random.Random(f"{seed}/{level}")``, as the simulator
does, so changing one level's share leaves the other levels' requests as
they were.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import final

from .setup import Route, Setup

__all__ = ["Arrival", "offered_load", "schedule"]


@final
@dataclass(frozen=True, slots=True)
class Arrival:
    """One request of the load."""

    #: seconds after the run's start at which it is sent
    time: float
    level: str
    path: str
    #: seconds of work it asks the endpoint for
    work: float

    @property
    def target(self) -> str:
        """The request target sent on the wire: the path and its work, in milliseconds."""
        return f"{self.path}?work_ms={self.work * 1000:.3f}"


def schedule(setup: Setup, rate: float, duration: float, seed: int) -> list[Arrival]:
    """Every arrival in ``[0, duration)`` at ``rate`` requests/s in all, in time order."""
    if not rate > 0:
        raise ValueError(f"rate = {rate!r}: expected requests per second > 0")
    if not duration > 0:
        raise ValueError(f"duration = {duration!r}: expected seconds > 0")
    streams = [
        _arrivals(route, rate * route.share, duration, seed, setup.work_range)
        for route in setup.routes
        if route.share > 0
    ]
    return list(heapq.merge(*streams, key=lambda a: a.time))


def _arrivals(
    route: Route, rate: float, end: float, seed: int, work: tuple[float, float]
) -> Iterator[Arrival]:
    low, high = work
    rng = random.Random(f"{seed}/{route.level}")
    t = rng.expovariate(rate)
    while t < end:
        yield Arrival(t, route.level, route.path, rng.uniform(low, high))
        t += rng.expovariate(rate)


def offered_load(arrivals: list[Arrival], start: float, end: float, capacity: int) -> float:
    """Work offered per second over ``[start, end)``, over the capacity: 4.0 is 4× overload."""
    work = sum(a.work for a in arrivals if start <= a.time < end)
    return work / (end - start) / capacity
