"""The completion-rate window behind retry_after."""

from __future__ import annotations

import pytest

from prioritize.core.rate import CompletionRate


def feed(rate: CompletionRate, per_second: int, start: float, seconds: float) -> float:
    now = start
    for _ in range(int(per_second * seconds)):
        now += 1.0 / per_second
        rate.record(now)
    return now


def test_steady_completions_are_measured_at_their_rate() -> None:
    rate = CompletionRate(window=5.0)
    now = feed(rate, 40, 0.0, 20.0)
    assert rate.per_second(now) == pytest.approx(40.0, rel=0.03)


def test_a_rate_change_shows_within_two_windows() -> None:
    rate = CompletionRate(window=1.0)
    now = feed(rate, 100, 0.0, 10.0)
    now = feed(rate, 10, now, 2.0)
    assert rate.per_second(now) == pytest.approx(10.0, rel=0.1)


def test_silence_decays_the_rate_to_zero() -> None:
    rate = CompletionRate(window=2.0)
    now = feed(rate, 50, 0.0, 6.0)
    assert rate.per_second(now + 1.0) > 0
    assert rate.per_second(now + 4.0) == 0.0


def test_nothing_recorded_means_no_rate() -> None:
    assert CompletionRate().per_second(123.0) == 0.0
