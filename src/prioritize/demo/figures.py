"""The figures of one run, per level, counted from every request's outcome.

Latency percentiles are exact, nearest rank over every served request (the
same `quantile` as the simulator's): p99 of 1,000 samples is the 990th
smallest. Only requests scheduled in the measured window count — after the
warm-up, before the end — and every one of them was followed to its end, so
for every level ``offered = served + shed + errors``. Shed requests have no
latency figure: they were answered quickly with a reason, and mixing those
answers into the percentiles would make an overloaded level look fast.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import final

from ..simulate.report import quantile
from .driver import Kind, Outcome

__all__ = ["Bucket", "LevelFigures", "RunFigures", "bucket_width", "level_figures", "run_figures"]


@final
@dataclass(frozen=True, slots=True)
class LevelFigures:
    """What happened to the measured requests of one level (or of all, for the total)."""

    level: str
    offered: int
    served: int
    shed: int
    errors: int
    #: latency of served requests, seconds; None when none was served
    p50: float | None
    p95: float | None
    p99: float | None
    #: shed requests by the reason in their problem details
    shed_by_reason: Mapping[str, int]
    #: errors by what went wrong
    errors_by_detail: Mapping[str, int]


@final
@dataclass(frozen=True, slots=True)
class Bucket:
    """One level's requests scheduled in one slice of the measured window."""

    #: seconds after the start of the measured window
    start: float
    served: int
    shed: int
    #: p99 latency of the bucket's served requests; None when none was served
    p99: float | None


@final
@dataclass(frozen=True, slots=True)
class RunFigures:
    """One run of a schedule against one server: a table's worth of figures, and a timeline."""

    #: what the run was: "unloaded", "priorities" or "fifo"
    name: str
    #: measured seconds, and the warm-up before them
    duration: float
    warmup: float
    #: requests per second offered in the measured window
    rate: float
    #: work offered per second over the capacity: 4.0 is 4× overload
    load: float
    levels: tuple[LevelFigures, ...]
    total: LevelFigures
    #: per level, the measured window in buckets of `bucket` seconds
    timeline: Mapping[str, tuple[Bucket, ...]]
    bucket: float
    #: 99th percentile of how late the load generator sent requests, seconds
    lag_p99: float
    #: CPU seconds the load generator and the server used during the run (None: unknown)
    client_cpu: float
    server_cpu: float | None
    #: wall-clock seconds from the first request sent to the last answer
    wall: float

    def level(self, name: str) -> LevelFigures:
        for figures in self.levels:
            if figures.level == name:
                return figures
        raise KeyError(f"no level {name!r}; levels are {[f.level for f in self.levels]}")


def level_figures(level: str, outcomes: Sequence[Outcome]) -> LevelFigures:
    """The figures of ``outcomes`` (already restricted to one level and the window)."""
    latencies = sorted(o.latency for o in outcomes if o.kind is Kind.SERVED)
    shed = Counter(o.detail for o in outcomes if o.kind is Kind.SHED)
    errors = Counter(o.detail for o in outcomes if o.kind is Kind.ERROR)
    return LevelFigures(
        level=level,
        offered=len(outcomes),
        served=len(latencies),
        shed=sum(shed.values()),
        errors=sum(errors.values()),
        p50=quantile(latencies, 0.50),
        p95=quantile(latencies, 0.95),
        p99=quantile(latencies, 0.99),
        shed_by_reason=MappingProxyType(dict(sorted(shed.items()))),
        errors_by_detail=MappingProxyType(dict(sorted(errors.items()))),
    )


def bucket_width(duration: float) -> float:
    """1 s buckets, or a tenth of a window shorter than 10 s."""
    return 1.0 if duration >= 10 else duration / 10


def run_figures(
    name: str,
    levels: Sequence[str],
    outcomes: Sequence[Outcome],
    *,
    warmup: float,
    duration: float,
    load: float,
    client_cpu: float,
    server_cpu: float | None,
    wall: float,
) -> RunFigures:
    """Figures of the outcomes scheduled in ``[warmup, warmup + duration)``, per level."""
    measured = [o for o in outcomes if warmup <= o.scheduled < warmup + duration]
    by_level: dict[str, list[Outcome]] = {level: [] for level in levels}
    for outcome in measured:
        by_level[outcome.level].append(outcome)
    width = bucket_width(duration)
    lags = sorted(o.lag for o in outcomes)
    return RunFigures(
        name=name,
        duration=duration,
        warmup=warmup,
        rate=len(measured) / duration,
        load=load,
        levels=tuple(level_figures(level, by_level[level]) for level in levels),
        total=level_figures("total", measured),
        timeline=MappingProxyType(
            {level: _timeline(by_level[level], warmup, duration, width) for level in levels}
        ),
        bucket=width,
        lag_p99=quantile(lags, 0.99) or 0.0,
        client_cpu=client_cpu,
        server_cpu=server_cpu,
        wall=wall,
    )


def _timeline(
    outcomes: Sequence[Outcome], warmup: float, duration: float, width: float
) -> tuple[Bucket, ...]:
    count = max(1, math.ceil(duration / width - 1e-9))
    slices: list[list[Outcome]] = [[] for _ in range(count)]
    for outcome in outcomes:
        slices[min(int((outcome.scheduled - warmup) / width), count - 1)].append(outcome)
    buckets = []
    for index, part in enumerate(slices):
        figures = level_figures("", part)
        buckets.append(Bucket(index * width, figures.served, figures.shed, figures.p99))
    return tuple(buckets)
