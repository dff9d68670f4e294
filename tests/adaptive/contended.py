"""A saturated gate in front of a service that slows down past its knee, in virtual time.

The tests drive the real `Scheduler` through the real `AdaptiveCapacity`:
the queue never runs dry (more demand than the service can take, as under
overload), every granted request holds its seat for ``base`` seconds times
`Contention.slowdown` of the seats in use just after its grant, and each
completion is reported to the controller. Deterministic: constant service
times, or a seeded generator.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass

from prioritize import GatePolicy, LevelPolicy, Scheduler, Ticket, TicketState
from prioritize.adaptive import AdaptiveCapacity, LimitController
from prioritize.simulate.contention import Contention

__all__ = ["Trace", "run_saturated"]


@dataclass(frozen=True)
class Trace:
    """The limit over time: ``(time, limit from then on)`` at every change."""

    steps: list[tuple[float, int]]
    end: float

    def between(self, start: float, end: float) -> list[int]:
        """Every limit held at some moment of [start, end]."""
        held = [limit for t, limit in self.steps if start < t <= end]
        before = [limit for t, limit in self.steps if t <= start]
        return [before[-1], *held] if before else held

    def mean(self, start: float, end: float) -> float:
        """Time-weighted mean limit over [start, end]."""
        total, at = 0.0, start
        current = [limit for t, limit in self.steps if t <= start][-1]
        for t, limit in self.steps:
            if start < t <= end:
                total += current * (t - at)
                at, current = t, limit
        return (total + current * (end - at)) / (end - start)


def run_saturated(
    controller: LimitController,
    *,
    knee: int,
    base: float,
    duration: float,
    exponent: float = 1.0,
    seed: int | None = None,
) -> Trace:
    """Run a gate driven by ``controller`` for ``duration`` virtual seconds under overload.

    Service times are ``base`` seconds (exponential with mean ``base`` when a
    ``seed`` is given) stretched by the contention past ``knee``.
    """
    model = Contention(knee, exponent)
    rng = random.Random(seed) if seed is not None else None
    gate = GatePolicy(
        capacity=controller.limit,
        levels={"normal": LevelPolicy(max_wait=float("inf"))},
        queue=1_000_000,
        name="svc",
    )
    sched = Scheduler(gate)
    adaptive = AdaptiveCapacity(sched, controller)
    heap: list[tuple[float, int, Ticket]] = []
    order = itertools.count()
    steps = [(0.0, controller.limit)]

    def start(granted: list[Ticket], now: float) -> None:
        slowdown = model.slowdown(sched.in_use)
        for ticket in granted:
            assert ticket.state is TicketState.GRANTED
            work = base if rng is None else rng.expovariate(1.0 / base)
            heapq.heappush(heap, (now + work * slowdown, next(order), ticket))

    def top_up(now: float) -> None:
        while sched.waiting < 2 * sched.capacity + 10:
            ticket = sched.ticket("normal")
            start(sched.submit(ticket, now), now)

    top_up(0.0)
    while heap and heap[0][0] <= duration:
        now, _, ticket = heapq.heappop(heap)
        changed = adaptive.release(ticket, now)
        start(changed, now)
        if controller.limit != steps[-1][1]:
            steps.append((now, controller.limit))
        top_up(now)
    return Trace(steps, duration)
