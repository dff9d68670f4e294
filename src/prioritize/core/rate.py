"""Recent completion rate, the denominator of every ``retry_after`` estimate.

The scheduler already counts completions (grants minus seats held), so the
rate needs no counter of its own: it samples that running total at most
once per ``window`` and divides the growth since the sample before by the
time elapsed. The hot path pays one comparison against `due`; the division
happens only when a shed asks for ``retry_after``. The estimate spans the
last one to two windows and decays smoothly when completions stop.
"""

from __future__ import annotations

import math
from typing import final

__all__ = ["CompletionRate"]


@final
class CompletionRate:
    """Completions per second over the last one to two ``window`` seconds."""

    __slots__ = ("_count0", "_count1", "_time0", "_time1", "due", "window")

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        #: the time from which `sample` should be called again
        self.due = -math.inf
        self._time0 = self._time1 = math.nan
        self._count0 = self._count1 = 0

    def sample(self, now: float, total: int) -> None:
        """Note the running total of completions at ``now``; call once `due` has passed."""
        self._time0, self._count0 = self._time1, self._count1
        self._time1, self._count1 = now, total
        self.due = now + self.window

    def per_second(self, now: float, total: int) -> float:
        """The rate at ``now``, given the running total then (0 before two completions)."""
        start, count = self._time0, self._count0
        if math.isnan(start):
            start, count = self._time1, self._count1
        if math.isnan(start) or now <= start:
            return 0.0
        return (total - count) / (now - start)
