"""The simulator drives the real scheduler: determinism, conservation, and what overload does."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from prioritize import DEFAULT_LEVELS, GatePolicy, LevelPolicy, Reason
from prioritize.simulate import (
    LoadSpec,
    Report,
    fifo_policy,
    generate_arrivals,
    parse_load,
    simulate,
)
from prioritize.simulate.report import quantile

SERVICE = {"dist": "exponential", "mean": 0.05}


def api_gate(capacity: int = 8, queue: int = 64) -> GatePolicy:
    """A small version of the example policy: reserved seats up top, bulk capped."""
    return GatePolicy(
        capacity=capacity,
        queue=queue,
        name="api",
        levels={
            "critical": LevelPolicy(min="10%", max_wait=1),
            "high": LevelPolicy(min="20%", max_wait=2),
            "normal": LevelPolicy(min="20%", max_wait=5),
            "low": LevelPolicy(max_wait=10),
            "bulk": LevelPolicy(max="25%", max_wait=30),
        },
    )


def load(rates: dict[str, float], **top: object) -> LoadSpec:
    table: dict[str, object] = {"duration": 10, "warmup": 1, "seed": 7, "service": SERVICE}
    table.update(top)
    table["load"] = {level: {"rate": rate, "flows": 4} for level, rate in rates.items()}
    return parse_load(table, DEFAULT_LEVELS, ["api"])


#: About 4× the 8 seats × 20 req/s of capacity, mostly low and bulk.
OVERLOAD = {"critical": 20, "high": 40, "normal": 60, "low": 200, "bulk": 320}


@pytest.fixture(scope="module")
def overloaded() -> Report:
    return simulate(api_gate(), load(OVERLOAD))


def test_same_seed_gives_identical_report(overloaded: Report) -> None:
    again = simulate(api_gate(), load(OVERLOAD))
    assert again == overloaded
    assert again.to_json() == overloaded.to_json()


def test_another_seed_draws_other_arrivals() -> None:
    assert generate_arrivals(load(OVERLOAD, seed=8)) != generate_arrivals(load(OVERLOAD))


def test_adding_a_level_leaves_other_levels_arrivals_unchanged() -> None:
    alone = generate_arrivals(load({"critical": 20}))
    mixed = generate_arrivals(load({"critical": 20, "bulk": 300}))
    assert [a for a in mixed if a.level == "critical"] == alone


def test_every_request_is_served_or_shed_in_both_runs(overloaded: Report) -> None:
    for run in (overloaded.policy, overloaded.fifo):
        for figures in (*run.levels, run.total):
            assert figures.offered == figures.served + figures.shed_total, (run.name, figures)
        assert run.total.offered == sum(f.offered for f in run.levels)


def test_both_runs_see_the_same_measured_arrivals(overloaded: Report) -> None:
    arrivals = generate_arrivals(overloaded.spec)
    measured = Counter(a.level for a in arrivals if a.time >= overloaded.spec.warmup)
    for run in (overloaded.policy, overloaded.fifo):
        assert {f.level: f.offered for f in run.levels} == measured


def test_policy_keeps_critical_far_faster_than_fifo_under_overload(overloaded: Report) -> None:
    policy, fifo = overloaded.policy.level("critical"), overloaded.fifo.level("critical")
    assert overloaded.offered_load > 3
    assert policy.p99 is not None
    assert fifo.p99 is not None
    assert policy.p99 < fifo.p99 / 5
    assert policy.shed_total < fifo.shed_total


def test_fifo_sheds_every_level_while_the_policy_sheds_the_least_important(
    overloaded: Report,
) -> None:
    assert all(f.shed_total > 0 for f in overloaded.fifo.levels)
    policy = overloaded.policy
    assert policy.level("critical").shed_total == 0
    assert policy.level("bulk").shed_total > policy.level("normal").shed_total


def test_fifo_reports_by_each_requests_own_level(overloaded: Report) -> None:
    assert [f.level for f in overloaded.fifo.levels] == DEFAULT_LEVELS.names
    assert overloaded.fifo.gate == "api-fifo"


def test_load_within_capacity_sheds_nothing() -> None:
    light = load({"critical": 10, "high": 20, "normal": 30, "low": 20, "bulk": 10}, duration=20)
    report = simulate(api_gate(capacity=16, queue=500), light)
    assert report.offered_load < 0.5
    for run in (report.policy, report.fifo):
        assert run.total.shed_total == 0
        assert run.total.served == run.total.offered > 0


def test_served_requests_never_waited_past_their_max_wait() -> None:
    waits = {"critical": 0.25, "high": 0.5, "normal": 0.5, "low": 0.5, "bulk": 0.5}
    gate = GatePolicy(
        capacity=2, name="api", levels={lv: LevelPolicy(max_wait=w) for lv, w in waits.items()}
    )
    spec = load({"critical": 30, "bulk": 30}, service={"dist": "constant", "value": 0.1})
    report = simulate(gate, spec)
    for figures in report.policy.levels:
        assert figures.shed[Reason.TIMEOUT] > 0
        assert figures.max is not None
    assert (report.policy.level("critical").max or 0) <= 0.25
    assert (report.policy.level("bulk").max or 0) <= 0.5
    assert (report.fifo.total.max or 0) <= report.fifo_max_wait == 0.5


def test_level_that_may_not_wait_is_shed_with_reason_limit() -> None:
    gate = GatePolicy(capacity=1, name="api", levels={"bulk": LevelPolicy(max_wait=0)})
    report = simulate(gate, load({"bulk": 50}))
    bulk = report.policy.level("bulk")
    assert bulk.shed[Reason.LIMIT] == bulk.shed_total > 0
    assert bulk.p99 == 0.0


def test_warmup_arrivals_are_left_out_of_the_figures() -> None:
    spec = load({"critical": 50}, warmup=5, duration=5)
    report = simulate(api_gate(), spec)
    arrivals = generate_arrivals(spec)
    assert report.policy.total.offered == sum(a.time >= 5 for a in arrivals)
    assert report.policy.total.offered < len(arrivals)


def test_overload_multiplies_every_rate() -> None:
    base, doubled = (
        load({"critical": 10, "bulk": 20}),
        load({"critical": 10, "bulk": 20}, overload=2),
    )
    assert [lv.rate for lv in doubled.levels] == [2 * lv.rate for lv in base.levels]
    assert len(generate_arrivals(doubled)) > 1.5 * len(generate_arrivals(base))


def test_skewed_flows_favour_the_first_flow() -> None:
    table = {
        "duration": 20,
        "service": SERVICE,
        "load": {
            "low": {"rate": 100, "flows": 10, "skew": 1.5},
            "bulk": {"rate": 100, "flows": 10},
        },
    }
    arrivals = generate_arrivals(parse_load(table, DEFAULT_LEVELS, ["api"]))
    skewed = Counter(a.flow for a in arrivals if a.level == "low")
    even = Counter(a.flow for a in arrivals if a.level == "bulk")
    assert set(skewed) == set(even) == set(range(10))
    assert skewed[0] > 3 * skewed[9]
    assert even[0] < 2 * even[9]


def test_fifo_baseline_takes_the_largest_finite_max_wait() -> None:
    baseline = fifo_policy(api_gate(capacity=12, queue=99))
    assert baseline.capacity == 12
    assert baseline.queue == 99
    assert baseline.level_set.names == ["fifo"]
    assert baseline.policy_for("fifo").max_wait == 30


def test_fifo_baseline_never_times_out_when_no_level_does() -> None:
    gate = GatePolicy(
        capacity=4,
        level_set=DEFAULT_LEVELS,
        levels={lv: LevelPolicy(max_wait=math.inf) for lv in DEFAULT_LEVELS.names},
    )
    assert fifo_policy(gate).policy_for("fifo").max_wait == math.inf


def test_quantile_takes_the_nearest_rank() -> None:
    samples = [float(i) for i in range(1, 101)]
    assert quantile(samples, 0.50) == 50.0
    assert quantile(samples, 0.99) == 99.0
    assert quantile(samples, 1.0) == 100.0
    assert quantile([3.0], 0.99) == 3.0
    assert quantile([], 0.5) is None


def test_report_json_is_strict_and_complete(overloaded: Report) -> None:
    import json

    data = json.loads(overloaded.to_json())
    assert data["seed"] == 7
    assert [lv["level"] for lv in data["policy"]["levels"]] == DEFAULT_LEVELS.names
    critical = data["fifo"]["levels"][0]
    reasons = {"queue_full", "evicted", "timeout", "limit", "shutdown"}
    assert set(critical["shed_by_reason"]) == reasons
    assert critical["offered"] == critical["served"] + critical["shed"]
    assert set(critical["wait"]) == {"p50", "p95", "p99", "max"}


def test_requests_that_could_wait_forever_are_shed_at_the_end_not_lost() -> None:
    # The only seat is reserved for normal, and low waits forever: it can never be served.
    gate = GatePolicy(
        capacity=1,
        name="api",
        levels={"normal": LevelPolicy(min=1), "low": LevelPolicy(max_wait=math.inf)},
    )
    report = simulate(gate, load({"low": 5}))
    low = report.policy.level("low")
    assert low.served == 0
    assert low.shed[Reason.SHUTDOWN] == low.offered > 0
    assert report.fifo.level("low").shed[Reason.SHUTDOWN] == 0
