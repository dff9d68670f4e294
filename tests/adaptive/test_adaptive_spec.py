"""The ``capacity = {adaptive = ...}`` table: what it accepts, what it builds, its messages."""

from __future__ import annotations

import math
import tomllib

import pytest

from prioritize import ConfigError, GatePolicy, LevelPolicy
from prioritize.adaptive import AIMD, AdaptiveSpec, ControllerKind, Gradient, parse_adaptive

PATH = "gates.api.capacity"


def problems(raw: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_adaptive(raw, PATH)
    return [str(p) for p in caught.value.problems]


def test_a_table_with_only_the_controller_takes_every_default() -> None:
    spec = parse_adaptive({"adaptive": "gradient"}, PATH)
    assert spec == AdaptiveSpec("gradient")
    assert (spec.kind, spec.min, spec.max, spec.initial) == (ControllerKind.GRADIENT, 4, 200, 20)
    assert dict(spec.options) == {}


def test_the_table_as_written_in_a_policy_file() -> None:
    raw = tomllib.loads(
        "capacity = { adaptive = 'aimd', min = 8, max = 64, initial = 16, max_rtt = 0.25 }"
    )["capacity"]
    spec = parse_adaptive(raw, PATH)
    assert spec == AdaptiveSpec("aimd", min=8, max=64, initial=16, options={"max_rtt": 0.25})
    assert str(spec) == "aimd, 8 to 64 seats, starting at 16"
    assert spec.to_dict() == {
        "adaptive": "aimd", "min": 8, "max": 64, "initial": 16, "max_rtt": 0.25,
    }  # fmt: skip


def test_initial_defaults_to_20_moved_inside_the_bounds() -> None:
    assert parse_adaptive({"adaptive": "aimd", "min": 30}, PATH).initial == 30
    assert parse_adaptive({"adaptive": "aimd", "max": 10}, PATH).initial == 10


def test_a_misspelt_controller_gets_a_suggestion() -> None:
    assert problems({"adaptive": "gradiant"}) == [
        "gates.api.capacity.adaptive: 'gradiant' is not one of 'aimd', 'gradient'; "
        "did you mean 'gradient'?"
    ]
    assert problems({"adaptive": "vegas"}) == [
        "gates.api.capacity.adaptive: 'vegas' is not one of 'aimd', 'gradient'"
    ]
    assert problems({"min": 4}) == [
        "gates.api.capacity.adaptive: missing; give one of 'aimd', 'gradient'"
    ]


def test_unknown_keys_are_named_with_the_accepted_ones() -> None:
    assert problems({"adaptive": "aimd", "backof": 0.8, "tolerance": 2}) == [
        "gates.api.capacity.backof: unknown key; did you mean 'backoff'? accepted keys: "
        "'adaptive', 'backoff', 'increase', 'initial', 'max', 'max_rtt', 'min', 'smoothing', "
        "'window', 'window_samples'",
        "gates.api.capacity.tolerance: an option of adaptive = 'gradient', not of 'aimd'; "
        "accepted keys: 'adaptive', 'backoff', 'increase', 'initial', 'max', 'max_rtt', "
        "'min', 'smoothing', 'window', 'window_samples'",
    ]


def test_every_bad_value_is_reported_at_once() -> None:
    raw = {
        "adaptive": "gradient",
        "initial": 300,
        "tolerance": 0.9,
        "smoothing": 0,
        "headroom": "log",
        "backoff": 1,
        "window": -1,
        "window_samples": 2.5,
        "probe_interval": 0,
        "probe_samples": True,
    }
    assert problems(raw) == [  # in the order they were written
        "gates.api.capacity.initial: 300 is not a whole number from min (4) to max (200)",
        "gates.api.capacity.tolerance: 0.9 is not a number ≥ 1",
        "gates.api.capacity.smoothing: 0 is not a number > 0 and ≤ 1",
        "gates.api.capacity.headroom: 'log' is not 'sqrt' or a number ≥ 0",
        "gates.api.capacity.backoff: 1 is not a number from 0.5 to 1, 1 excluded",
        "gates.api.capacity.window: -1 is not a number of seconds ≥ 0",
        "gates.api.capacity.window_samples: 2.5 is not a whole number ≥ 1",
        "gates.api.capacity.probe_interval: 0 is not a number of seconds > 0 (or inf)",
        "gates.api.capacity.probe_samples: true is not a whole number ≥ 1",
    ]


def test_bounds_must_be_whole_seats_in_order() -> None:
    assert problems({"adaptive": "aimd", "min": 0, "max": True}) == [
        "gates.api.capacity.min: 0 is not a whole number ≥ 1",
        "gates.api.capacity.max: true is not a whole number ≥ 1",
    ]
    assert problems({"adaptive": "aimd", "min": 50, "max": 10}) == [
        "gates.api.capacity: min (50) is more than max (10); min must be ≤ max"
    ]
    assert problems({"adaptive": "aimd", "max": 3}) == [
        "gates.api.capacity: min (4) is more than max (3); min must be ≤ max"
    ]


def test_a_value_that_is_not_a_table_is_refused() -> None:
    assert problems("gradient") == [
        "gates.api.capacity: 'gradient' is not a table like "
        '{adaptive = "gradient", min = 4, max = 200}'
    ]


def test_keys_that_are_not_bare_are_quoted_as_toml_would() -> None:
    assert problems({"adaptive": "aimd", "max rtt": 1})[0].startswith(
        'gates.api.capacity."max rtt": unknown key;'
    )


def test_a_spec_built_in_code_is_checked_the_same_way() -> None:
    with pytest.raises(ConfigError) as caught:
        AdaptiveSpec("aimd", min=8, options={"backoff": 2.0, "headroom": 4})
    assert [str(p) for p in caught.value.problems] == [
        "capacity.headroom: an option of adaptive = 'gradient', not of 'aimd'; accepted keys: "
        "'adaptive', 'backoff', 'increase', 'initial', 'max', 'max_rtt', 'min', 'smoothing', "
        "'window', 'window_samples'",
        "capacity.backoff: 2.0 is not a number from 0.5 to 1, 1 excluded",
    ]


def test_build_makes_a_fresh_controller_with_the_options() -> None:
    spec = AdaptiveSpec("aimd", min=2, max=50, initial=10, options={"backoff": 0.5, "window": 0})
    first, second = spec.build(), spec.build()
    assert isinstance(first, AIMD)
    assert first is not second
    assert (first.limit, first.min_limit, first.max_limit) == (10, 2, 50)
    assert first.on_sample(0.0, 0.01, 10, dropped=True) == 5  # backoff 0.5, window 0
    assert second.limit == 10

    gradient = AdaptiveSpec("gradient", options={"headroom": 2, "probe_interval": math.inf})
    assert isinstance(gradient.build(), Gradient)


def test_gate_starts_the_policy_at_the_initial_limit() -> None:
    policy = GatePolicy(capacity=32, name="api", levels={"critical": LevelPolicy(min="10%")})
    gate = AdaptiveSpec("gradient", initial=12).gate(policy)
    assert gate.capacity == 12
    assert gate.levels == policy.levels
    assert gate.name == "api"
    assert gate.resolve(12)[0].min == 1
