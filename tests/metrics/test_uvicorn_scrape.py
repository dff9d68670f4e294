"""Gates of every kind, scraped over HTTP from a real uvicorn serving metrics_app on loopback."""

from __future__ import annotations

import math
import threading

import httpx
from prometheus_client import CollectorRegistry

from prioritize import (
    GatePolicy,
    LevelPolicy,
    PriorityThreadPoolExecutor,
    Reason,
    Rejected,
    Scheduler,
    ThreadPriorityQueue,
)
from prioritize.metrics import GateMetrics, metrics_app
from prioritize.testing import VirtualClock

from ..servers import serve_asgi
from .exposition import Exposition

WAIT_FOR = 30.0  # seconds a test thread waits on an event before the test fails


def scrape(base_url: str) -> Exposition:
    response = httpx.get(f"{base_url}/metrics", headers={"accept-encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return Exposition.parse(response.text)


def test_a_thread_pool_a_thread_queue_and_a_scheduler_on_one_endpoint() -> None:
    registry = CollectorRegistry()
    metrics = GateMetrics(registry)
    executor = PriorityThreadPoolExecutor(
        policy=GatePolicy(
            capacity=1,
            name="workers",
            levels={"low": LevelPolicy(queue=1, max_wait=math.inf)},
        )
    )
    clock = VirtualClock()
    shed: list[tuple[str, Rejected]] = []
    jobs: ThreadPriorityQueue[str] = ThreadPriorityQueue(
        GatePolicy(capacity=1, name="jobs", levels={"bulk": LevelPolicy(queue=1)}),
        on_shed=lambda item, rejected: shed.append((item, rejected)),
        clock=clock,
    )
    db = Scheduler(GatePolicy(capacity=4, name="db"))
    for gate in (executor, jobs, db):
        metrics.add(gate)

    started, finish = threading.Event(), threading.Event()

    def block() -> str:
        started.set()
        finish.wait(WAIT_FOR)
        return "blocked"

    running = executor.submit(block, priority="low")
    assert started.wait(WAIT_FOR)
    queued = executor.submit(str, "low-1", priority="low")
    refused = executor.submit(str, "low-2", priority="low")  # low's queue holds one
    urgent = executor.submit(str, "critical", priority="critical")

    jobs.put("a", "high")
    jobs.put("b1", "bulk")
    assert not jobs.put("b2", "bulk")  # bulk's queue holds one
    clock.advance(0.5)
    assert jobs.get_nowait() == "a"  # waited 0.5 s
    clock.advance(1.5)
    assert jobs.get_nowait() == "b1"  # waited 2 s

    ticket = db.ticket("high")
    db.submit(ticket, 10.0)
    db.release(ticket, 10.125)

    with serve_asgi(metrics_app(registry), lifespan="on") as base_url:
        busy = scrape(base_url)
        workers = {"gate": "workers"}
        assert busy.value("prioritize_capacity", **workers) == 1
        assert busy.value("prioritize_seats_in_use", **workers, level="low") == 1
        assert busy.value("prioritize_waiting", **workers, level="low") == 1
        assert busy.value("prioritize_waiting", **workers, level="critical") == 1
        assert busy.value("prioritize_shed_total", **workers, level="low", reason="queue_full") == 1

        finish.set()
        assert (running.result(WAIT_FOR), queued.result(WAIT_FOR)) == ("blocked", "low-1")
        assert urgent.result(WAIT_FOR) == "critical"
        assert isinstance(refused.exception(WAIT_FOR), Rejected)
        executor.shutdown(wait=True)  # every seat given back before the next scrape

        done = scrape(base_url)

    for level, granted, shed_count in (("low", 2, 1), ("critical", 1, 0)):
        labels = {**workers, "level": level}
        assert done.value("prioritize_requests_total", **labels, outcome="granted") == granted
        assert done.value("prioritize_requests_total", **labels, outcome="shed") == shed_count
        assert done.value("prioritize_seats_in_use", **labels) == 0
        assert done.buckets("prioritize_wait_seconds", **labels)["+Inf"] == granted
        assert done.buckets("prioritize_service_seconds", **labels)["+Inf"] == granted
        assert done.value("prioritize_service_seconds_sum", **labels) >= 0.0

    assert [(item, r.reason) for item, r in shed] == [("b2", Reason.QUEUE_FULL)]
    queue_labels = {"gate": "jobs"}
    assert done.value("prioritize_capacity", **queue_labels) == 0  # consumed with get()
    high, bulk = {**queue_labels, "level": "high"}, {**queue_labels, "level": "bulk"}
    assert done.value("prioritize_requests_total", **high, outcome="granted") == 1
    assert done.value("prioritize_requests_total", **bulk, outcome="granted") == 1
    assert done.value("prioritize_requests_total", **bulk, outcome="shed") == 1
    assert done.value("prioritize_shed_total", **bulk, reason="queue_full") == 1
    assert done.buckets("prioritize_wait_seconds", **high)["0.5"] == 1
    assert done.buckets("prioritize_wait_seconds", **high)["0.25"] == 0
    assert done.buckets("prioritize_wait_seconds", **bulk)["2.0"] == 1
    assert done.buckets("prioritize_wait_seconds", **bulk)["1.0"] == 0
    assert done.value("prioritize_service_seconds_count", **bulk) == 0  # get() holds no seat
    jobs.close()

    db_high = {"gate": "db", "level": "high"}
    assert done.value("prioritize_requests_total", **db_high, outcome="granted") == 1
    assert done.buckets("prioritize_service_seconds", **db_high)["0.125"] == 1
    assert done.value("prioritize_service_seconds_sum", **db_high) == 0.125
    assert done.value("prioritize_capacity", gate="db") == 4
