"""The figures of a simulation, as frozen values and as JSON.

Every number here was counted while the real `Scheduler` ran; nothing is
derived from queueing formulas. Wait percentiles are exact: the engine keeps
every served request's wait and `quantile` takes the nearest rank of the
sorted samples (the smallest sample with at least ``q`` of them at or below
it), so p99 of 1,000 samples is the 990th smallest. The scheduler's own
histogram is approximate (about 19 % buckets) and is not used here.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import final

from ..adaptive.spec import AdaptiveSpec
from ..core.tickets import Reason
from .contention import Contention
from .load import LoadSpec

__all__ = [
    "LIMIT_SLICES",
    "SHED_REASONS",
    "LevelFigures",
    "LimitFigures",
    "Report",
    "RunFigures",
    "quantile",
]

#: How many equal slices of the measured window `LimitFigures.series` averages the limit over.
LIMIT_SLICES = 10

#: Every reason, in the order reports show them. ``shutdown`` only counts requests
#: stranded at the end of a run: still waiting once nothing could serve or time them
#: out (``max_wait = inf`` and every seat they may take reserved for others), shed
#: when the drained gate is closed, as at a service's shutdown. ``throttled`` is left
#: out: only an outbound HTTP client refuses with it, never a gate.
SHED_REASONS: tuple[Reason, ...] = tuple(r for r in Reason if r is not Reason.THROTTLED)


def quantile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank ``q`` quantile of already sorted samples; None when there are none."""
    if not ordered:
        return None
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


@final
@dataclass(frozen=True, slots=True)
class LevelFigures:
    """What happened to the measured requests of one level (or of all, for totals)."""

    level: str
    #: requests that arrived in the measured window
    offered: int
    #: of those, requests that got a seat (and, the run being drained, completed)
    served: int
    #: of those, requests shed, by reason
    shed: Mapping[Reason, int]
    #: wait for a seat of served requests, seconds; None when none was served
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None
    #: served requests per measured second
    goodput: float

    @property
    def shed_total(self) -> int:
        return sum(self.shed.values())

    def to_dict(self) -> dict[str, object]:
        return {
            "level": self.level,
            "offered": self.offered,
            "served": self.served,
            "shed": self.shed_total,
            "shed_by_reason": {reason.value: n for reason, n in self.shed.items()},
            "wait": {"p50": self.p50, "p95": self.p95, "p99": self.p99, "max": self.max},
            "goodput": self.goodput,
        }


@final
@dataclass(frozen=True, slots=True)
class LimitFigures:
    """How an adaptive capacity's limit moved over the measured window of one run.

    Means are weighted by time: a limit held for 2 s counts twice as much as
    one held for 1 s.
    """

    min: int
    mean: float
    max: int
    #: the mean limit over each of `LIMIT_SLICES` equal slices of the measured window
    series: tuple[float, ...]
    #: how many times the limit changed in the measured window
    changes: int

    @classmethod
    def from_steps(
        cls, steps: Sequence[tuple[float, int]], start: float, end: float
    ) -> LimitFigures:
        """Figures of the step function ``steps`` (time, limit from then on) over [start, end].

        ``steps`` is in time order and its first step is at or before ``start``.
        """
        width = (end - start) / LIMIT_SLICES
        edges = [start + i * width for i in range(LIMIT_SLICES)] + [end]
        series = tuple(_mean_limit(steps, lo, hi) for lo, hi in itertools.pairwise(edges))
        held = [limit for t, limit in steps if start < t < end]
        held.append(_limit_at(steps, start))
        return cls(
            min=min(held),
            mean=_mean_limit(steps, start, end),
            max=max(held),
            series=series,
            changes=sum(1 for t, _ in steps if start < t < end),
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "min": self.min,
            "mean": self.mean,
            "max": self.max,
            "series": list(self.series),
            "changes": self.changes,
        }


def _limit_at(steps: Sequence[tuple[float, int]], t: float) -> int:
    current = steps[0][1]
    for when, limit in steps:
        if when > t:
            break
        current = limit
    return current


