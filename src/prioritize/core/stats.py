"""Counters and frozen snapshots of a scheduler's state.

Durations (how long a request waited for its seat, how long it held it) go
into log histograms (four buckets per power of two, about 19 % relative
resolution) so recording is O(1) with no allocation and quantiles are
available without keeping every sample. A bucket is closed above,
``(2**(k/4), 2**((k+1)/4)]``, as a Prometheus ``le`` bucket is, so counts at
a bucket edge are exact: index ``ceil(4·log2(w)) - 1``. One ``log2`` is
several times cheaper than ``frexp`` plus the arithmetic of a log-linear
layout.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from math import ceil, inf, log2
from typing import final

from .tickets import Reason

__all__ = ["BUCKET_BOUNDS", "GateStats", "LevelStats", "WaitHistogram", "WaitSummary"]

_SUB = 4  # buckets per power of two
_OFFSET = 120  # 2**-30 s ≈ 1 ns: everything shorter counts as the first bucket
_BUCKETS = 200  # up to 2**20 s ≈ 12 days
_LAST = _BUCKETS - 1
#: upper bound (included) of bucket ``i``, the value `WaitHistogram.fold` bisects at
_UPPER = [2.0 ** ((index + 1 - _OFFSET) / _SUB) for index in range(_BUCKETS)]

#: the ``le`` bounds a `WaitSummary` counts at: every power of two from 2**-10 s
#: (about 1 ms) to 2**8 s (256 s), each one a bucket edge, so each count is exact
BUCKET_BOUNDS: tuple[float, ...] = tuple(2.0**power for power in range(-10, 9))


def _bucket(seconds: float) -> int:
    """The bucket of a positive duration: ``ceil(4·log2(w)) - 1`` shifted, clamped to the range."""
    index = ceil(log2(seconds) * _SUB) + (_OFFSET - 1)
    return 0 if index < 0 else _LAST if index > _LAST else index


@final
@dataclass(frozen=True, slots=True)
class WaitSummary:
    """A distribution of durations in seconds: waits for a seat, or seats held.

    Quantiles are the upper bound of the histogram bucket holding them (at
    most about 19 % above the exact value, never above ``max``).
    """

    count: int
    mean: float
    max: float
    p50: float
    p95: float
    p99: float
    #: sum of every sample, seconds
    total: float
    #: samples at or below each of `BUCKET_BOUNDS` (cumulative, as Prometheus ``le``)
    cumulative: tuple[int, ...]


@final
class WaitHistogram:
    """Distribution of durations: the waits of a level's grants, or its seats' holding times.

    Recording must be nearly free, it happens on every grant and release: a
    sample is a C-level ``pending.append``, and samples are folded into the
    buckets `BATCH` at a time (by `record`, or by the scheduler checking the
    length itself), so no Python call is made per sample on the hot path.
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
                # samples up to the bucket's upper bound; log2 may round either way
                # near it, so step over the boundary samples by _bucket itself
                hi = bisect_right(pending, _UPPER[index], lo)
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

    def cumulative(self, bounds: Sequence[float]) -> list[int]:
        """Samples at or below each of ``bounds`` (ascending): a Prometheus histogram's buckets.

        Exact for a bound on a bucket edge, ``2**(k/4)`` seconds (every power
        of two is one); a bound between edges counts only the buckets wholly
        below it. The top bucket also holds every sample beyond its range
        (about 12 days), so only an infinite bound counts it. O(buckets + bounds).
        """
        self.fold()
        buckets = self.buckets
        counts: list[int] = []
        seen = self.zero
        index = 0
        previous = -inf
        for bound in bounds:
            if not bound >= previous:
                raise ValueError(f"bounds must ascend; {bound!r} follows {previous!r}")
            previous = bound
            if bound < 0.0:
                counts.append(0)
                continue
            while index < _LAST and _UPPER[index] <= bound:
                seen += buckets[index]
                index += 1
            if index == _LAST and bound == inf:
                seen += buckets[_LAST]
                index += 1
            counts.append(seen)
        return counts

    def merge(self, other: WaitHistogram) -> None:
        """Add ``other``'s samples to this histogram, as if they had been recorded here."""
        self.fold()
        other.fold()
        self.buckets = [
            mine + theirs for mine, theirs in zip(self.buckets, other.buckets, strict=True)
        ]
        self.zero += other.zero
        self._folded += other._folded
        self.total += other.total
        if other.max > self.max:
            self.max = other.max

    def summary(self) -> WaitSummary:
        self.fold()
        return WaitSummary(
            count=self.count,
            mean=self.total / self.count if self.count else 0.0,
            max=self.max,
            p50=self.quantile(0.50),
            p95=self.quantile(0.95),
            p99=self.quantile(0.99),
            total=self.total,
            cumulative=tuple(self.cumulative(BUCKET_BOUNDS)),
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
    #: from submit to grant, for every request granted
    wait: WaitSummary
    #: from grant to release: how long each seat given back was held
    service: WaitSummary

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
