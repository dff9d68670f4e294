"""Validation of the [simulate] table: every problem at once, each with its key path."""

from __future__ import annotations

import pytest

from prioritize import DEFAULT_LEVELS, ConfigError
from prioritize.simulate import (
    Constant,
    Exponential,
    LevelLoad,
    LoadSpec,
    Lognormal,
    Uniform,
    merge_overrides,
    parse_load,
)

EXP = {"dist": "exponential", "mean": 0.05}


def problems(table: dict[str, object], gates: tuple[str, ...] = ("api",)) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_load(table, DEFAULT_LEVELS, list(gates))
    return [str(p) for p in caught.value.problems]


def test_a_full_table_parses_into_a_frozen_spec() -> None:
    spec = parse_load(
        {
            "gate": "api",
            "duration": 30,
            "warmup": 2.5,
            "seed": 42,
            "overload": 2,
            "service": EXP,
            "load": {
                "bulk": {"rate": 100, "flows": 50, "skew": 1.1},
                "critical": {"rate": 5, "service": {"dist": "constant", "value": 0.01}},
            },
        },
        DEFAULT_LEVELS,
        ["api", "db"],
    )
    assert spec == LoadSpec(
        gate="api",
        duration=30.0,
        warmup=2.5,
        seed=42,
        overload=2.0,
        levels=(
            LevelLoad("critical", 10.0, Constant(0.01)),
            LevelLoad("bulk", 200.0, Exponential(0.05), flows=50, skew=1.1),
        ),
    )
    assert spec.end == 32.5
    assert spec.offered_rate == 210.0


def test_defaults_and_the_only_gate() -> None:
    spec = parse_load({"load": {"low": {"rate": 1, "service": EXP}}}, DEFAULT_LEVELS, ["db"])
    assert (spec.gate, spec.duration, spec.warmup, spec.seed, spec.overload) == ("db", 60, 0, 0, 1)


@pytest.mark.parametrize(
    ("service", "made"),
    [
        ({"dist": "exponential", "mean": 0.2}, Exponential(0.2)),
        ({"dist": "constant", "value": 1}, Constant(1.0)),
        ({"dist": "lognormal", "mean": 0.05, "sigma": 1.5}, Lognormal(0.05, 1.5)),
        ({"dist": "uniform", "low": 0, "high": 0.1}, Uniform(0.0, 0.1)),
    ],
)
def test_each_service_distribution(service: dict[str, object], made: object) -> None:
    spec = parse_load({"load": {"low": {"rate": 1, "service": service}}}, DEFAULT_LEVELS, ["api"])
    assert spec.levels[0].service == made


def test_bad_rate_is_named_with_its_key_path() -> None:
    table = {"load": {"bulk": {"rate": -3, "service": EXP}}}
    assert problems(table) == ["simulate.load.bulk.rate: -3 is not a number > 0"]


def test_every_problem_is_reported_at_once() -> None:
    table = {
        "duration": 0,
        "warmup": "x",
        "seed": 1.5,
        "overlaod": 2,
        "gate": "apx",
        "load": {
            "critcal": {"rate": 1},
            "high": {"rate": True, "service": {"dist": "lognormal", "mean": 0.1}},
            "low": {"rate": 5, "service": {"dist": "uniform", "low": 0.2, "high": 0.1}},
            "bulk": {"rate": 5, "flows": 0, "skew": -1, "srvice": EXP},
        },
    }
    assert problems(table) == [
        "simulate.overlaod: unknown key; did you mean 'overload'? accepted keys: "
        "'capacity', 'duration', 'gate', 'load', 'overload', 'seed', 'service', "
        "'service_model', 'warmup'",
        "simulate.gate: 'apx' is not a gate of this policy; did you mean 'api'? gates are ['api']",
        "simulate.duration: 0 is not a number > 0",
        "simulate.warmup: 'x' is not a number ≥ 0",
        "simulate.seed: 1.5 is not a whole number",
        "simulate.load.critcal: unknown level 'critcal'; did you mean 'critical'? "
        "valid levels are ['critical', 'high', 'normal', 'low', 'bulk']",
        "simulate.load.high.rate: True is not a number > 0",
        "simulate.load.high.service.sigma: missing; give a number ≥ 0",
        "simulate.load.low.service: low (0.2) is more than high (0.1); low must be ≤ high",
        "simulate.load.bulk.srvice: unknown key; did you mean 'service'? accepted keys: "
        "'flows', 'rate', 'service', 'skew'",
        "simulate.load.bulk.service: missing; give a table like "
        '{dist = "exponential", mean = 0.05} here or a default service in [simulate]',
        "simulate.load.bulk.flows: 0 is not a whole number ≥ 1",
        "simulate.load.bulk.skew: -1 is not a number ≥ 0",
    ]


