"""A worker's counters: runs ended by task, level and outcome, run times, busy slots.

Written on the worker's event loop, read by metrics scrapes on other
threads: every access takes one lock, and readers get copies
(`WorkerStats`), never the live dicts.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from dataclasses import dataclass
from typing import final

from ..core.stats import BUCKET_BOUNDS
from .model import JobStats

__all__ = ["OUTCOMES", "RunTimes", "Tally", "WorkerStats"]

#: what a job's run ended as, for logs, stats and metrics
OUTCOMES = ("succeeded", "failed", "dead", "released")


@final
@dataclass(frozen=True, slots=True)
class RunTimes:
    """How long one level's runs took: Prometheus-style cumulative buckets at `BUCKET_BOUNDS`."""

    count: int = 0
    #: seconds, all runs together
    total: float = 0.0
    #: runs at or below each of `BUCKET_BOUNDS` (``le``, cumulative)
    cumulative: tuple[int, ...] = (0,) * len(BUCKET_BOUNDS)


@final
@dataclass(frozen=True, slots=True)
class WorkerStats:
    """A worker's counters at one moment: a copy, safe to read from any thread."""

    name: str
    concurrency: int
    #: slots busy now (a sync job past its timeout keeps its slot until its thread returns)
    running: int
    #: slots busy now, by level
    running_by_level: dict[str, int]
    #: runs ended, by outcome: succeeded, failed (retry scheduled), dead, released
    processed: dict[str, int]
    #: runs ended, by (task, level, outcome)
    by_task: dict[tuple[str, str, str], int]
    #: run durations by level (released runs are not counted)
    run_times: dict[str, RunTimes]
    #: the broker's counts as last sampled (every ``stats_interval`` s), None before the first
    queue: JobStats | None = None
    #: epoch seconds of that sample
    sampled_at: float | None = None


@final
class Tally:
    """The live counters behind `WorkerStats`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_task: dict[tuple[str, str, str], int] = {}
        self._running: dict[str, int] = {}
        #: per level: runs per bucket of BUCKET_BOUNDS, the last one above every bound
        self._buckets: dict[str, list[int]] = {}
        self._totals: dict[str, float] = {}

    def started(self, level: str) -> None:
        with self._lock:
            self._running[level] = self._running.get(level, 0) + 1

    def ended(self, level: str) -> None:
        with self._lock:
            self._running[level] -= 1

    def outcome(self, task: str, level: str, outcome: str, seconds: float | None) -> None:
        """Count a run's outcome; ``seconds`` it took, None to leave it out of the run times."""
        with self._lock:
            key = (task, level, outcome)
            self._by_task[key] = self._by_task.get(key, 0) + 1
            if seconds is not None:
                buckets = self._buckets.get(level)
                if buckets is None:
                    buckets = self._buckets[level] = [0] * (len(BUCKET_BOUNDS) + 1)
                buckets[bisect_left(BUCKET_BOUNDS, seconds)] += 1
                self._totals[level] = self._totals.get(level, 0.0) + seconds

    def snapshot(
        self, name: str, concurrency: int, queue: JobStats | None, sampled_at: float | None
    ) -> WorkerStats:
        with self._lock:
            by_task = dict(self._by_task)
            running = {level: n for level, n in self._running.items() if n}
            run_times = {level: self._run_times(level) for level in self._buckets}
        processed = dict.fromkeys(OUTCOMES, 0)
        for (_, _, outcome), count in by_task.items():
            processed[outcome] += count
        return WorkerStats(
            name,
            concurrency,
            sum(running.values()),
            running,
            processed,
            by_task,
            run_times,
            queue,
            sampled_at,
        )

    def _run_times(self, level: str) -> RunTimes:
        cumulative, seen = [], 0
        buckets = self._buckets[level]
        for count in buckets[:-1]:
            seen += count
            cumulative.append(seen)
        return RunTimes(sum(buckets), self._totals[level], tuple(cumulative))
