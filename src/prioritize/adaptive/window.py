"""The samples of one controller window, shared by `AIMD` and `Gradient`.

Both controllers move their limit at most once per window: a window closes
when it has lasted ``length`` seconds and holds ``min_samples`` RTTs, or at
once on a drop, so many samples (or many drops) in one window cost one step.
"""

from __future__ import annotations

import math
from typing import final

__all__ = ["SampleWindow"]


@final
class SampleWindow:
    """RTT sum and count, the most requests in flight, and whether one was dropped."""

    __slots__ = ("count", "dropped", "inflight", "length", "min_samples", "rtt_sum", "start")

    def __init__(self, length: float, min_samples: int) -> None:
        self.length = length
        self.min_samples = min_samples
        #: when the open window opened: the last close (-inf: the first window is only counted)
        self.start = -math.inf
        self.count = 0
        self.rtt_sum = 0.0
        self.inflight = 0
        self.dropped = False

    def add(self, now: float, rtt: float, inflight: int, dropped: bool) -> bool:
        """Count one sample (a dropped one's RTT is not averaged); True when the window is due."""
        if dropped:
            self.dropped = True
        else:
            self.count += 1
            self.rtt_sum += rtt
        if inflight > self.inflight:
            self.inflight = inflight
        return now - self.start >= self.length and (self.count >= self.min_samples or self.dropped)

    def reset(self, now: float) -> None:
        """Open the next window at ``now``."""
        self.start = now
        self.count = 0
        self.rtt_sum = 0.0
        self.inflight = 0
        self.dropped = False
