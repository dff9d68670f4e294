"""What a rate budget hands out and reports: its tickets and its statistics.

Kept apart from `RateScheduler` so that adapters and metrics can import the
value types without the decisions.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import final

from ..errors import TicketStateError
from .lanes import Lane
from .levels import Level
from .tickets import Reason, Ticket, TicketState

__all__ = ["BudgetLevelStats", "BudgetStats", "RateTicket", "is_amount", "peek"]

_WAITING = TicketState.WAITING


class RateTicket(Ticket):
    """A request for budget: a `Ticket` with its estimated ``tokens``."""

    __slots__ = ("charged", "tokens")

    def __init__(
        self,
        level: Level,
        flow: Hashable | None = None,
        data: object = None,
        wait: bool = True,
        tokens: float = 0.0,
    ) -> None:
        super().__init__(level, flow, data, wait)
        #: the estimate asked with
        self.tokens = tokens
        #: tokens charged now: the estimate once granted, the actual count once settled
        self.charged = 0.0


@final
@dataclass(frozen=True, slots=True)
class BudgetLevelStats:
    """One level of a budget: its shares (fractions), queue, calls and what it spent."""

    level: str
    min: float
    max: float
    waiting: int
    in_flight: int
    granted: int
    cancelled: int
    shed: dict[Reason, int]
    #: per dimension: charged so far (estimates reconciled with actual counts)
    spent: dict[str, float]
    #: per dimension: unspent reserved credit (negative: in debt)
    credit: dict[str, float]


@final
@dataclass(frozen=True, slots=True)
class BudgetStats:
    """A snapshot of a budget (`RateScheduler.stats`)."""

    name: str
    #: per dimension, per minute: the rate in force (configured × factor)
    per_minute: dict[str, float]
    #: per dimension: what the bucket holds (negative: in debt)
    available: dict[str, float]
    #: the adaptive factor, 1.0 when no 429 was seen recently
    factor: float
    paused_for: float
    waiting: int
    in_flight: int
    levels: tuple[BudgetLevelStats, ...]


def peek(lane: Lane) -> RateTicket:
    """The ticket `Lane.pop_next` would return, without removing it.

    Stale entries (cancelled tickets, flows emptied out of turn) are skipped
    as `Lane.pop_next` skips them; its compaction bounds their number.
    """
    if lane.solo:
        for ticket in lane.arrivals:
            if ticket.state is _WAITING:
                return ticket  # type: ignore[return-value]
    else:
        for flow in lane.ring:
            if flow.live:
                for ticket in flow.queue:
                    if ticket.state is _WAITING:
                        return ticket  # type: ignore[return-value]
    raise TicketStateError(f"lane {lane.level.name} has no waiting ticket")


def is_amount(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )
