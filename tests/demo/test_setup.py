"""The demo's two policies: the one with priorities, and plain FIFO with the same seats."""

from __future__ import annotations

import pytest

from prioritize import RequestInfo, policy_from_toml
from prioritize.demo.setup import GATE, Setup

SETUP = Setup()


def test_the_policy_with_priorities_sends_each_path_to_its_level() -> None:
    policy = policy_from_toml(SETUP.priority_toml(), "demo.toml")
    classifier = policy.classifier()
    for route in SETUP.routes:
        assert classifier.classify(RequestInfo("GET", route.path)).name == route.level
    gate = policy.gate(GATE)
    assert (gate.capacity, gate.queue) == (SETUP.capacity, SETUP.queue)
    limits = {lvl.name: lim for lvl, lim in zip(policy.levels, gate.resolve(16), strict=True)}
    assert limits["critical"].min == 4  # "25%" of 16 seats
    assert limits["critical"].max_wait == 1


def test_fifo_has_the_same_seats_queue_and_longest_wait_but_one_level() -> None:
    policy = policy_from_toml(SETUP.fifo_toml(), "fifo.toml")
    assert [level.name for level in policy.levels] == ["fifo"]
    assert policy.rules == ()
    gate = policy.gate(GATE)
    assert (gate.capacity, gate.queue) == (SETUP.capacity, SETUP.queue)
    (limits,) = gate.resolve(gate.capacity)
    assert limits.max_wait == max(route.max_wait for route in SETUP.routes) == SETUP.fifo_max_wait


def test_capacity_is_seats_over_mean_work() -> None:
    assert SETUP.capacity_rate == pytest.approx(160)
    assert SETUP.work_range == pytest.approx((0.05, 0.15))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"capacity": 0}, r"capacity = 0: expected a whole number ≥ 1"),
        ({"queue": -1}, r"queue = -1: expected a whole number ≥ 0"),
        ({"work": 0}, r"work = 0: expected seconds > 0"),
        ({"spread": 1}, r"spread = 1: expected a fraction from 0 to below 1"),
    ],
)
def test_a_bad_setup_names_the_value_and_what_is_accepted(
    changes: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Setup(**changes)  # type: ignore[arg-type]