def test_unknown_distribution_suggests_the_closest() -> None:
    table = {"service": {"dist": "expo", "mean": 1}, "load": {"bulk": {"rate": 3}}}
    assert problems(table) == [
        "simulate.service.dist: 'expo' is not one of "
        "['constant', 'exponential', 'lognormal', 'uniform']; did you mean 'exponential'?"
    ]


def test_distribution_parameters_belong_to_their_distribution() -> None:
    table = {"load": {"bulk": {"rate": 3, "service": {"dist": "constant", "mean": 2}}}}
    assert problems(table) == [
        "simulate.load.bulk.service.mean: unknown key; accepted keys: 'dist', 'value'",
        "simulate.load.bulk.service.value: missing; give a number > 0",
    ]


def test_gate_must_be_named_when_the_policy_has_several() -> None:
    table = {"load": {"bulk": {"rate": 3, "service": EXP}}}
    assert problems(table, ("api", "db")) == [
        "simulate.gate: missing; the policy has 2 gates, name one of ['api', 'db']"
    ]


def test_a_load_needs_at_least_one_level_and_infinite_values_are_refused() -> None:
    assert problems({"duration": float("inf"), "service": 0.05}) == [
        "simulate.duration: inf is not a number > 0",
        'simulate.service: 0.05 is not a table like {dist = "exponential", mean = 0.05}',
        "simulate.load: no level has a load; add [simulate.load.<level>] with rate = ... "
        "or pass --rate LEVEL=RATE",
    ]


def test_a_load_too_big_to_simulate_is_refused_before_running() -> None:
    table = {"duration": 100, "load": {"bulk": {"rate": 1e6, "service": EXP}}}
    assert problems(table) == [
        "simulate: about 100,000,000 arrivals is too many to simulate (at most 2,000,000); "
        "lower duration, warmup, overload or the rates"
    ]


def test_overrides_replace_values_and_add_levels_without_touching_the_table() -> None:
    table: dict[str, object] = {"seed": 1, "load": {"bulk": {"rate": 5, "service": EXP}}}
    merged = merge_overrides(table, seed=9, duration=3, rates={"bulk": 7.0, "critical": 2.0})
    assert merged == {
        "seed": 9,
        "duration": 3,
        "load": {"bulk": {"rate": 7.0, "service": EXP}, "critical": {"rate": 2.0}},
    }
    assert table == {"seed": 1, "load": {"bulk": {"rate": 5, "service": EXP}}}


def test_a_bad_override_is_reported_like_a_bad_table_value() -> None:
    table = {"service": EXP, "load": {"bulk": {"rate": 5}}}
    merged = merge_overrides(table, rates={"bulk": -3.0, "critcal": 1.0, "a b": 1.0}, overload=0.0)
    assert problems(merged) == [
        "simulate.overload: 0.0 is not a number > 0",
        "simulate.load.critcal: unknown level 'critcal'; did you mean 'critical'? "
        "valid levels are ['critical', 'high', 'normal', 'low', 'bulk']",
        "simulate.load.\"a b\": unknown level 'a b'; valid levels are "
        "['critical', 'high', 'normal', 'low', 'bulk']",
        "simulate.load.bulk.rate: -3.0 is not a number > 0",
    ]
