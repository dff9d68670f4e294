"""Per-level figures: exact nearest-rank percentiles, counts that add up, the measured window."""

from __future__ import annotations

from prioritize.demo.driver import Kind, Outcome
from prioritize.demo.figures import bucket_width, level_figures, run_figures


def served(latency: float, scheduled: float = 1.0, level: str = "critical") -> Outcome:
    return Outcome(level, scheduled, latency, 0.0, Kind.SERVED, 200, "")


def shed(reason: str, scheduled: float = 1.0, level: str = "critical") -> Outcome:
    return Outcome(level, scheduled, 0.001, 0.0, Kind.SHED, 503, reason)


def test_percentiles_are_exact_nearest_rank_of_served_latencies() -> None:
    # 1 ms .. 100 ms, shuffled; shed and errored requests have no latency figure
    samples = [served((i * 37 % 100 + 1) / 1000) for i in range(100)]
    error = Outcome("critical", 1.0, 30.0, 0.0, Kind.ERROR, 0, "TimeoutError")
    figures = level_figures("critical", [*samples, shed("timeout"), shed("evicted"), error])
    assert (figures.offered, figures.served, figures.shed, figures.errors) == (103, 100, 2, 1)
    assert figures.p50 == 0.050
    assert figures.p95 == 0.095
    assert figures.p99 == 0.099
    assert dict(figures.shed_by_reason) == {"evicted": 1, "timeout": 1}
    assert dict(figures.errors_by_detail) == {"TimeoutError": 1}


def test_small_samples_take_the_nearest_rank() -> None:
    figures = level_figures("high", [served(0.3), served(0.1), served(0.2)])
    assert (figures.p50, figures.p95, figures.p99) == (0.2, 0.3, 0.3)


def test_a_level_with_nothing_served_has_no_percentiles() -> None:
    figures = level_figures("bulk", [shed("queue_full")])
    assert (figures.p50, figures.p95, figures.p99) == (None, None, None)
    assert level_figures("bulk", []).offered == 0


def test_only_requests_scheduled_in_the_measured_window_count() -> None:
    outcomes = [
        served(9.0, scheduled=0.5),  # warm-up: left out
        served(0.1, scheduled=1.0),
        shed("timeout", scheduled=2.9, level="bulk"),
        served(9.0, scheduled=3.0),  # after the window: left out
    ]
    figures = run_figures(
        "priorities",
        ["critical", "bulk"],
        outcomes,
        warmup=1.0,
        duration=2.0,
        load=4.0,
        client_cpu=0.0,
        server_cpu=None,
        wall=3.0,
    )
    assert figures.total.offered == 2
    assert figures.level("critical").p99 == 0.1
    assert figures.level("bulk").shed == 1
    assert figures.rate == 1.0
    critical = figures.timeline["critical"]
    assert len(critical) == 10
    assert figures.bucket == bucket_width(2.0) == 0.2
    assert critical[0].served == 1
    assert critical[0].p99 == 0.1
    assert figures.timeline["bulk"][-1].shed == 1
