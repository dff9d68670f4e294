"""The wait histogram: batched folding must bucket exactly as one sample at a time would."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from prioritize.core.stats import _BUCKETS, _OFFSET, _SUB, _UPPER, WaitHistogram


def reference_buckets(samples: list[float]) -> tuple[list[int], int]:
    """Per-sample bucketing, the definition: ``ceil(4·log2(w)) - 1 + 120``, clamped.

    A bucket is closed above, as a Prometheus ``le`` bucket: a sample on an edge
    counts in the bucket the edge ends.
    """
    buckets = [0] * _BUCKETS
    zero = 0
    for seconds in samples:
        if seconds <= 0.0:
            zero += 1
            continue
        index = math.ceil(math.log2(seconds) * _SUB) - 1 + _OFFSET
        buckets[min(max(index, 0), _BUCKETS - 1)] += 1
    return buckets, zero


# Waits from zero to beyond the top bucket, plus values sitting exactly on and
# one float either side of bucket boundaries, where rounding could disagree.
boundary = st.sampled_from(_UPPER).flatmap(
    lambda b: st.sampled_from([b, math.nextafter(b, 0.0), math.nextafter(b, math.inf)])
)
waits = st.one_of(
    st.just(0.0),
    st.floats(min_value=1e-12, max_value=1e7, allow_nan=False),
    boundary,
)


@given(batches=st.lists(st.lists(waits, max_size=300), max_size=6))
def test_folding_in_batches_buckets_every_sample_as_the_definition(
    batches: list[list[float]],
) -> None:
    histogram = WaitHistogram()
    for batch in batches:
        histogram.pending.extend(batch)
        histogram.fold()
    samples = [s for batch in batches for s in batch]
    buckets, zero = reference_buckets(samples)
    assert histogram.buckets == buckets
    assert histogram.zero == zero
    assert histogram.count == len(samples)
    assert histogram.max == max(samples, default=0.0)
    assert math.isclose(histogram.total, math.fsum(samples), rel_tol=1e-9, abs_tol=1e-12)


@given(samples=st.lists(st.floats(min_value=1e-6, max_value=1e3), min_size=1, max_size=500))
def test_a_quantile_is_within_one_bucket_above_the_exact_value(samples: list[float]) -> None:
    histogram = WaitHistogram()
    for seconds in samples:
        histogram.record(seconds)
    ordered = sorted(samples)
    for q in (0.5, 0.95, 0.99):
        exact = ordered[max(math.ceil(q * len(ordered)) - 1, 0)]
        reported = histogram.quantile(q)
        assert exact <= reported * (1 + 1e-12)
        assert reported <= min(exact * 2 ** (1 / _SUB), max(samples)) * (1 + 1e-12)


def test_samples_a_few_ulps_either_side_of_every_bucket_boundary_land_as_defined() -> None:
    # log2 rounds either way near most boundaries, so the definition puts a few
    # values a few ulps off the float bound on the other side: fold must agree.
    samples = []
    for bound in _UPPER:
        below = above = bound
        samples += [bound * 0.95, bound, bound * 1.05]
        for _ in range(8):
            below, above = math.nextafter(below, 0.0), math.nextafter(above, math.inf)
            samples += [below, above]
    histogram = WaitHistogram()
    histogram.pending.extend(samples)
    histogram.fold()
    assert histogram.buckets == reference_buckets(samples)[0]


def test_zero_waits_count_but_do_not_move_the_quantiles_of_real_waits() -> None:
    histogram = WaitHistogram()
    histogram.pending.extend([0.0] * 10 + [0.5] * 90)
    histogram.fold()
    assert histogram.zero == 10
    assert histogram.quantile(0.05) == 0.0
    assert 0.5 <= histogram.quantile(0.5) <= 0.5 * 2 ** (1 / _SUB)
    assert histogram.summary().count == 100
