"""Which waiting level gets a free seat (rules 1, 3 and 4 in docs/concepts.md), and Little's law.

Pure functions over the lanes, most important first, so the scheduler's
bookkeeping and the rules themselves can each be read on their own. Each is
O(levels) and allocates nothing. `choose` reads only what `LaneView` names,
so `JobGate` asks it the same question with counts from a broker's snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from .lanes import Lane
from .levels import Level

__all__ = ["LaneView", "choose", "choose_unreserved", "lanes_ahead"]


class LaneView(Protocol):
    """What `choose` reads of one level: a `Lane`, or a broker's counts for it."""

    @property
    def level(self) -> Level: ...
    @property
    def waiting(self) -> int: ...
    @property
    def held(self) -> int: ...
    @property
    def min(self) -> int: ...
    @property
    def max(self) -> int: ...
    @property
    def pass_(self) -> float: ...


_View = TypeVar("_View", bound=LaneView)


def choose(
    lanes: Sequence[_View], free: int, reserves: Sequence[int], weighted: bool
) -> tuple[_View | None, bool]:
    """The lane to serve and whether the guarantee picked it, or ``(None, False)``.

    Rule 1: a lane is eligible below its ``max`` when ``free`` seats exceed the
    unmet ``min`` of the more important lanes (``reserves``). Rule 3: once some
    lane is eligible, the seat will be taken, and the most important waiting
    lane below its own ``min`` takes it ahead of any borrower. Rule 4: else the
    most important eligible lane (strict) or the one with the lowest stride
    pass (weighted; ties to the more important).
    """
    guarantee: _View | None = None
    best: _View | None = None
    for lane in lanes:
        if not lane.waiting or lane.held >= lane.max:
            continue
        if guarantee is None and lane.held < lane.min:
            guarantee = lane
        if free > reserves[lane.level.rank] and (
            best is None or (weighted and lane.pass_ < best.pass_)
        ):
            best = lane
    if best is None:
        return None, False
    if guarantee is not None:
        return guarantee, True
    return best, False


def choose_unreserved(lanes: Sequence[Lane]) -> Lane | None:
    """Weighted order with no ``min`` anywhere: the eligible lane with the lowest pass."""
    best: Lane | None = None
    for lane in lanes:
        if lane.waiting and lane.held < lane.max and (best is None or lane.pass_ < best.pass_):
            best = lane
    return best


def lanes_ahead(lanes: Sequence[Lane], rank: int, weighted: bool) -> float:
    """Requests served before a new arrival at ``rank``, itself included.

    Strict: everything waiting at its level or a more important one. Weighted:
    its own level's queue, scaled by the share of seats its weight wins
    against the other levels that are waiting.
    """
    lane = lanes[rank]
    if weighted:
        active = 0.0
        for other in lanes:
            if other.waiting:
                active += other.weight
        return (lane.waiting + 1) * (active or lane.weight) / lane.weight
    ahead = 1
    for other in lanes[: rank + 1]:
        ahead += other.waiting
    return ahead
