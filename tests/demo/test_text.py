"""How figures are written: latencies, ratios, the verdict, and the charts' axes."""

from __future__ import annotations

import pytest

from prioritize.demo.run import Comparison
from prioritize.demo.svg import Series, latency_chart, log_ticks
from prioritize.demo.text import comparison_line, format_latency, format_ratio, target_line


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.00042, "420 µs"), (0.0123, "12.3 ms"), (0.151, "151 ms"), (1.834, "1.83 s")],
)
def test_latencies_are_written_in_the_unit_people_read(seconds: float | None, text: str) -> None:
    assert format_latency(seconds) == text


@pytest.mark.parametrize(
    ("ratio", "text"), [(None, "?"), (1.25, "1.2×"), (1.26, "1.3×"), (9.96, "10×"), (47.4, "47×")]
)
def test_ratios_keep_two_figures(ratio: float | None, text: str) -> None:
    assert format_ratio(ratio) == text


def test_the_comparison_line_is_built_from_the_measured_p99s() -> None:
    comparison = Comparison("critical", 0.150, 0.189, 1.81, 3.94)
    assert comparison_line(comparison) == (
        "critical p99: 150 ms unloaded, 189 ms under 3.9× overload with priorities (1.3×), "
        "1.81 s with plain FIFO (12×)"
    )
    assert comparison.is_within_target
    assert comparison.is_within_aim
    assert target_line(comparison).endswith(": met (1.3×, within the aim)")


def test_the_verdict_follows_the_ratio() -> None:
    above_aim = Comparison("critical", 0.1, 0.18, 1.0, 4.0)
    assert target_line(above_aim).endswith(": met (1.8×, above the aim)")
    missed = Comparison("critical", 0.1, 0.25, 1.0, 4.0)
    assert not missed.is_within_target
    assert target_line(missed).endswith(": not met on this run (2.5×)")
    nothing_served = Comparison("critical", 0.1, None, 1.0, 4.0)
    assert not nothing_served.is_within_target
    assert nothing_served.priorities_ratio is None


def test_log_ticks_follow_the_1_2_5_ladder_around_the_values() -> None:
    assert log_ticks(0.15, 1.8) == pytest.approx([0.1, 0.2, 0.5, 1, 2])
    assert log_ticks(0.2, 0.2) == pytest.approx([0.2, 0.5])


def test_a_bucket_with_nothing_served_leaves_a_gap_in_its_line() -> None:
    points = [(0.5, 0.1), (1.5, 0.2), (2.5, None), (3.5, 0.3), (4.5, 0.2)]
    svg = latency_chart("critical", 5.0, [Series("with priorities p99", "#15803d", points)])
    assert svg.count("<polyline") == 2
    assert svg.startswith("<svg ")
    assert svg.endswith("</svg>")
    assert "<title>critical</title>" in svg
