"""Service time: how long each seat was held, recorded at release, exported as ``le`` buckets."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prioritize.core import GatePolicy, LevelPolicy, Scheduler
from prioritize.core.stats import _BUCKETS, _OFFSET, _SUB, BUCKET_BOUNDS, WaitHistogram

INF = math.inf


def scheduler(capacity: int) -> Scheduler:
    return Scheduler(GatePolicy(capacity=capacity, levels={"normal": LevelPolicy(max_wait=INF)}))


def counts_at_bounds(cumulative: tuple[int, ...]) -> dict[float, int]:
    return dict(zip(BUCKET_BOUNDS, cumulative, strict=True))


def test_release_records_how_long_the_seat_was_held() -> None:
    s = scheduler(2)
    first, second = s.ticket("normal"), s.ticket("normal")
    s.submit(first, 0.0)
    s.submit(second, 1.0)
    s.release(second, 1.5)  # held 0.5 s: exactly on a bucket edge
    s.release(first, 3.0)  # held 3 s
    service = s.stats().level("normal").service
    assert (service.count, service.total, service.max, service.mean) == (2, 3.5, 3.0, 1.75)
    counts = counts_at_bounds(service.cumulative)
    assert counts[0.25] == 0
    assert counts[0.5] == 1  # le is inclusive: a 0.5 s hold counts at 0.5
    assert counts[2.0] == 1
    assert counts[4.0] == 2
    assert counts[BUCKET_BOUNDS[-1]] == 2
    assert service.p50 == 0.5
    assert service.p99 == 3.0  # the bucket's bound (2**(7/4) ≈ 3.36) capped at the max


def test_a_waiter_granted_later_is_timed_from_its_grant_not_its_submit() -> None:
    s = scheduler(1)
    holder, waiter = s.ticket("normal"), s.ticket("normal")
    s.submit(holder, 0.0)
    s.submit(waiter, 0.0)
    (granted,) = s.release(holder, 2.0)
    assert granted is waiter
    s.release(waiter, 2.25)
    normal = s.stats().level("normal")
    assert (normal.wait.count, normal.wait.total) == (2, 2.0)
    assert (normal.service.count, normal.service.total) == (2, 2.25)
    assert counts_at_bounds(normal.service.cumulative)[0.25] == 1


def test_a_take_holds_no_seat_and_records_no_service_time() -> None:
    s = scheduler(1)
    holder, queued = s.ticket("normal"), s.ticket("normal")
    s.submit(holder, 0.0)
    s.submit(queued, 0.0)
    assert s.take(4.0, []) is queued
    normal = s.stats().level("normal")
    assert (normal.granted, normal.released, normal.in_use) == (2, 1, 1)
    assert (normal.wait.count, normal.wait.total) == (2, 4.0)
    assert normal.service.count == 0


def test_cancelling_a_granted_ticket_gives_its_seat_back_with_its_service_time() -> None:
    s = scheduler(1)
    ticket = s.ticket("normal")
    s.submit(ticket, 1.0)
    s.cancel(ticket, 1.75)
    normal = s.stats().level("normal")
    assert (normal.service.count, normal.service.total, normal.cancelled) == (1, 0.75, 0)


def test_service_samples_wait_unfolded_until_a_batch_is_full() -> None:
    s = scheduler(1)
    for i in range(WaitHistogram.BATCH + 1):
        ticket = s.ticket("normal")
        s.submit(ticket, float(i))
        s.release(ticket, i + 0.125)
    _, service = s.histograms("normal")
    assert len(service.pending) == 1  # a full batch was folded, one sample waits
    summary = s.stats().level("normal").service
    assert summary.count == WaitHistogram.BATCH + 1
    assert summary.total == 0.125 * (WaitHistogram.BATCH + 1)
    assert counts_at_bounds(summary.cumulative)[0.125] == WaitHistogram.BATCH + 1


def test_an_idle_level_reports_empty_summaries() -> None:
    summary = scheduler(1).stats().level("bulk").service
    assert (summary.count, summary.total, summary.max, summary.p99) == (0, 0.0, 0.0, 0.0)
    assert summary.cumulative == (0,) * len(BUCKET_BOUNDS)


def test_cumulative_bounds_must_ascend() -> None:
    with pytest.raises(ValueError, match=r"bounds must ascend; 0\.5 follows 1\.0"):
        WaitHistogram().cumulative([1.0, 0.5])


def test_the_exported_bounds_are_powers_of_two_from_about_a_millisecond_to_256_s() -> None:
    assert BUCKET_BOUNDS[0] == 2.0**-10
    assert BUCKET_BOUNDS[-1] == 256.0
    assert all(b == a * 2 for a, b in pairwise(BUCKET_BOUNDS))


# -- properties ------------------------------------------------------------------------

durations = st.one_of(
    st.just(0.0),
    st.floats(min_value=1e-12, max_value=1e7, allow_nan=False),
    st.sampled_from(BUCKET_BOUNDS),
)
#: bucket edges and points between them, some below zero, ascending once sorted
bounds = st.lists(
    st.one_of(
        st.integers(-4 * 40, 4 * 30).map(lambda k: 2.0 ** (k / _SUB)),
        st.floats(min_value=-1.0, max_value=1e8, allow_nan=False),
    ),
    max_size=30,
).map(sorted)


def upper_edge(seconds: float) -> float:
    """The ``le`` edge a sample counts under, by the histogram's definition (0 for 0)."""
    if seconds <= 0.0:
        return 0.0
    index = min(max(math.ceil(math.log2(seconds) * _SUB) - 1 + _OFFSET, 0), _BUCKETS - 1)
    return INF if index == _BUCKETS - 1 else 2.0 ** ((index + 1 - _OFFSET) / _SUB)


