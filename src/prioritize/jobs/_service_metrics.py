"""``/metrics`` of the job service: the submit gate, the middleware, and the queue's jobs.

The job counts come from the broker, whose connections live on the app's
event loop, so the endpoint refreshes them there before each export (at
most once per ``max_age`` seconds) and the collector only reads that
snapshot: prometheus_client never calls the broker, and a scrape never
touches the submissions' path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any, final

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..metrics import metrics_app
from .model import JobStats
from .queue import JobQueue

__all__ = ["JobMetrics", "MetricsEndpoint", "new_registry"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_log = logging.getLogger("prioritize.jobs.service")


@final
class MetricsEndpoint:
    """``/metrics``: refresh the job counts if stale, on this loop, then export everything."""

    def __init__(self, queue: JobQueue, registry: CollectorRegistry, max_age: float) -> None:
        self.queue = queue
        self.max_age = max_age
        self.collector = JobMetrics(queue.gate_policy.name)
        registry.register(self.collector)
        self._exposition = metrics_app(registry)
        self._taken: float | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.refresh()
        await self._exposition(scope, receive, send)

    async def refresh(self) -> None:
        now = asyncio.get_running_loop().time()
        if self._taken is not None and now - self._taken < self.max_age:
            return
        try:
            stats = await self.queue.stats()
        except Exception:  # the broker is down: still export the gates and the last counts
            _log.exception("reading job stats for /metrics failed; exporting the last ones")
            return
        self.collector.snapshot, self.collector.sampled_at = stats, time.time()
        self._taken = now


@final
class JobMetrics:
    """A collector of the last job counts read (`MetricsEndpoint` refreshes them).

    ``prioritize_jobs`` and ``prioritize_jobs_oldest_wait_seconds`` are the
    series a worker exports (`prioritize.jobs.metrics.QueueMetrics`), so
    dashboards read either; ``prioritize_jobs_sampled_timestamp_seconds``
    says how fresh they are (it stops moving while the broker is down).
    """

    def __init__(self, gate: str) -> None:
        self.gate = gate
        self.snapshot: JobStats | None = None
        self.sampled_at: float | None = None

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        labels = ["gate", "level"]
        jobs = GaugeMetricFamily(
            "prioritize_jobs",
            "Jobs in the broker now, by level and state: queued, scheduled (delayed or "
            "backing off), running (on any worker), dead (in the dead-letter set).",
            labels=[*labels, "state"],
        )
        finished = CounterMetricFamily(
            "prioritize_jobs_finished",
            "Jobs that ended without a retry to come, by outcome: succeeded, cancelled, shed.",
            labels=[*labels, "outcome"],
        )
        failed = CounterMetricFamily(
            "prioritize_job_runs_failed", "Runs of jobs that failed, retried or not.", labels=labels
        )
        oldest = GaugeMetricFamily(
            "prioritize_jobs_oldest_wait_seconds",
            "How long the oldest queued job of the level has been waiting.",
            labels=labels,
            unit="seconds",
        )
        sampled = GaugeMetricFamily(
            "prioritize_jobs_sampled_timestamp_seconds",
            "When the service last read these counts from the broker (epoch seconds).",
            labels=["gate"],
        )
        if self.snapshot is not None and self.sampled_at is not None:
            for name, stats in self.snapshot.levels.items():
                for state in ("queued", "scheduled", "running", "dead"):
                    jobs.add_metric([self.gate, name, state], getattr(stats, state))
                for outcome in ("succeeded", "cancelled", "shed"):
                    finished.add_metric([self.gate, name, outcome], getattr(stats, outcome))
                failed.add_metric([self.gate, name], stats.failed)
                oldest.add_metric([self.gate, name], stats.oldest_wait)
            sampled.add_metric([self.gate], self.sampled_at)
        yield from (jobs, finished, failed, oldest, sampled)


def new_registry() -> CollectorRegistry:
    """A registry of the app's own, with the process metrics the default one would have."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry
