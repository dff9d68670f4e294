"""Properties of any simulation, whatever the gate's knobs and the load."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from prioritize import DEFAULT_LEVELS, GatePolicy, LevelPolicy
from prioritize.simulate import LoadSpec, parse_load, simulate

NAMES = DEFAULT_LEVELS.names
#: A served request's wait is a difference of sums of floats; allow for rounding.
ROUNDING = 1e-9


@st.composite
def gates(draw: st.DrawFn) -> GatePolicy:
    capacity = draw(st.integers(1, 6))
    spare = capacity
    levels: dict[str, LevelPolicy] = {}
    for name in NAMES:
        low = draw(st.integers(0, spare))
        spare -= low
        levels[name] = LevelPolicy(
            min=low,
            max=draw(st.none() | st.integers(max(low, 1), capacity)),
            weight=draw(st.sampled_from([0.5, 1.0, 3.0])),
            max_wait=draw(st.sampled_from([0.0, 0.05, 0.3, 2.0, math.inf])),
        )
    return GatePolicy(
        capacity=capacity,
        levels=levels,
        order=draw(st.sampled_from(["strict", "weighted"])),
        queue=draw(st.integers(0, 20)),
        name="api",
    )


@st.composite
def loads(draw: st.DrawFn) -> LoadSpec:
    service = draw(
        st.sampled_from(
            [
                {"dist": "constant", "value": 0.05},
                {"dist": "exponential", "mean": 0.1},
                {"dist": "uniform", "low": 0.0, "high": 0.2},
            ]
        )
    )
    chosen = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=5, unique=True))
    table = {
        "duration": 2,
        "warmup": draw(st.sampled_from([0, 0.5])),
        "seed": draw(st.integers(0, 1000)),
        "service": service,
        "load": {
            name: {"rate": draw(st.floats(1, 150)), "flows": draw(st.integers(1, 4))}
            for name in chosen
        },
    }
    return parse_load(table, DEFAULT_LEVELS, ["api"])


@settings(max_examples=40, deadline=None)
@given(gates(), loads())
def test_every_request_ends_once_and_no_served_wait_exceeds_max_wait(
    gate: GatePolicy, spec: LoadSpec
) -> None:
    report = simulate(gate, spec)
    for run in (report.policy, report.fifo):
        for figures in (*run.levels, run.total):
            assert figures.offered == figures.served + figures.shed_total
            if figures.served:
                assert figures.p50 is not None
                assert figures.p99 is not None
                assert figures.max is not None
                assert 0 <= figures.p50 <= figures.p99 <= figures.max
        assert run.drained_at >= 0
    for figures in report.policy.levels:
        limit = gate.policy_for(figures.level).max_wait
        assert (figures.max or 0.0) <= limit + ROUNDING
    assert (report.fifo.total.max or 0.0) <= report.fifo_max_wait + ROUNDING
