"""Apply a limit controller to a gate: the capacity follows what the service can take.

`AdaptiveCapacity` is a thin sans-I/O adapter between a `LimitController`
(`AIMD`, `Gradient`, or anything with the same two members) and a
`Scheduler`. Each completed request is reported to it with the time and its
RTT; when the controller's whole-number limit changes, the scheduler is
resized and the tickets that changed (granted, when the limit grew) are
returned for the caller to resolve, exactly like any other scheduler call.

Why the priorities survive a shrinking limit: `Scheduler.resize` re-resolves
percentages for the new capacity and keeps whole-number reservations, and
trunk reservation keeps each level's ``min`` free against every less
important level; when the mins no longer fit, the least important levels
give up their reservation first (docs/concepts.md, rule 7). So as the limit
falls, the seats that free are handed to the most important waiting levels
first and the least important ones lose their seats first, with no
per-level logic here.
"""

from __future__ import annotations

from typing import Protocol, final

from ..core.scheduler import Scheduler
from ..core.tickets import Ticket, TicketState

__all__ = ["AdaptiveCapacity", "LimitController"]

_GRANTED = TicketState.GRANTED


class LimitController(Protocol):
    """What `AdaptiveCapacity` needs of a controller: `AIMD` and `Gradient` have it."""

    @property
    def limit(self) -> int: ...

    def on_sample(self, now: float, rtt: float, inflight: int, dropped: bool = False) -> int: ...


@final
class AdaptiveCapacity:
    """Resize ``scheduler`` to ``controller``'s limit as completions are observed.

    Call `release` instead of ``scheduler.release`` when a granted request
    completes (or `observe` after releasing it yourself). The scheduler's
    capacity is brought to the controller's limit at the first observation
    if they differ; build the gate with ``capacity`` equal to the
    controller's initial limit (`AdaptiveSpec.gate` does) and they never do.
    Not thread-safe: serialise calls with the scheduler's own.
    """

    __slots__ = ("controller", "scheduler")

    def __init__(self, scheduler: Scheduler, controller: LimitController) -> None:
        self.scheduler = scheduler
        self.controller = controller

    @property
    def limit(self) -> int:
        """The controller's current limit (the scheduler's capacity after the last observation)."""
        return self.controller.limit

    def observe(
        self, now: float, rtt: float, dropped: bool = False, inflight: int | None = None
    ) -> list[Ticket]:
        """Report one completed request; returns the tickets a resize changed.

        ``rtt`` is how long the request held its seat, in seconds; ``dropped``
        that it failed in a way that signals overload (timed out, or the
        service answered "too busy"). ``inflight`` defaults to the seats held
        now. Requests shed by the gate itself are not samples: they never
        reached the service.
        """
        sched = self.scheduler
        limit = self.controller.on_sample(
            now, rtt, sched.in_use if inflight is None else inflight, dropped
        )
        if limit == sched.capacity:
            return []
        return sched.resize(limit, now)

    def release(self, ticket: Ticket, now: float, dropped: bool = False) -> list[Ticket]:
        """Observe a granted ticket's RTT (``now - ticket.granted_at``), then release it.

        Observing first means a falling limit takes effect before the freed
        seat is handed out again. Returns the tickets a resize granted, then
        those granted in the released seat's place. The in-flight count
        reported includes the request itself. A ticket that holds no seat is
        not observed: `Scheduler.release` raises `TicketStateError` for it.
        """
        sched = self.scheduler
        granted_at = ticket.granted_at
        if ticket.state is not _GRANTED or granted_at is None:
            return sched.release(ticket, now)  # raises
        changed = self.observe(now, max(now - granted_at, 0.0), dropped, sched.in_use)
        freed = sched.release(ticket, now)
        return changed + freed if changed else freed

    def __repr__(self) -> str:
        sched = self.scheduler
        return (
            f"<AdaptiveCapacity {sched.name} limit {self.controller.limit}, "
            f"{sched.in_use}/{sched.capacity} seats, {sched.waiting} waiting>"
        )
