"""RetryPolicy: capped exponential backoff with jitter, and when a job stops being retried."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prioritize.core.retry import Jitter, RetryPolicy
from prioritize.errors import ConfigError


def test_delays_double_up_to_the_cap_without_jitter() -> None:
    policy = RetryPolicy(retries=6, base=1.0, factor=2.0, cap=10.0, jitter="none")
    assert [policy.delay(n, 0.5) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, None]


def test_full_jitter_draws_from_zero_to_the_capped_delay() -> None:
    policy = RetryPolicy(retries=3, base=2.0, cap=100.0)
    assert policy.jitter is Jitter.FULL
    assert policy.delay(3, 0.0) == 0.0
    assert policy.delay(3, 0.25) == 2.0  # a quarter of 8 s
    assert policy.delay(4, 0.25) is None  # out of retries: dead letter


def test_equal_jitter_keeps_half_the_delay_as_a_floor() -> None:
    policy = RetryPolicy(base=4.0, jitter=Jitter.EQUAL)
    assert policy.delay(1, 0.0) == 2.0
    assert policy.delay(1, 0.5) == 3.0


def test_no_retries_means_the_first_failure_is_final() -> None:
    assert RetryPolicy(retries=0).delay(1, 0.3) is None


policies = st.builds(
    lambda retries, base, factor, cap_over_base, jitter: RetryPolicy(
        retries, base, factor, base * cap_over_base, jitter
    ),
    st.integers(0, 50),
    st.floats(0.001, 100),
    st.floats(1.0, 10.0),
    st.floats(1.0, 1e6),
    st.sampled_from(list(Jitter)),
)


@given(
    policy=policies,
    failures=st.integers(1, 10_000),
    draw=st.floats(0.0, 1.0, exclude_max=True),
)
def test_a_delay_is_never_negative_never_above_the_cap_and_none_only_past_the_retries(
    policy: RetryPolicy, failures: int, draw: float
) -> None:
    retries = policy.retries
    delay = policy.delay(failures, draw)
    if failures > retries:
        assert delay is None
    else:
        assert delay is not None
        assert 0.0 <= delay <= policy.cap * (1 + 1e-12)
        assert math.isfinite(delay)


def test_every_bad_setting_is_named_with_what_is_accepted() -> None:
    with pytest.raises(ConfigError) as caught:
        RetryPolicy(retries=-1, base=0, factor=0.5, cap=float("inf"), jitter="random")
    assert [str(p) for p in caught.value.problems] == [
        "retry.retries: -1 is not a whole number ≥ 0",
        "retry.base: 0 is not a finite number of seconds > 0",
        "retry.cap: inf is not a finite number of seconds > 0",
        "retry.factor: 0.5 is not a number ≥ 1 (1 keeps the delay constant)",
        "retry.jitter: 'random' is not one of 'full', 'equal', 'none'",
    ]
    with pytest.raises(ConfigError, match=r"retry.cap: 1 is less than base \(5\); the cap must be"):
        RetryPolicy(base=5, cap=1)


def test_bad_arguments_to_delay_are_refused_with_what_is_expected() -> None:
    policy = RetryPolicy()
    with pytest.raises(ValueError, match=r"failures = 0: expected the number of failed runs, ≥ 1"):
        policy.delay(0, 0.5)
    with pytest.raises(
        ValueError, match=r"draw = 1.0: expected a uniform random number in \[0, 1\)"
    ):
        policy.delay(1, 1.0)
