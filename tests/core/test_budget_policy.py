"""[budgets.<name>] in the policy: what a valid table becomes, and every bad input, by message."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner

from prioritize.cli import main
from prioritize.core import LevelSet, Order, Percent
from prioritize.core.budget_policy import BudgetLevelPolicy, BudgetPolicy
from prioritize.core.config import parse_policy
from prioritize.errors import ConfigError

LEVELS = "['critical', 'high', 'normal', 'low', 'bulk']"


def problems(data: Mapping[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_policy(data)
    return [str(p) for p in info.value.problems]


def budget(**knobs: object) -> dict[str, object]:
    return {"budgets": {"openai": {"rpm": 500, **knobs}}}


def level(**knobs: object) -> dict[str, object]:
    return budget(levels={"low": knobs})


def test_a_budget_table_becomes_a_budget_policy_on_the_policys_levels() -> None:
    policy = parse_policy(
        {
            "levels": ["gold", "silver", "bronze"],
            "budgets": {
                "openai": {
                    "rpm": 500,
                    "tpm": 200000,
                    "burst": 10,
                    "order": "weighted",
                    "queue": 50,
                    "backoff": 0.25,
                    "recovery": 30,
                    "levels": {
                        "gold": {"min": "40%", "max": "90%", "weight": 3, "queue": 5},
                        "bronze": {"max_wait": math.inf},
                    },
                },
                "mail": {"rpm": 60},
            },
        }
    )
    assert policy.budgets["openai"] == BudgetPolicy(
        rpm=500,
        tpm=200000,
        burst=10,
        order=Order.WEIGHTED,
        queue=50,
        backoff=0.25,
        recovery=30,
        levels={
            "gold": BudgetLevelPolicy(min=Percent(40), max="90%", weight=3, queue=5),
            "bronze": BudgetLevelPolicy(max_wait=math.inf),
        },
        level_set=LevelSet(["gold", "silver", "bronze"]),
        name="openai",
    )
    assert policy.budgets["mail"].per_minute == {"requests": 60.0}


def test_no_budgets_is_an_empty_mapping() -> None:
    assert dict(parse_policy({}).budgets) == {}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"budgets": 5}, "budgets: 5 is not a table"),
        ({"budgets": {"openai": []}}, "budgets.openai: [] is not a table"),
        (
            {"budgets": {"openai": {}}},
            "budgets.openai: sets no rate: give rpm, tpm or both (numbers > 0)",
        ),
        (budget(rpm=0), "budgets.openai.rpm: 0 is not a number of requests per minute > 0"),
        (budget(rpm=True), "budgets.openai.rpm: true is not a number of requests per minute > 0"),
        (budget(tpm="1k"), "budgets.openai.tpm: '1k' is not a number of tokens per minute > 0"),
        (budget(tpm=math.inf), "budgets.openai.tpm: inf is not a number of tokens per minute > 0"),
        (budget(burst=0), "budgets.openai.burst: 0 is not a number of seconds > 0"),
        (budget(backoff=1), "budgets.openai.backoff: 1 is not a number between 0 and 1"),
        (budget(recovery=-3), "budgets.openai.recovery: -3 is not a number of seconds > 0"),
        (budget(order="fifo"), "budgets.openai.order: 'fifo' is not one of 'strict', 'weighted'"),
        (budget(queue=-1), "budgets.openai.queue: -1 is not a whole number ≥ 0"),
        (budget(queue=2.5), "budgets.openai.queue: 2.5 is not a whole number ≥ 0"),
        (
            budget(tmp=5),
            "budgets.openai.tmp: unknown key; did you mean 'tpm'? accepted keys: 'backoff', "
            "'burst', 'levels', 'order', 'queue', 'recovery', 'rpm', 'tpm'",
        ),
        (budget(levels=[]), "budgets.openai.levels: [] is not a table"),
        (
            budget(levels={"critcal": {}}),
            f"budgets.openai.levels.critcal: unknown level 'critcal'; did you mean 'critical'? "
            f"valid levels are {LEVELS}",
        ),
        (budget(levels={"low": 3}), "budgets.openai.levels.low: 3 is not a table"),
        (
            level(min=40),
            "budgets.openai.levels.low.min: 40 is not a percentage like '40%' "
            "(a budget's shares are percentages of its rate)",
        ),
        (
            level(max="half"),
            "budgets.openai.levels.low.max: 'half' is not a percentage like '40%' "
            "(a budget's shares are percentages of its rate)",
        ),
        (
            level(max="120%"),
            "budgets.openai.levels.low.max: '120%' is not a percentage from 0% to 100%",
        ),
        (level(weight=0), "budgets.openai.levels.low.weight: 0 is not a number > 0"),
        (level(queue=-2), "budgets.openai.levels.low.queue: -2 is not a whole number ≥ 0"),
        (
            level(max_wait=-1),
            "budgets.openai.levels.low.max_wait: -1 is not a number of seconds ≥ 0 (or inf)",
        ),
        (
            level(max_wait=math.nan),
            "budgets.openai.levels.low.max_wait: nan is not a number of seconds ≥ 0 (or inf)",
        ),
        (
            level(maximum="10%"),
            "budgets.openai.levels.low.maximum: unknown key; did you mean 'max'? accepted keys: "
            "'max', 'max_wait', 'min', 'queue', 'weight'",
        ),
        (
            level(min="50%", max="40%"),
            "budgets.openai.levels.low: min (50%) is more than max (40%); min must be ≤ max",
        ),
        (
            budget(levels={"critical": {"min": "70%"}, "low": {"min": "40%"}}),
            "budgets.openai.levels: the mins add up to 110%, more than the whole rate; "
            "the sum of min must be ≤ 100%",
        ),
        (
            budget(rpm=6, burst=5),
            "budgets.openai.burst: 5 s of 6 rpm is less than one request, so no request could "
            "ever be sent; burst must be ≥ 10 s",
        ),
    ],
)
def test_each_bad_input_is_named_with_what_is_accepted(
    data: Mapping[str, object], expected: str
) -> None:
    assert problems(data) == [expected]


def test_every_problem_of_every_budget_is_reported_at_once() -> None:
    found = problems(
        {"budgets": {"a": {"rpm": -1, "levels": {"low": {"min": 5}}}, "b": {"tpm": 0}}}
    )
    assert [p.split(":")[0] for p in found] == [
        "budgets.a.rpm",
        "budgets.a.levels.low.min",
        "budgets.b.tpm",
    ]


def test_a_budget_built_in_code_checks_itself() -> None:
    with pytest.raises(ConfigError) as info:
        BudgetPolicy(rpm=None, tpm=None, levels={"gold": BudgetLevelPolicy()}, name="x")
    assert [str(p) for p in info.value.problems] == [
        "budgets.x: sets no rate: give rpm, tpm or both (numbers > 0)",
        f"budgets.x.levels.gold: unknown level 'gold'; valid levels are {LEVELS}",
    ]
    with pytest.raises(ConfigError, match=r"^min: '40' is not a percentage like '40%'"):
        BudgetLevelPolicy(min="40")


def test_warnings_name_levels_that_can_never_be_served() -> None:
    policy = BudgetPolicy(
        rpm=60,
        burst=2,
        levels={
            "critical": BudgetLevelPolicy(min="60%"),
            "high": BudgetLevelPolicy(min="40%"),
            "bulk": BudgetLevelPolicy(max="0%"),
        },
        name="b",
    )
    assert [str(w) for w in policy.warnings()] == [
        "budgets.b.levels.high: can never send a request: its part of the 2 s burst is less "
        "than one request; raise burst",
        "budgets.b.levels.normal: can never be served: the mins of the levels above it take "
        "the whole rate; give it a min, or lower theirs",
        "budgets.b.levels.low: can never be served: the mins of the levels above it take the "
        "whole rate; give it a min, or lower theirs",
        "budgets.b.levels.bulk: max is 0%: every request of this level is shed",
    ]


def test_prioritize_check_shows_each_budget_resolved(tmp_path: Path) -> None:
    (tmp_path / "prioritize.toml").write_text(
        '[budgets.openai]\nrpm = 500\ntpm = 200000\n[budgets.openai.levels.critical]\nmin = "40%"\n'
    )
    result = CliRunner().invoke(main, ["check", str(tmp_path / "prioritize.toml")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = lines.index(
        "budget openai: 500 rpm, 200000 tpm; burst 60 s, order strict, queue 1000; "
        "a 429 cuts the rate to 0.5×, back in 60 s"
    )
    assert lines[start + 1].split() == [
        "critical", "min", "40%", "(200", "rpm,", "80000", "tpm)", "max", "100%",
        "weight", "1", "queue", "1000", "max_wait", "30", "s",
    ]  # fmt: skip
    assert len(lines) == start + 6


def test_prioritize_check_lists_budget_problems(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text("[budgets.openai]\nrpm = 0\n")
    result = CliRunner().invoke(main, ["check", str(tmp_path / "p.toml")])
    assert result.exit_code == 1
    assert "budgets.openai.rpm: 0 is not a number of requests per minute > 0" in result.output
