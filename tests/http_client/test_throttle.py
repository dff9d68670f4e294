"""The sans-I/O client throttle: the SRE formula, the window, least important first, Retry-After."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prioritize.core.levels import DEFAULT_LEVELS, LevelSet
from prioritize.core.throttle import ClientThrottle, drop_probabilities, rejection_probability
from prioritize.errors import ConfigError

CRITICAL, HIGH, NORMAL, LOW, BULK = range(5)
HOST = "api:443"
#: the default window: 120 s in 12 buckets of 10 s
WIDTH = 10.0


def rejected(throttle: ClientThrottle, rank: int, n: int, now: float = 0.0) -> None:
    for _ in range(n):
        throttle.record(HOST, rank, now, accepted=False)


def accepted(throttle: ClientThrottle, rank: int, n: int, now: float = 0.0) -> None:
    for _ in range(n):
        throttle.record(HOST, rank, now, accepted=True)


# --- the formula -------------------------------------------------------------------


def test_rejection_probability_is_the_books_formula() -> None:
    assert rejection_probability(0, 0, 2.0) == 0.0
    assert rejection_probability(10, 5, 2.0) == 0.0  # K times the accepts covers the requests
    assert rejection_probability(10, 2, 2.0) == 6 / 11
    assert rejection_probability(10, 0, 2.0) == 10 / 11
    assert rejection_probability(10, 4, 1.0) == 6 / 11
    assert rejection_probability(10, 4, 3.0) == 0.0


def test_a_healthy_backend_is_never_throttled() -> None:
    throttle = ClientThrottle()
    accepted(throttle, BULK, 1000)
    assert all(throttle.decide(HOST, BULK, 0.0, 0.0) is None for _ in range(100))
    assert throttle.stats(HOST, 0.0).probability == 0.0


def test_calls_are_refused_with_exactly_the_formulas_probability() -> None:
    throttle = ClientThrottle(LevelSet(["only"]))
    throttle.record(HOST, 0, 0.0, accepted=True)
    for _ in range(9):
        throttle.record(HOST, 0, 0.0, accepted=False)
    p = 8 / 11  # (10 - 2 * 1) / (10 + 1)
    assert throttle.stats(HOST, 0.0).probability == p
    assert throttle.decide(HOST, 0, 0.0, draw=math.nextafter(p, 1.0)) is None
    assert throttle.decide(HOST, 0, 0.0, draw=math.nextafter(p, 0.0)) == WIDTH


def test_a_locally_refused_call_counts_as_a_request_and_a_sent_one_when_recorded() -> None:
    # SRE book: "requests" are the requests the application layer attempted,
    # on top of the throttle, so refused calls count too.
    throttle = ClientThrottle()
    rejected(throttle, NORMAL, 3)
    assert throttle.decide(HOST, NORMAL, 0.0, draw=0.0) == WIDTH
    after_refusal = throttle.stats(HOST, 0.0)
    assert (after_refusal.requests, after_refusal.accepts) == (4, 0)
    assert throttle.decide(HOST, NORMAL, 0.0, draw=0.999) is None
    assert throttle.stats(HOST, 0.0).requests == 4  # a sent call counts when its outcome does
    throttle.record(HOST, NORMAL, 0.0, accepted=True)
    assert (throttle.stats(HOST, 0.0).requests, throttle.stats(HOST, 0.0).accepts) == (5, 1)


def test_hosts_are_throttled_separately() -> None:
    throttle = ClientThrottle()
    rejected(throttle, NORMAL, 20)
    assert throttle.decide(HOST, NORMAL, 0.0, draw=0.0) is not None
    assert throttle.decide("other:80", NORMAL, 0.0, draw=0.0) is None


def test_a_larger_k_tolerates_more_rejections() -> None:
    patient, eager = ClientThrottle(k=4.0), ClientThrottle(k=1.0)
    for throttle in (patient, eager):
        accepted(throttle, NORMAL, 3)
        rejected(throttle, NORMAL, 7)
    assert patient.stats(HOST, 0.0).probability == 0.0
    assert eager.stats(HOST, 0.0).probability == 7 / 11


# --- the window --------------------------------------------------------------------


def test_history_leaves_the_window_after_window_seconds() -> None:
    throttle = ClientThrottle()
    rejected(throttle, NORMAL, 10, now=0.0)
    assert throttle.stats(HOST, 119.999).requests == 10
    assert throttle.stats(HOST, 120.0).requests == 0
    assert throttle.decide(HOST, NORMAL, 120.0, draw=0.0) is None


def test_the_window_forgets_one_bucket_at_a_time() -> None:
    throttle = ClientThrottle(window=60.0, buckets=6)
    rejected(throttle, NORMAL, 10, now=5.0)  # bucket [0, 10)
    accepted(throttle, NORMAL, 4, now=35.0)  # bucket [30, 40)
    assert (throttle.stats(HOST, 59.0).requests, throttle.stats(HOST, 59.0).accepts) == (14, 4)
    assert throttle.stats(HOST, 59.0).probability == 6 / 15
    at_60 = throttle.stats(HOST, 60.0)  # the first bucket has aged out, the accepts remain
    assert (at_60.requests, at_60.accepts, at_60.probability) == (4, 4, 0.0)
    assert throttle.stats(HOST, 89.999).requests == 4
    assert throttle.stats(HOST, 90.0).requests == 0


def test_a_time_earlier_than_the_newest_bucket_counts_in_the_newest() -> None:
    throttle = ClientThrottle(window=60.0, buckets=6)
    rejected(throttle, NORMAL, 1, now=50.0)
    rejected(throttle, NORMAL, 1, now=3.0)  # read before a lock another caller held
    assert throttle.stats(HOST, 109.999).requests == 2
    assert throttle.stats(HOST, 110.0).requests == 0


def test_memory_is_one_ring_of_buckets_whatever_the_request_rate() -> None:
    throttle = ClientThrottle(window=60.0, buckets=6)
    for i in range(20_000):
        throttle.record(HOST, i % 5, i * 0.01, accepted=i % 3 == 0)
    window = throttle._hosts[HOST]
    assert len(window.slot_accepts) == len(window.slot_requests) == 6
    assert all(len(counts) == 5 for counts in window.slot_requests)
    stats = throttle.stats(HOST, 199.99)
    assert stats.requests == sum(stats.requests_by_level.values()) == 6_000  # [140, 200)


def test_idle_hosts_are_forgotten_once_many_were_seen() -> None:
    throttle = ClientThrottle(window=60.0, buckets=6)
    for i in range(100):
        throttle.record(f"host{i}:80", NORMAL, 0.0, accepted=True)
    throttle.record("paused:80", LOW, 0.0, accepted=False, retry_after=60.0)
    assert "101 hosts" in repr(throttle)
    throttle.record("fresh:80", NORMAL, 60.0, accepted=True)  # the others' windows are empty
    assert "2 hosts" in repr(throttle)  # fresh, and paused (its pause still runs)
    assert throttle.stats("paused:80", 60.0).paused["low"] == 0.0


# --- least important first ------------------------------------------------------------


def test_the_budget_goes_to_the_least_important_level_first() -> None:
    # bulk is half the traffic and p = 0.3: bulk is refused with probability 0.6
    assert drop_probabilities(0.3, [1, 1, 1, 2, 5]) == (0.0, 0.0, 0.0, 0.0, 0.6)


def test_what_the_least_important_level_cannot_absorb_goes_to_the_next() -> None:
    # bulk 50 %, low 40 %, p = 0.7: bulk entirely, then low at 0.2 / 0.4
    assert drop_probabilities(0.7, [0, 0, 1, 4, 5]) == (0.0, 0.0, 0.0, 0.5, 1.0)
    assert drop_probabilities(1.0, [1, 1, 1, 1, 1]) == (1.0, 1.0, 1.0, 1.0, 1.0)
    assert drop_probabilities(0.0, [1, 1, 1, 1, 1]) == (0.0, 0.0, 0.0, 0.0, 0.0)


def test_a_level_without_recent_calls_is_refused_when_a_more_important_one_is() -> None:
    assert drop_probabilities(0.6, [5, 0, 0, 0, 5]) == (0.2, 1.0, 1.0, 1.0, 1.0)
    assert drop_probabilities(0.5, [5, 0, 0, 0, 5]) == (0.0, 0.0, 0.0, 0.0, 1.0)
    assert drop_probabilities(0.0, [0, 0, 0, 0, 0]) == (0.0, 0.0, 0.0, 0.0, 0.0)


@given(
    p=st.floats(0.0, 1.0),
    requests=st.lists(st.integers(0, 10_000), min_size=1, max_size=8).filter(any),
)
def test_the_expected_refused_share_is_p_and_the_order_holds(p: float, requests: list[int]) -> None:
    drops = drop_probabilities(p, requests)
    total = sum(requests)
    assert len(drops) == len(requests)
    assert all(0.0 <= d <= 1.0 for d in drops)
    expected = sum(n * d for n, d in zip(requests, drops, strict=True)) / total
    assert math.isclose(expected, p, rel_tol=1e-9, abs_tol=1e-9)
    for rank, drop in enumerate(drops):
        if drop > 0.0:
            assert all(less == 1.0 for less in drops[rank + 1 :]), (rank, drops)


def test_the_throttle_refuses_bulk_before_critical() -> None:
    throttle = ClientThrottle()
    rejected(throttle, BULK, 10)
    accepted(throttle, CRITICAL, 2)
    stats = throttle.stats(HOST, 0.0)
    assert stats.probability == 8 / 13  # (12 - 2 * 2) / 13
    drops = drop_probabilities(8 / 13, [2, 0, 0, 0, 10])
    assert stats.drop == dict(zip(DEFAULT_LEVELS.names, drops, strict=True))
    assert stats.drop["critical"] == 0.0
    assert math.isclose(stats.drop["bulk"], 8 / 13 * 12 / 10)
    assert throttle.decide(HOST, CRITICAL, 0.0, draw=0.0) is None
    assert throttle.decide(HOST, BULK, 0.0, draw=0.7) == WIDTH


# --- Retry-After -----------------------------------------------------------------------


def test_retry_after_pauses_the_rejected_level_and_every_less_important_one() -> None:
    throttle = ClientThrottle()
    throttle.record(HOST, LOW, 0.0, accepted=False, retry_after=30.0)
    assert throttle.decide(HOST, LOW, 10.0, draw=0.999) == 20.0
    assert throttle.decide(HOST, BULK, 10.0, draw=0.999) == 20.0
    assert throttle.decide(HOST, NORMAL, 10.0, draw=0.999) is None
    assert throttle.stats(HOST, 10.0).paused == {
        "critical": 0.0, "high": 0.0, "normal": 0.0, "low": 20.0, "bulk": 20.0,
    }  # fmt: skip


def test_the_most_important_level_is_never_paused_so_it_keeps_probing() -> None:
    throttle = ClientThrottle()
    throttle.record(HOST, CRITICAL, 0.0, accepted=False, retry_after=30.0)
    assert throttle.decide(HOST, CRITICAL, 1.0, draw=0.999) is None
    assert [throttle.decide(HOST, rank, 1.0, draw=0.999) for rank in (HIGH, NORMAL, LOW, BULK)] == [
        29.0, 29.0, 29.0, 29.0,
    ]  # fmt: skip


def test_a_pause_ends_at_the_time_given() -> None:
    throttle = ClientThrottle()
    throttle.record(HOST, NORMAL, 0.0, accepted=False, retry_after=30.0)
    assert throttle.decide(HOST, NORMAL, 29.5, draw=0.999) == 0.5
    assert throttle.decide(HOST, NORMAL, 30.0, draw=0.999) is None


def test_calls_refused_during_a_pause_count_as_requests() -> None:
    throttle = ClientThrottle()
    throttle.record(HOST, NORMAL, 0.0, accepted=False, retry_after=30.0)
    for _ in range(4):
        throttle.decide(HOST, NORMAL, 1.0, draw=0.999)
    assert throttle.stats(HOST, 1.0).requests_by_level["normal"] == 5


def test_a_shorter_retry_after_does_not_end_a_longer_pause() -> None:
    throttle = ClientThrottle()
    throttle.record(HOST, NORMAL, 0.0, accepted=False, retry_after=30.0)
    throttle.record(HOST, NORMAL, 1.0, accepted=False, retry_after=2.0)
    assert throttle.decide(HOST, NORMAL, 10.0, draw=0.999) == 20.0


def test_a_retry_after_longer_than_the_cap_is_cut_to_it() -> None:
    throttle = ClientThrottle()
    throttle.record(HOST, NORMAL, 0.0, accepted=False, retry_after=86_400.0)
    assert throttle.stats(HOST, 0.0).paused["normal"] == 120.0  # the window, by default
    capped = ClientThrottle(max_retry_after=5.0)
    capped.record(HOST, NORMAL, 0.0, accepted=False, retry_after=86_400.0)
    assert capped.stats(HOST, 0.0).paused["normal"] == 5.0


def test_a_retry_after_of_zero_pauses_nothing() -> None:
    throttle = ClientThrottle()
    throttle.record(HOST, NORMAL, 0.0, accepted=False, retry_after=0.0)
    assert throttle.stats(HOST, 0.0).paused["normal"] == 0.0


# --- settings, snapshots, bad arguments ----------------------------------------------------


def test_settings_snapshot_and_repr() -> None:
    throttle = ClientThrottle(k=1.5, window=30.0, buckets=3)
    assert (throttle.k, throttle.window, throttle.buckets) == (1.5, 30.0, 3)
    assert throttle.levels is DEFAULT_LEVELS
    assert repr(throttle) == "<ClientThrottle k=1.5 window=30s/3 buckets, 0 hosts>"
    never_seen = throttle.stats("new:80", 0.0)
    assert (never_seen.host, never_seen.requests, never_seen.probability) == ("new:80", 0, 0.0)
    assert never_seen.drop == dict.fromkeys(DEFAULT_LEVELS.names, 0.0)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"k": 0.5}, "k = 0.5: expected a number >= 1"),
        ({"k": math.nan}, "k = nan: expected a number >= 1"),
        ({"k": math.inf}, "k = inf: expected a number >= 1"),
        ({"k": "2"}, "k = '2': expected a number >= 1"),
        ({"k": True}, "k = True: expected a number >= 1"),
        ({"window": 0}, "window = 0: expected a number of seconds > 0"),
        ({"window": -1.0}, "window = -1.0: expected a number of seconds > 0"),
        ({"buckets": 0}, "buckets = 0: expected a whole number >= 1"),
        ({"buckets": 2.5}, "buckets = 2.5: expected a whole number >= 1"),
        ({"buckets": True}, "buckets = True: expected a whole number >= 1"),
        ({"max_retry_after": -1}, "max_retry_after = -1: expected a number of seconds >= 0"),
        ({"levels": ["a"]}, "levels = ['a']: expected a LevelSet"),
    ],
)
def test_a_bad_setting_is_named_with_what_is_accepted(
    settings: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        ClientThrottle(**settings)  # type: ignore[arg-type]


RANKS = "expected a level rank from 0 to 4 (levels ['critical', 'high', 'normal', 'low', 'bulk'])"


@pytest.mark.parametrize(
    ("host", "rank", "now", "draw", "message"),
    [
        ("", 0, 0.0, 0.5, "host = '': expected a non-empty string such as 'api:443'"),
        (None, 0, 0.0, 0.5, "host = None: expected a non-empty string"),
        (HOST, -1, 0.0, 0.5, f"rank = -1: {RANKS}"),
        (HOST, 5, 0.0, 0.5, f"rank = 5: {RANKS}"),
        (HOST, 1.0, 0.0, 0.5, f"rank = 1.0: {RANKS}"),
        (HOST, True, 0.0, 0.5, f"rank = True: {RANKS}"),
        (HOST, 0, math.nan, 0.5, "now = nan: expected a finite time in seconds"),
        (HOST, 0, math.inf, 0.5, "now = inf: expected a finite time in seconds"),
        (HOST, 0, "0", 0.5, "now = '0': expected a finite time in seconds"),
        (HOST, 0, 0.0, 1.0, "draw = 1.0: expected a number from 0 (included) to 1 (excluded)"),
        (HOST, 0, 0.0, -0.1, "draw = -0.1: expected a number from 0 (included) to 1"),
        (HOST, 0, 0.0, math.nan, "draw = nan: expected a number from 0 (included) to 1"),
    ],
)
def test_decide_names_a_bad_argument(
    host: object, rank: object, now: object, draw: object, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        ClientThrottle().decide(host, rank, now, draw)  # type: ignore[arg-type]


def test_record_names_a_bad_argument() -> None:
    throttle = ClientThrottle()
    with pytest.raises(TypeError, match=re.escape("accepted = 'yes': expected True or False")):
        throttle.record(HOST, 0, 0.0, "yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape("rank = 9: expected a level rank from 0 to 4")):
        throttle.record(HOST, 9, 0.0, accepted=True)
    with pytest.raises(
        ValueError,
        match=re.escape("retry_after = 5.0 with accepted=True: only a rejection (429, 503) pauses"),
    ):
        throttle.record(HOST, 0, 0.0, accepted=True, retry_after=5.0)
    for bad in (-1.0, math.inf, math.nan, "5"):
        with pytest.raises(
            ValueError, match=re.escape(f"retry_after = {bad!r}: expected a number of seconds >= 0")
        ):
            throttle.record(HOST, 0, 0.0, accepted=False, retry_after=bad)  # type: ignore[arg-type]
    assert throttle.stats(HOST, 0.0).requests == 0  # nothing was counted by a refused call


def test_drop_probabilities_names_a_bad_argument() -> None:
    with pytest.raises(ValueError, match=re.escape("p = 1.5: expected a probability from 0 to 1")):
        drop_probabilities(1.5, [1])
    with pytest.raises(ValueError, match=re.escape("requests = [1, -1]: expected counts >= 0")):
        drop_probabilities(0.5, [1, -1])