def _mean_limit(steps: Sequence[tuple[float, int]], lo: float, hi: float) -> float:
    """Time-weighted mean of the step function over [lo, hi]."""
    if hi <= lo:
        return float(_limit_at(steps, lo))
    total, at, current = 0.0, lo, _limit_at(steps, lo)
    for when, limit in steps:
        if when <= lo:
            continue
        if when >= hi:
            break
        total += current * (when - at)
        at, current = when, limit
    total += current * (hi - at)
    return total / (hi - lo)


@final
@dataclass(frozen=True, slots=True)
class RunFigures:
    """One pass of the arrivals through one gate policy."""

    #: ``"policy"`` or ``"fifo"``
    name: str
    gate: str
    capacity: int
    #: the gate's total queue bound
    queue: int
    #: per loaded level, most important first (the FIFO run too: by original level)
    levels: tuple[LevelFigures, ...]
    total: LevelFigures
    #: scheduler events processed (arrivals, completions, timer firings)
    events: int
    #: virtual time at which the last request finished
    drained_at: float
    #: how the limit moved, when the capacity was adaptive
    limit: LimitFigures | None = None
    #: seconds measured requests held their seat (their RTT), under a service model only
    rtt_p50: float | None = None
    rtt_p99: float | None = None

    def level(self, name: str) -> LevelFigures:
        for figures in self.levels:
            if figures.level == name:
                return figures
        raise KeyError(
            f"no level {name!r} in this run; levels are {[f.level for f in self.levels]}"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "gate": self.gate,
            "capacity": self.capacity,
            "queue": self.queue,
            "events": self.events,
            "drained_at": self.drained_at,
            "levels": [figures.to_dict() for figures in self.levels],
            "total": self.total.to_dict(),
            **({} if self.limit is None else {"limit": self.limit.to_dict()}),
            **({} if self.rtt_p50 is None else {"rtt": {"p50": self.rtt_p50, "p99": self.rtt_p99}}),
        }


@final
@dataclass(frozen=True, slots=True)
class Report:
    """The same arrivals run through the policy's gate and through plain FIFO."""

    spec: LoadSpec
    policy: RunFigures
    fifo: RunFigures
    #: the FIFO baseline's max_wait: the largest finite max_wait of the policy's levels
    fifo_max_wait: float
    #: service seconds of the measured arrivals per second, over the capacity (over the
    #: knee under a contention model, where more seats add no throughput): 4.0 is 4× overload
    offered_load: float
    #: the adaptive capacity both runs used (each its own controller), if any
    adaptive: AdaptiveSpec | None = None
    #: how service times stretched with the number in flight, if they did
    service_model: Contention | None = None

    def to_dict(self) -> dict[str, object]:
        spec, model = self.spec, self.service_model
        return {
            "gate": spec.gate,
            "capacity": self.policy.capacity,
            "duration": spec.duration,
            "warmup": spec.warmup,
            "seed": spec.seed,
            "overload": spec.overload,
            "offered_rate": spec.offered_rate,
            "offered_load": self.offered_load,
            "load": [
                {
                    "level": load.level,
                    "rate": load.rate,
                    "service": load.service.to_dict(),
                    "flows": load.flows,
                    "skew": load.skew,
                }
                for load in spec.levels
            ],
            "fifo_max_wait": _finite(self.fifo_max_wait),
            **({} if self.adaptive is None else {"adaptive": _adaptive(self.adaptive)}),
            **({} if model is None else {"service_model": model.to_dict()}),
            "policy": self.policy.to_dict(),
            "fifo": self.fifo.to_dict(),
        }

    def to_json(self) -> str:
        """Strict JSON (an infinite max_wait is ``null``), indented for people and diffs."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)


def _adaptive(spec: AdaptiveSpec) -> dict[str, object]:
    """The spec's table, an infinite option (``max_rtt = inf``) as ``null``."""
    return {k: _finite(v) if isinstance(v, float) else v for k, v in spec.to_dict().items()}


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