@given(samples=st.lists(durations, max_size=400), ask=bounds)
def test_cumulative_counts_are_monotone_and_end_at_the_count(
    samples: list[float], ask: list[float]
) -> None:
    histogram = WaitHistogram()
    for seconds in samples:
        histogram.record(seconds)
    counts = histogram.cumulative([*ask, INF])
    assert counts == sorted(counts)
    assert counts[-1] == histogram.count == len(samples)
    edges = [upper_edge(seconds) for seconds in samples]
    for bound, count in zip(ask, counts, strict=False):
        assert count == sum(1 for edge in edges if edge <= bound)
    assert histogram.summary().cumulative == tuple(histogram.cumulative(BUCKET_BOUNDS))


@given(samples=st.lists(st.floats(min_value=1e-9, max_value=1e6, allow_nan=False), max_size=200))
def test_cumulative_at_a_power_of_two_counts_the_samples_at_or_below_it(
    samples: list[float],
) -> None:
    # away from a bound's own few ulps, where log2 rounds, le is exactly "at or below"
    samples = [s for s in samples if all(abs(s - b) > 1e-9 * b for b in BUCKET_BOUNDS)]
    histogram = WaitHistogram()
    histogram.pending.extend([*samples, *BUCKET_BOUNDS])
    expected = [sum(1 for s in [*samples, *BUCKET_BOUNDS] if s <= b) for b in BUCKET_BOUNDS]
    assert histogram.cumulative(BUCKET_BOUNDS) == expected


@given(left=st.lists(durations, max_size=300), right=st.lists(durations, max_size=300))
def test_merging_is_recording_both_sets_of_samples(left: list[float], right: list[float]) -> None:
    merged, mine, theirs = WaitHistogram(), WaitHistogram(), WaitHistogram()
    for seconds in left:
        mine.record(seconds)
        merged.record(seconds)
    for seconds in right:
        theirs.record(seconds)
        merged.record(seconds)
    mine.merge(theirs)
    merged.fold()
    assert mine.buckets == merged.buckets
    assert (mine.zero, mine.count, mine.max) == (merged.zero, merged.count, merged.max)
    assert math.isclose(mine.total, merged.total, rel_tol=1e-9, abs_tol=1e-12)
