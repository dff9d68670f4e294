"""The simulator with a service that slows past its knee and an adaptive capacity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from prioritize import DEFAULT_LEVELS, ConfigError, GatePolicy, LevelPolicy
from prioritize.adaptive import AdaptiveSpec
from prioritize.cli import main
from prioritize.simulate import LoadSpec, Report, parse_load, simulate
from prioritize.simulate.contention import Contention
from prioritize.simulate.report import LimitFigures

SERVICE = {"dist": "exponential", "mean": 0.05}
KNEE = 16


def gate() -> GatePolicy:
    return GatePolicy(
        capacity=16,
        queue=128,
        name="api",
        levels={"critical": LevelPolicy(min="10%", max_wait=1), "bulk": LevelPolicy(max_wait=5)},
    )


def load(**top: object) -> LoadSpec:
    """About 3× what the knee can serve (16 seats / 50 ms = 320 req/s)."""
    table: dict[str, object] = {"duration": 10, "warmup": 2, "seed": 3, "service": SERVICE}
    table["load"] = {"critical": {"rate": 30}, "bulk": {"rate": 900}}
    table.update(top)
    return parse_load(table, DEFAULT_LEVELS, ["api"])


CONTENTION = {"kind": "contention", "knee": KNEE}


@pytest.fixture(scope="module")
def adaptive_report() -> Report:
    return simulate(gate(), load(service_model=CONTENTION), adaptive=AdaptiveSpec("gradient"))


def problems(**top: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(**top)
    return [str(p) for p in caught.value.problems]


# -- the [simulate] table ---------------------------------------------------------------


def test_service_model_and_capacity_are_read_from_the_table() -> None:
    spec = load(service_model={**CONTENTION, "exponent": 2}, capacity={"adaptive": "aimd"})
    assert spec.service_model == Contention(KNEE, 2.0)
    assert spec.capacity == AdaptiveSpec("aimd")
    assert load(capacity=24).capacity == 24
    assert load().service_model is None
    assert load().capacity is None


def test_bad_service_model_and_capacity_are_reported_with_their_paths() -> None:
    assert problems(
        service_model={"kind": "contension", "knee": 4},
        capacity={"adaptive": "gradiant"},
    ) == [
        "simulate.service_model.kind: 'contension' is not one of "
        "['contention', 'independent']; did you mean 'contention'?",
        "simulate.capacity.adaptive: 'gradiant' is not one of 'aimd', 'gradient'; "
        "did you mean 'gradient'?",
    ]
    assert problems(service_model={"kind": "contention", "knee": 0, "exponent": -1, "x": 1}) == [
        "simulate.service_model.x: unknown key; accepted keys: 'exponent', 'knee', 'kind'",
        "simulate.service_model.knee: 0 is not a whole number ≥ 1",
        "simulate.service_model.exponent: -1 is not a number > 0",
    ]
    assert problems(service_model={"kind": "contention"}, capacity=0) == [
        "simulate.service_model.knee: missing; give a whole number ≥ 1",
        "simulate.capacity: 0 is not a whole number ≥ 1 or a table like "
        '{adaptive = "gradient", min = 4, max = 200}',
    ]


def test_an_independent_service_model_is_the_default() -> None:
    assert load(service_model={"kind": "independent"}).service_model is None


# -- contention ---------------------------------------------------------------------


def test_contention_stretches_service_past_the_knee() -> None:
    model = Contention(16, 2.0)
    assert [model.slowdown(n) for n in (1, 16, 32, 48)] == [1.0, 1.0, 4.0, 9.0]


def test_more_seats_than_the_knee_serve_no_more_under_contention() -> None:
    spec = load(service_model=CONTENTION)
    at_knee = simulate(gate(), spec)
    beyond = simulate(gate(), load(service_model=CONTENTION, capacity=64))
    # past the knee requests only take longer: about the same served, no more
    assert beyond.policy.total.served <= at_knee.policy.total.served * 1.05
    assert at_knee.offered_load == pytest.approx(beyond.offered_load)  # relative to the knee
    # ... and each holds its seat four times as long at four times the knee
    assert at_knee.policy.rtt_p50 is not None
    assert beyond.policy.rtt_p50 is not None
    assert beyond.policy.rtt_p50 == pytest.approx(4 * at_knee.policy.rtt_p50, rel=0.15)


# -- adaptive runs ------------------------------------------------------------------


def test_an_adaptive_run_is_deterministic(adaptive_report: Report) -> None:
    again = simulate(gate(), load(service_model=CONTENTION), adaptive=AdaptiveSpec("gradient"))
    assert again == adaptive_report
    assert again.to_json() == adaptive_report.to_json()


def test_both_runs_get_their_own_controller_and_their_limits_are_recorded(
    adaptive_report: Report,
) -> None:
    for run in (adaptive_report.policy, adaptive_report.fifo):
        assert isinstance(run.limit, LimitFigures)
        assert run.limit.changes > 10
        assert 4 <= run.limit.min <= run.limit.mean <= run.limit.max <= 200
        assert len(run.limit.series) == 10
    assert adaptive_report.adaptive == AdaptiveSpec("gradient")
    assert adaptive_report.policy.capacity == 20  # where the limit started


def test_the_gradient_limit_settles_past_the_knee_under_overload(adaptive_report: Report) -> None:
    for run in (adaptive_report.policy, adaptive_report.fifo):
        assert run.limit is not None
        late = run.limit.series[3:]
        assert all(KNEE <= mean <= 2 * KNEE for mean in late), late


def test_the_policy_keeps_critical_fast_under_an_adaptive_limit(adaptive_report: Report) -> None:
    mine, fifo = adaptive_report.policy.level("critical"), adaptive_report.fifo.level("critical")
    assert mine.p99 is not None
    assert fifo.p99 is not None
    assert mine.p99 < fifo.p99 / 10
    assert mine.shed_total == 0 < fifo.shed_total


def test_the_override_in_the_table_replaces_the_gates_own_adaptive_capacity() -> None:
    spec = load(service_model=CONTENTION, capacity={"adaptive": "aimd", "max_rtt": 0.08})
    report = simulate(gate(), spec, adaptive=AdaptiveSpec("gradient"))
    assert report.adaptive == AdaptiveSpec("aimd", options={"max_rtt": 0.08})


def test_a_whole_number_override_that_leaves_no_room_for_the_mins_is_an_error() -> None:
    tight = GatePolicy(capacity=8, name="api", levels={"critical": LevelPolicy(min=6)})
    with pytest.raises(ConfigError, match="more than capacity"):
        simulate(tight, load(capacity=4))


def test_json_gains_adaptive_keys_only_for_adaptive_runs(adaptive_report: Report) -> None:
    data = json.loads(adaptive_report.to_json())
    assert data["adaptive"] == {"adaptive": "gradient", "min": 4, "max": 200, "initial": 20}
    assert data["service_model"] == {"kind": "contention", "knee": KNEE, "exponent": 1.0}
    assert set(data["policy"]["limit"]) == {"min", "mean", "max", "series", "changes"}
    assert set(data["policy"]["rtt"]) == {"p50", "p99"}
    plain = json.loads(simulate(gate(), load()).to_json())
    assert not {"adaptive", "service_model"} & set(plain)
    assert not {"limit", "rtt"} & set(plain["policy"])


def test_an_infinite_option_is_null_in_json() -> None:
    spec = load(capacity={"adaptive": "aimd", "max_rtt": float("inf")}, duration=2)
    assert json.loads(simulate(gate(), spec).to_json())["adaptive"]["max_rtt"] is None


def test_limit_figures_weigh_each_limit_by_how_long_it_was_held() -> None:
    steps = [(0.0, 10), (2.0, 20), (6.5, 10)]
    figures = LimitFigures.from_steps(steps, start=1.0, end=11.0)
    assert (figures.min, figures.max, figures.changes) == (10, 20, 2)
    assert figures.mean == pytest.approx((10 * 1 + 20 * 4.5 + 10 * 4.5) / 10)
    assert figures.series == (10, 20, 20, 20, 20, 15, 10, 10, 10, 10)  # [6, 7): half and half


# -- the command --------------------------------------------------------------------


POLICY = """
[gates.api]
capacity = 16
queue = 128
[gates.api.levels.critical]
min = "10%"
max_wait = 1

