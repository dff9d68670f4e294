"""Shared helpers of the priority-queue tests: virtual time, a shed log, a reference order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence

from prioritize import GatePolicy, LevelPolicy, Reason, Rejected, Scheduler, Ticket, TicketState
from prioritize.testing import run_virtual

#: run a test body on a fresh loop driven by virtual time
run = run_virtual


async def settle() -> None:
    """Let every ready task run until all of them wait again."""
    for _ in range(10):
        await asyncio.sleep(0)


class ShedLog:
    """An ``on_shed`` callback that records every item it is handed, with its reason."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self.items: list[object] = []
        self.errors: list[Rejected] = []
        #: when each was handed over, if a clock was given
        self.times: list[float] = []
        self._clock = clock

    def __call__(self, item: object, rejected: Rejected) -> None:
        assert isinstance(rejected, Rejected)
        self.items.append(item)
        self.errors.append(rejected)
        if self._clock is not None:
            self.times.append(self._clock())

    def reasons(self) -> list[tuple[object, Reason]]:
        return [(item, e.reason) for item, e in zip(self.items, self.errors, strict=True)]


class ReferenceQueue:
    """A bare `Scheduler` driven by hand: the decisions the queue's ``get()`` must follow.

    One seat, held while nobody takes; each take releases it and the
    scheduler grants the next item by the policy's rules in its place. No
    ``min`` (a consumer of ``get()`` holds no seat) and no bounds.
    """

    def __init__(self, policy: GatePolicy) -> None:
        levels = {name: LevelPolicy(weight=knobs.weight) for name, knobs in policy.levels.items()}
        self.scheduler = Scheduler(
            GatePolicy(
                capacity=1,
                levels=levels,
                order=policy.order,
                queue=10**6,
                level_set=policy.level_set,
            )
        )
        self.holder = self.scheduler.ticket(policy.level_set.most_important)
        self.scheduler.submit(self.holder, 0.0)

    def put(self, item: object, level: str, flow: Hashable | None = None) -> None:
        assert self.scheduler.submit(self.scheduler.ticket(level, flow, item), 0.0) == []

    def take(self) -> object:
        (self.holder,) = self.scheduler.release(self.holder, 0.0)
        assert self.holder.state is TicketState.GRANTED
        return self.holder.data


def reference_order(
    policy: GatePolicy, puts: Sequence[tuple[object, str, Hashable | None]]
) -> list[object]:
    """The items of ``puts`` in the order the scheduler hands them out."""
    ref = ReferenceQueue(policy)
    for item, level, flow in puts:
        ref.put(item, level, flow)
    return [ref.take() for _ in puts]


def granted(tickets: Sequence[Ticket]) -> list[object]:
    return [t.data for t in tickets if t.state is TicketState.GRANTED]
