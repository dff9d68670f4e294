"""Counters and frozen snapshots of a scheduler's state.

Wait times go into a log histogram (four buckets per power of two, about
19 % relative resolution) so recording is O(1) with no allocation and
quantiles are available without keeping every sample. The bucket is
``floor(4·log2(w))``: one ``log2`` is several times cheaper than
``frexp`` plus the arithmetic of a log-linear layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from math import log2
from typing import final

from .tickets import Reason

__all__ = ["GateStats", "LevelStats", "WaitHistogram", "WaitSummary"]

_SUB = 4  # buckets per power of two
_OFFSET = 120  # 2**-30 s ≈ 1 ns: everything shorter counts as the first bucket
_BUCKETS = 200  # up to 2**20 s ≈ 12 days


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
    """Distribution of wait times.

    Recording must be nearly free, it happens on every grant: a sample is a
    C-level ``pending.append``, and samples are folded into the buckets
    `BATCH` at a time (by `record`, or by the scheduler checking the length
    itself), so no Python call is made per sample on the hot path.
    """

    __slots__ = ("_folded", "buckets", "max", "pending", "total", "zero")

    # ``zero`` counts waits of 0 (grants at once; the scheduler bumps it directly),
    # ``_folded`` the other samples already in ``buckets``.

    #: samples kept unfolded at most
    BATCH = 1024

    def __init__(self) -> None:
        self.buckets = [0] * _BUCKETS
        self.pending: list[float] = []
        self.zero = 0
        self.total = 0.0
        self.max = 0.0
        self._folded = 0

    @property
    def count(self) -> int:
        """Samples recorded, folded or not."""
        return self.zero + self._folded + len(self.pending)

    def record(self, seconds: float) -> None:
        self.pending.append(seconds)
        if len(self.pending) >= self.BATCH:
            self.fold()

    def fold(self) -> None:
        """Move the pending samples into the buckets."""
        pending, buckets = self.pending, self.buckets
        if not pending:
            return
        self.total += sum(pending)
        self.max = max(self.max, *pending)
        last = _BUCKETS - 1
        for seconds in pending:
            if seconds <= 0.0:
                self.zero += 1
                continue
            self._folded += 1
            index = int(log2(seconds) * _SUB + _OFFSET)
            buckets[0 if index < 0 else last if index > last else index] += 1
        pending.clear()

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding the ``q`` quantile (0 when nothing waited)."""
        self.fold()
        if self.count == 0:
            return 0.0
        rank = q * self.count
        seen = self.zero
        if seen >= rank:
            return 0.0
        for index, n in enumerate(self.buckets):
            seen += n
            if seen >= rank:
                return min(float(2.0 ** ((index + 1 - _OFFSET) / _SUB)), self.max)
        return self.max

    def summary(self) -> WaitSummary:
        self.fold()
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