[simulate]
duration = 5
warmup = 1
seed = 3
service = { dist = "exponential", mean = 0.05 }
capacity = { adaptive = "gradient", min = 4, max = 200 }
[simulate.service_model]
kind = "contention"
knee = 16
[simulate.load.critical]
rate = 30
[simulate.load.bulk]
rate = 900
"""


def test_simulate_command_prints_the_limit_of_both_runs(tmp_path: Path) -> None:
    path = tmp_path / "prioritize.toml"
    path.write_text(POLICY)
    result = CliRunner().invoke(main, ["simulate", str(path), "-q"])
    assert result.exit_code == 0, result.output
    lines = [line.rstrip() for line in result.output.splitlines()]
    assert "adaptive capacity: gradient, 4 to 200 seats, starting at 20" in lines
    policy_row = next(line for line in lines if line.startswith(" policy "))
    # min, mean, max, changes, the series, then rtt p50 and p99 (a number and a unit each)
    assert len(policy_row.split()) == 1 + 4 + 10 + 4
    assert (
        "Seat counts above are the initial limit, 20. "
        "Service: contention past 16 in flight, exponent 1." in lines
    )


def test_simulate_command_reports_a_capacity_override_too_small(tmp_path: Path) -> None:
    path = tmp_path / "prioritize.toml"
    path.write_text(POLICY.replace('min = "10%"', "min = 6").replace(
        'capacity = { adaptive = "gradient", min = 4, max = 200 }', "capacity = 4"
    ))  # fmt: skip
    result = CliRunner().invoke(main, ["simulate", str(path), "-q"])
    assert result.exit_code == 1
    assert "the mins add up to 6 seats, more than capacity (4)" in result.output
