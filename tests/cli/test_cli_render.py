"""How the simulate table formats measured figures."""

from __future__ import annotations

import io
import math

from rich.console import Console

from prioritize import DEFAULT_LEVELS, GatePolicy, LevelPolicy, Reason
from prioritize.cli.render import format_wait, report_view, shed_share
from prioritize.simulate import LevelFigures, Report, parse_load, simulate


def render(report: Report) -> str:
    out = io.StringIO()
    Console(file=out, width=100).print(report_view(report))
    return out.getvalue()


def small_report(gate: GatePolicy, rates: dict[str, float]) -> Report:
    table = {
        "duration": 5,
        "service": {"dist": "constant", "value": 0.1},
        "load": {level: {"rate": rate} for level, rate in rates.items()},
    }
    return simulate(gate, parse_load(table, DEFAULT_LEVELS, ["api"]))


def test_waits_are_shown_in_the_unit_people_read() -> None:
    assert format_wait(None) == "-"
    assert format_wait(0.0) == "0"
    assert format_wait(0.00042) == "420 µs"
    assert format_wait(0.0123) == "12.3 ms"
    assert format_wait(2.194) == "2.19 s"


def figures(offered: int, shed: int) -> LevelFigures:
    return LevelFigures("bulk", offered, offered - shed, {Reason.TIMEOUT: shed}, *[None] * 4, 0.0)


def test_shed_share_never_rounds_a_few_to_zero_or_most_to_all() -> None:
    assert shed_share(figures(1000, 0)) == "0%"
    assert shed_share(figures(1000, 1)) == "<1%"
    assert shed_share(figures(1000, 500)) == "50%"
    assert shed_share(figures(1000, 999)) == ">99%"
    assert shed_share(figures(1000, 1000)) == "100%"
    assert shed_share(figures(0, 0)) == "-"


def test_stranded_requests_get_a_shutdown_column_and_a_warning() -> None:
    gate = GatePolicy(
        capacity=1,
        name="api",
        levels={"normal": LevelPolicy(min=1), "low": LevelPolicy(max_wait=math.inf)},
    )
    text = render(small_report(gate, {"low": 5}))
    assert "shutdown" in text
    assert "could never get a seat" in text


def test_no_shutdown_column_when_nothing_was_stranded() -> None:
    text = render(small_report(GatePolicy(capacity=4, name="api"), {"high": 5, "bulk": 5}))
    assert "shutdown" not in text
    assert "queue_full" in text
