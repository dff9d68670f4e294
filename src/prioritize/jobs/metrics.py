"""Prometheus metrics of a job worker: its runs, their durations, its busy slots, and the queue.

Two collectors, read at scrape time from copies the worker keeps, so a
scrape never waits on the worker's event loop nor calls the broker:

* `WorkerMetrics` — what this worker did: runs ended by task, level and
  outcome, run durations per level, slots busy now and in all;
* `QueueMetrics` — the broker's counts per level (queued, scheduled,
  running, dead, the oldest wait), as the worker last sampled them: broker
  calls are coroutines of the worker's loop, and a scrape runs on the
  scraper's thread (``prometheus_client.start_http_server``), so the worker
  samples them every ``stats_interval`` seconds and the scrape reads the
  last sample. Every worker exports the same queue-wide numbers: aggregate
  them with ``max``, not ``sum``.

::

    from prioritize.jobs.metrics import register_worker

    register_worker(worker)          # into prometheus_client's default registry
    prometheus_client.start_http_server(9100)

The ``gate`` label is the name of the queue's gate policy (``jobs`` by
default), as on the gate metrics of `prioritize.metrics`; histogram buckets
are theirs too (`BUCKET_BOUNDS`). ``prioritize worker --metrics-port N``
does all of this. Requires the ``metrics`` extra.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import final

try:
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.utils import floatToGoString
except ImportError as exc:
    raise ImportError(
        "prioritize.jobs.metrics needs prometheus-client; install it with "
        "pip install 'prioritize[metrics]'"
    ) from exc

from ..core.stats import BUCKET_BOUNDS
from ._worker_stats import OUTCOMES, RunTimes, WorkerStats
from .model import LevelJobStats
from .worker import Worker

__all__ = ["QueueMetrics", "WorkerMetrics", "register_worker"]

_go_float: Callable[[float], str] = floatToGoString
_LE = (*(_go_float(bound) for bound in BUCKET_BOUNDS), "+Inf")
#: the states of `LevelJobStats` exported as ``prioritize_jobs{state}``
_STATES = ("queued", "scheduled", "running", "dead")


def _register(collector: object, registry: CollectorRegistry | None, what: str) -> None:
    if registry is None:
        return
    try:
        registry.register(collector)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ValueError(
            f"this registry already exports {what} (another worker's, or this one's); "
            "a process runs one worker: give this collector another registry"
        ) from exc


@final
class WorkerMetrics:
    """A collector of one worker's counters: runs by outcome, run times, busy slots.

    Registers itself with ``registry`` (the default registry unless told;
    None: register it yourself). Series exist from the first scrape for
    each registered task at its level and each outcome, zeros included, so
    ``rate()`` works from the start.
    """

    def __init__(self, worker: Worker, registry: CollectorRegistry | None = REGISTRY) -> None:
        self.worker = worker
        self.gate = worker.queue.gate_policy.name
        _register(self, registry, "a job worker's metrics")

    def describe(self) -> list[Metric]:
        return list(self._families(None))

    def collect(self) -> Iterator[Metric]:
        yield from self._families(self.worker.stats)

    def _families(self, stats: WorkerStats | None) -> list[Metric]:
        gate = self.gate
        processed = CounterMetricFamily(
            "prioritize_jobs_processed",
            "Runs of jobs this worker ended, by task, level and outcome: succeeded, failed "
            "(a retry is scheduled), dead (no retry left, or none can mend it), released "
            "(the worker stopped before the run ended).",
            labels=("gate", "task", "level", "outcome"),
        )
        run_time = HistogramMetricFamily(
            "prioritize_job_run_seconds",
            "Time this worker's runs took, from start to outcome (released runs not counted).",
            labels=("gate", "level"),
            unit="seconds",
        )
        running = GaugeMetricFamily(
            "prioritize_jobs_running",
            "Slots of this worker busy now, by level (a sync job past its timeout keeps its "
            "slot until its thread returns).",
            labels=("gate", "level"),
        )
        slots = GaugeMetricFamily(
            "prioritize_worker_slots", "Jobs this worker may run at once.", labels=("gate",)
        )
        if stats is not None:
            counts = dict.fromkeys(self._zero_series(), 0) | stats.by_task
            for (task, level, outcome), count in sorted(counts.items()):
                processed.add_metric((gate, task, level, outcome), count)
            for level in self._levels(stats):
                times = stats.run_times.get(level, RunTimes())
                buckets = list(zip(_LE, (*times.cumulative, times.count), strict=True))
                run_time.add_metric((gate, level), buckets, times.total)
                running.add_metric((gate, level), stats.running_by_level.get(level, 0))
            slots.add_metric((gate,), stats.concurrency)
        return [processed, run_time, running, slots]

    def _levels(self, stats: WorkerStats) -> list[str]:
        served = self.worker.levels or self.worker.queue.levels.names
        return list(dict.fromkeys([*served, *stats.run_times, *stats.running_by_level]))

    def _zero_series(self) -> list[tuple[str, str, str]]:
        queue = self.worker.queue
        keys = []
        for name, task in queue.tasks.items():
            level = task.level or queue.default_level.name
            if self.worker.levels is None or level in self.worker.levels:
                keys += [(name, level, outcome) for outcome in OUTCOMES]
        return keys

    def __repr__(self) -> str:
        return f"<WorkerMetrics of {self.worker.name}>"


@final
class QueueMetrics:
    """A collector of the broker's counts per level, from the worker's last sample.

    Exports nothing until the worker has sampled them once (it does on
    start, then every ``stats_interval`` seconds).
    """

    def __init__(self, worker: Worker, registry: CollectorRegistry | None = REGISTRY) -> None:
        self.worker = worker
        self.gate = worker.queue.gate_policy.name
        _register(self, registry, "a job queue's metrics")

    def describe(self) -> list[Metric]:
        return list(self._families(None, None))

    def collect(self) -> Iterator[Metric]:
        stats = self.worker.stats
        yield from self._families(stats.queue.levels if stats.queue else None, stats.sampled_at)

    def _families(
        self, levels: dict[str, LevelJobStats] | None, sampled_at: float | None
    ) -> list[Metric]:
        gate = self.gate
        jobs = GaugeMetricFamily(
            "prioritize_jobs",
            "Jobs in the broker now, by level and state: queued, scheduled (delayed or "
            "backing off), running (on any worker), dead (in the dead-letter set).",
            labels=("gate", "level", "state"),
        )
        oldest = GaugeMetricFamily(
            "prioritize_jobs_oldest_wait_seconds",
            "How long the oldest queued job of the level has been waiting.",
            labels=("gate", "level"),
            unit="seconds",
        )
        sampled = GaugeMetricFamily(
            "prioritize_jobs_sampled_timestamp_seconds",
            "When the worker last read these counts from the broker (epoch seconds).",
            labels=("gate",),
        )
        if levels is not None and sampled_at is not None:
            for level, row in levels.items():
                for state in _STATES:
                    jobs.add_metric((gate, level, state), getattr(row, state))
                oldest.add_metric((gate, level), row.oldest_wait)
            sampled.add_metric((gate,), sampled_at)
        return [jobs, oldest, sampled]

    def __repr__(self) -> str:
        return f"<QueueMetrics of {self.worker.name}>"


def register_worker(
    worker: Worker, registry: CollectorRegistry = REGISTRY
) -> tuple[WorkerMetrics, QueueMetrics]:
    """Export ``worker``'s counters and its samples of the queue in ``registry``."""
    return WorkerMetrics(worker, registry), QueueMetrics(worker, registry)
