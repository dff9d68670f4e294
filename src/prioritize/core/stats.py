"""Counters and frozen snapshots of a scheduler's state.

Wait times go into a log-linear histogram (four buckets per power of two,
about 19 % relative resolution) so recording is O(1) with no allocation and
quantiles are available without keeping every sample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import final

from .tickets import Reason

__all__ = ["GateStats", "LevelStats", "WaitHistogram", "WaitSummary"]

_SUB = 4  # buckets per power of two
_MIN_EXP = -30  # 2**-30 s ≈ 1 ns: everything shorter counts as the first bucket
_MAX_EXP = 20  # 2**20 s ≈ 12 days
_BUCKETS = (_MAX_EXP - _MIN_EXP) * _SUB


@final
@dataclass(frozen=True, slots=True)
class WaitSummary:
    """How long granted requests waited for their seat, in seconds."""

    count: int
    mean: float
    max: float
    p50: float
    p95: float
    p99: float


@final
class WaitHistogram:
    """Distribution of wait times; `record` is O(1)."""

    __slots__ = ("buckets", "count", "max", "total", "zero")

    def __init__(self) -> None:
        self.buckets = [0] * _BUCKETS
        self.zero = 0
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def record(self, seconds: float) -> None:
        self.count += 1
        if seconds <= 0.0:
            self.zero += 1
            return
        self.total += seconds
        self.max = max(self.max, seconds)
        mantissa, exp = math.frexp(seconds)
        index = (exp - _MIN_EXP) * _SUB + int((mantissa - 0.5) * 2 * _SUB)
        self.buckets[min(max(index, 0), _BUCKETS - 1)] += 1

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding the ``q`` quantile (0 when nothing waited)."""
        if self.count == 0:
            return 0.0
        rank = q * self.count
        seen = self.zero
        if seen >= rank:
            return 0.0
        for index, n in enumerate(self.buckets):
            seen += n
            if seen >= rank:
                exp, sub = divmod(index, _SUB)
                upper = math.ldexp(0.5 + (sub + 1) / (2 * _SUB), exp + _MIN_EXP)
                return min(upper, self.max)
        return self.max

    def summary(self) -> WaitSummary:
        return WaitSummary(
            count=self.count,
            mean=self.total / self.count if self.count else 0.0,
            max=self.max,
            p50=self.quantile(0.50),
            p95=self.quantile(0.95),
            p99=self.quantile(0.99),
        )


@final
@dataclass(frozen=True, slots=True)
class LevelStats:
    """One level at one gate, at one instant."""

    level: str
    min: int
    max: int
    in_use: int
    waiting: int
    flows: int
    submitted: int
    granted: int
    released: int
    cancelled: int
    shed: Mapping[Reason, int]
    wait: WaitSummary

    @property
    def shed_total(self) -> int:
        return sum(self.shed.values())


@final
@dataclass(frozen=True, slots=True)
class GateStats:
    """A gate at one instant: seats, queue and per-level counters."""

    name: str
    capacity: int
    in_use: int
    waiting: int
    levels: tuple[LevelStats, ...]

    def level(self, name: str) -> LevelStats:
        for stats in self.levels:
            if stats.level == name:
                return stats
        raise KeyError(
            f"no level {name!r} in these stats; levels are {[s.level for s in self.levels]}"
        )
