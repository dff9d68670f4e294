"""Counters and frozen snapshots of a scheduler's state.

Wait times go into a log histogram (four buckets per power of two, about
19 % relative resolution) so recording is O(1) with no allocation and
quantiles are available without keeping every sample. The bucket is
``floor(4·log2(w))``: one ``log2`` is several times cheaper than
``frexp`` plus the arithmetic of a log-linear layout.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from math import log2
from typing import final

from .tickets import Reason

__all__ = ["GateStats", "LevelStats", "WaitHistogram", "WaitSummary"]

_SUB = 4  # buckets per power of two
_OFFSET = 120  # 2**-30 s ≈ 1 ns: everything shorter counts as the first bucket
_BUCKETS = 200  # up to 2**20 s ≈ 12 days
_LAST = _BUCKETS - 1
#: lower bound of bucket ``i + 1``, the value `WaitHistogram.fold` bisects at for bucket ``i``
_UPPER = [2.0 ** ((index + 1 - _OFFSET) / _SUB) for index in range(_BUCKETS)]


def _bucket(seconds: float) -> int:
    """The bucket of a positive wait: ``floor(4·log2(w))`` shifted, clamped to the range."""
    index = int(log2(seconds) * _SUB + _OFFSET)
    return 0 if index < 0 else _LAST if index > _LAST else index


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
        """Move the pending samples into the buckets.

        Sorted first (in C), so each non-empty bucket costs one ``log2`` and
        one C bisection instead of a ``log2`` per sample: waits in one batch
        fall in few buckets, which makes this several times cheaper per sample.
        """
        pending, buckets = self.pending, self.buckets
        if not pending:
            return
        pending.sort()
        end = len(pending)
        lo = bisect_right(pending, 0.0)
        self.zero += lo
        if lo < end:
            self._folded += end - lo
            self.total += sum(pending)
            if pending[-1] > self.max:
                self.max = pending[-1]
            while lo < end:
                index = _bucket(pending[lo])
                if index >= _LAST:
                    buckets[_LAST] += end - lo
                    break
                # samples below the next bucket's lower bound; the float bound may
                # round either way, so step over the boundary sample by _bucket itself
                hi = bisect_left(pending, _UPPER[index], lo)
                while hi < end and _bucket(pending[hi]) <= index:
                    hi += 1
                while hi - 1 > lo and _bucket(pending[hi - 1]) > index:
                    hi -= 1
                buckets[index] += hi - lo
                lo = hi
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
