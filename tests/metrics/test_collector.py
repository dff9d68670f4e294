"""GateMetrics over a sans-I/O Scheduler: exact values, names, and errors naming what is wrong."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry, generate_latest

import prioritize.metrics
from prioritize import GatePolicy, GateStats, LevelPolicy, Reason, Scheduler
from prioritize.core.stats import BUCKET_BOUNDS
from prioritize.metrics import GateMetrics, register, unregister

from .exposition import Exposition

NAMES = [
    "prioritize_requests",
    "prioritize_shed",
    "prioritize_wait_seconds",
    "prioritize_service_seconds",
    "prioritize_seats_in_use",
    "prioritize_waiting",
    "prioritize_capacity",
    "prioritize_seats_min",
    "prioritize_seats_max",
]


def db_scheduler() -> Scheduler:
    return Scheduler(
        GatePolicy(
            capacity=2,
            name="db",
            levels={
                "critical": LevelPolicy(min=1),
                "bulk": LevelPolicy(max=1, queue=1, max_wait=math.inf),
            },
        )
    )


def scrape(registry: CollectorRegistry) -> Exposition:
    return Exposition.parse(generate_latest(registry).decode())


def test_a_scheduler_s_counters_histograms_and_gauges_are_exported_exactly() -> None:
    registry = CollectorRegistry()
    metrics = GateMetrics(registry)
    s = db_scheduler()
    assert metrics.add(s) == "db"
    held, waiting, refused = s.ticket("bulk"), s.ticket("bulk"), s.ticket("bulk")
    s.submit(held, 0.0)
    s.submit(waiting, 0.0)  # bulk's max is 1: it waits
    s.submit(refused, 0.0)  # bulk's queue holds 1: shed
    critical = s.ticket("critical")
    s.submit(critical, 1.0)
    mid = scrape(registry)
    db = {"gate": "db"}
    assert mid.value("prioritize_capacity", **db) == 2
    assert mid.value("prioritize_seats_in_use", **db, level="bulk") == 1
    assert mid.value("prioritize_seats_in_use", **db, level="critical") == 1
    assert mid.value("prioritize_waiting", **db, level="bulk") == 1
    assert mid.value("prioritize_seats_min", **db, level="critical") == 1
    assert mid.value("prioritize_seats_max", **db, level="bulk") == 1
    assert mid.value("prioritize_seats_max", **db, level="normal") == 2

    s.release(critical, 1.5)  # held 0.5 s
    (granted,) = s.release(held, 3.0)  # held 3 s; the waiter waited 3 s
    assert granted is waiting
    s.release(waiting, 3.25)  # held 0.25 s
    gone = s.ticket("normal")
    s.submit(gone, 4.0)
    s.cancel(gone, 4.0)  # granted at once, then withdrawn: a grant, not a cancel
    end = scrape(registry)
    bulk, crit = {**db, "level": "bulk"}, {**db, "level": "critical"}
    assert end.value("prioritize_requests_total", **bulk, outcome="granted") == 2
    assert end.value("prioritize_requests_total", **bulk, outcome="shed") == 1
    assert end.value("prioritize_requests_total", **bulk, outcome="cancelled") == 0
    assert end.value("prioritize_requests_total", **crit, outcome="granted") == 1
    assert end.value("prioritize_shed_total", **bulk, reason="queue_full") == 1
    assert end.value("prioritize_shed_total", **bulk, reason="timeout") == 0
    gate_reasons = {r.value for r in Reason if r is not Reason.THROTTLED}  # not a gate's
    assert end.label_values("prioritize_shed_total", "reason") == gate_reasons

    waits = end.buckets("prioritize_wait_seconds", **bulk)
    assert (waits["0.0009765625"], waits["2.0"], waits["4.0"], waits["+Inf"]) == (1, 1, 2, 2)
    assert end.value("prioritize_wait_seconds_sum", **bulk) == 3.0
    service = end.buckets("prioritize_service_seconds", **bulk)
    assert (service["0.125"], service["0.25"], service["2.0"], service["4.0"]) == (0, 1, 1, 2)
    assert end.value("prioritize_service_seconds_sum", **bulk) == 3.25
    crit_service = end.buckets("prioritize_service_seconds", **crit)
    assert (crit_service["0.25"], crit_service["0.5"], crit_service["+Inf"]) == (0, 1, 1)
    assert list(waits) == [str(bound) for bound in BUCKET_BOUNDS] + ["+Inf"]
    assert end.value("prioritize_seats_in_use", **bulk) == 0
    normal = {**db, "level": "normal"}
    assert end.value("prioritize_requests_total", **normal, outcome="granted") == 1
    assert end.value("prioritize_requests_total", **normal, outcome="cancelled") == 0


def test_every_family_has_its_prometheus_type_and_the_gate_and_level_labels() -> None:
    registry = CollectorRegistry()
    GateMetrics(registry).add(db_scheduler())
    exposition = scrape(registry)
    assert exposition.types == {
        "prioritize_requests": "counter",
        "prioritize_shed": "counter",
        "prioritize_wait_seconds": "histogram",
        "prioritize_service_seconds": "histogram",
        "prioritize_seats_in_use": "gauge",
        "prioritize_waiting": "gauge",
        "prioritize_capacity": "gauge",
        "prioritize_seats_min": "gauge",
        "prioritize_seats_max": "gauge",
    }
    levels = {"critical", "high", "normal", "low", "bulk"}
    assert exposition.label_values("prioritize_seats_in_use", "level") == levels
    assert exposition.label_values("prioritize_requests_total", "outcome") == {
        "granted",
        "shed",
        "cancelled",
    }


def test_gates_are_told_apart_by_name_and_can_be_removed() -> None:
    registry = CollectorRegistry()
    metrics = GateMetrics(registry)
    first, second = db_scheduler(), db_scheduler()
    metrics.add(first)
    assert metrics.add(second, name="db-replica") == "db-replica"
    assert metrics.names == ["db", "db-replica"]
    assert repr(metrics) == "<GateMetrics 2 gates: db, db-replica>"
    assert scrape(registry).label_values("prioritize_capacity", "gate") == {"db", "db-replica"}
    metrics.remove("db")
    metrics.remove(second)
    assert metrics.names == []
    assert scrape(registry).samples == {}


def test_the_registry_knows_the_names_before_any_gate_is_added() -> None:
    metrics = GateMetrics(None)
    assert [family.name for family in metrics.describe()] == NAMES
    assert list(metrics.collect()) == list(metrics.describe())  # empty families, no samples


def test_something_without_stats_is_refused_by_name() -> None:
    metrics = GateMetrics(None)
    with pytest.raises(TypeError, match=r"cannot export 42: it has no stats\(\) method"):
        metrics.add(42)  # type: ignore[arg-type]

    class Liar:
        def stats(self) -> dict[str, int]:
            return {"in_use": 1}

        def __repr__(self) -> str:
            return "<Liar>"

    with pytest.raises(TypeError, match=r"<Liar>: its stats\(\) returned dict, not a GateStats"):
        metrics.add(Liar())  # type: ignore[arg-type]
    assert metrics.names == []


def test_a_second_gate_of_the_same_name_is_refused_with_both_named() -> None:
    metrics = GateMetrics(None)
    metrics.add(db_scheduler())
    with pytest.raises(
        ValueError,
        match=r"a gate named 'db' is exported already \(<Scheduler db 0/2 seats, 0 waiting>\); "
        r"export <Scheduler db 0/2 seats, 0 waiting> under another name: add\(gate, name=\.\.\.\)",
    ):
        metrics.add(db_scheduler())


def test_the_same_gate_twice_and_an_empty_name_are_refused() -> None:
    metrics = GateMetrics(None)
    s = db_scheduler()
    metrics.add(s)
    with pytest.raises(
        ValueError, match=r"<Scheduler db 0/2 seats, 0 waiting> is exported already, as 'db'"
    ):
        metrics.add(s, name="other")
    with pytest.raises(ValueError, match=r"a gate's name must be a non-empty string, not ''"):
        metrics.add(db_scheduler(), name="")


def test_removing_a_gate_not_exported_names_the_exported_ones() -> None:
    metrics = GateMetrics(None)
    metrics.add(db_scheduler())
    with pytest.raises(
        KeyError, match=r"'api' is not exported by this GateMetrics; exported: \['db'\]"
    ):
        metrics.remove("api")


def test_two_collectors_in_one_registry_are_refused() -> None:
    registry = CollectorRegistry()
    GateMetrics(registry)
    with pytest.raises(ValueError, match="already has a collector exporting prioritize_"):
        GateMetrics(registry)


def test_register_exports_into_prometheus_client_s_default_registry() -> None:
    from prometheus_client import REGISTRY

    s = Scheduler(GatePolicy(capacity=3, name="test-default-registry"))
    assert register(s) == "test-default-registry"
    try:
        exposition = scrape(REGISTRY)
        assert exposition.value("prioritize_capacity", gate="test-default-registry") == 3
        with pytest.raises(ValueError, match="already has a collector exporting prioritize_"):
            GateMetrics()  # the default registry has register()'s collector already
    finally:
        unregister(s)
    assert "test-default-registry" not in scrape(REGISTRY).label_values(
        "prioritize_capacity", "gate"
    )
    with pytest.raises(KeyError, match="is not exported by this GateMetrics"):
        unregister(s)


def test_stats_are_read_at_each_scrape_not_when_added() -> None:
    registry = CollectorRegistry()
    s = db_scheduler()
    GateMetrics(registry).add(s)
    s.resize(5, 0.0)
    assert scrape(registry).value("prioritize_capacity", gate="db") == 5
    assert isinstance(s.stats(), GateStats)


def test_the_public_names_are_sorted_and_complete() -> None:
    assert prioritize.metrics.__all__ == [
        "GateMetrics",
        "HttpMetrics",
        "StatsSource",
        "metrics_app",
        "register",
        "register_middleware",
        "unregister",
    ]


def test_without_prometheus_client_the_import_error_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "try:\n"
        "    import prioritize.metrics\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "prioritize.metrics needs prometheus-client; install it with "
        "pip install 'prioritize[metrics]'"
    )
