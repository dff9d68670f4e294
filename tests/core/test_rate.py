"""The completion-rate estimate behind retry_after."""

from __future__ import annotations

import pytest

from prioritize.core.rate import CompletionRate


def feed(rate: CompletionRate, per_second: int, start: float, seconds: float, total: int) -> float:
    """Complete ``per_second`` × ``seconds`` requests evenly, sampling as the scheduler does."""
    now = start
    for _ in range(int(per_second * seconds)):
        now += 1.0 / per_second
        total += 1
        if now >= rate.due:
            rate.sample(now, total)
    return now


def test_steady_completions_are_measured_at_their_rate() -> None:
    rate = CompletionRate(window=5.0)
    now = feed(rate, 40, 0.0, 20.0, 0)
    assert rate.per_second(now, 800) == pytest.approx(40.0, rel=0.03)


def test_a_rate_change_shows_within_two_windows() -> None:
    rate = CompletionRate(window=1.0)
    now = feed(rate, 100, 0.0, 10.0, 0)
    now = feed(rate, 10, now, 2.5, 1000)
    assert rate.per_second(now, 1025) == pytest.approx(10.0, rel=0.15)


def test_silence_decays_the_rate() -> None:
    rate = CompletionRate(window=2.0)
    now = feed(rate, 50, 0.0, 6.0, 0)
    busy = rate.per_second(now, 300)
    assert rate.per_second(now + 60.0, 300) < busy / 10


def test_fewer_than_two_samples_mean_no_rate() -> None:
    rate = CompletionRate()
    assert rate.per_second(123.0, 0) == 0.0
    rate.sample(1.0, 1)
    assert rate.per_second(1.0, 1) == 0.0
    assert rate.per_second(3.0, 5) == 2.0
