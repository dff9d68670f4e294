"""RateScheduler's rules on hand-built scenarios, in virtual time, and its answers to misuse."""

from __future__ import annotations

import math

import pytest

from prioritize.core import LevelSet, Reason, TicketState
from prioritize.core.budget import RateScheduler, RateTicket
from prioritize.core.budget_policy import BudgetLevelPolicy, BudgetPolicy
from prioritize.errors import TicketStateError

GRANTED, WAITING, SHED = TicketState.GRANTED, TicketState.WAITING, TicketState.SHED


def budget(**knobs: object) -> RateScheduler:
    levels = knobs.pop("levels", {})
    shares = {name: BudgetLevelPolicy(**kn) for name, kn in levels.items()}  # type: ignore[arg-type]
    return RateScheduler(BudgetPolicy(levels=shares, **knobs))  # type: ignore[arg-type]


def run_until(b: RateScheduler, until: float) -> list[tuple[float, RateTicket]]:
    """Fire the adapter's timer until ``until``: the grants, with their times."""
    grants: list[tuple[float, RateTicket]] = []
    while (deadline := b.next_deadline()) is not None and deadline <= until:
        for ticket in b.advance(deadline):
            if ticket.state is GRANTED:
                grants.append((deadline, ticket))  # type: ignore[arg-type]
    return grants


def submit(
    b: RateScheduler, level: str, now: float, tokens: float = 0.0, **kw: object
) -> RateTicket:
    ticket = b.ticket(level, tokens=tokens, **kw)  # type: ignore[arg-type]
    b.submit(ticket, now)
    return ticket


# --- the bucket -------------------------------------------------------------------------


def test_a_full_bucket_grants_its_burst_at_once_then_paces_at_the_rate() -> None:
    b = budget(rpm=60, burst=3)
    tickets = [submit(b, "low", 0.0) for _ in range(6)]
    assert [t.state for t in tickets] == [GRANTED] * 3 + [WAITING] * 3
    grants = run_until(b, 10.0)
    assert [round(at, 6) for at, _ in grants] == [1.0, 2.0, 3.0]
    assert [t for _, t in grants] == tickets[3:]


def test_tokens_and_requests_must_both_fit() -> None:
    b = budget(rpm=600, tpm=600, burst=1)  # 10 requests and 10 tokens a second
    first = submit(b, "low", 0.0, tokens=8)
    second = submit(b, "low", 0.0, tokens=8)
    assert (first.state, second.state) == (GRANTED, WAITING)
    (at, ticket), *_ = run_until(b, 5.0)
    assert ticket is second
    assert at == pytest.approx(0.6)


def test_a_request_larger_than_the_burst_is_shed_at_once() -> None:
    b = budget(tpm=6000, burst=1)  # 100 tokens
    too_big = submit(b, "low", 0.0, tokens=101)
    assert (too_big.state, too_big.reason) == (SHED, Reason.LIMIT)


def test_settle_refunds_an_overestimate_and_debits_an_underestimate() -> None:
    b = budget(tpm=600, burst=10)  # 100 tokens, 10 a second
    over = submit(b, "low", 0.0, tokens=80)
    b.settle(over, 0.0, tokens=20)
    assert b.buckets.level == [pytest.approx(80)]
    under = submit(b, "low", 0.0, tokens=50)
    b.settle(under, 0.0, tokens=110)
    assert b.buckets.level == [pytest.approx(-30)]  # in debt: the next call waits for it
    waiting = submit(b, "low", 0.0, tokens=10)
    assert waiting.state is WAITING
    assert run_until(b, 10.0)[0][0] == pytest.approx(4.0)
    assert b.stats().levels[3].spent["tokens"] == pytest.approx(20 + 110 + 10)


def test_a_429_halves_the_rate_once_per_round_pauses_and_recovers() -> None:
    b = budget(rpm=60, burst=5, recovery=10)
    calls = [submit(b, "low", 0.0) for _ in range(3)]
    b.refused(calls[0], 1.0, retry_after=2.0)
    b.refused(calls[1], 1.0)  # granted before the cut: the same congestion, no second cut
    assert b.buckets.factor == 0.5
    assert b.paused_until == 3.0
    assert b.buckets.level == [0.0]
    later = submit(b, "low", 1.0)
    assert later.state is WAITING
    assert run_until(b, 10)[0][0] == pytest.approx(3.0)  # 2 s paused: 1 request at 0.5/s
    fresh = submit(b, "low", 3.0)
    (at, _), *_ = run_until(b, 10)
    b.refused(fresh, at)  # granted after the cut: a new round, a new cut
    assert b.buckets.factor == pytest.approx((0.5 + at / 10 - 0.1) / 2)  # recovering, halved
    b.advance(30.0)
    assert b.buckets.factor == 1.0
    assert b.stats().per_minute == {"requests": 60.0}


def test_remaining_reported_by_the_provider_lowers_the_bucket() -> None:
    b = budget(tpm=6000, burst=60)
    b.observe(0.0, {"tokens": 250})
    assert b.buckets.level == [250.0]
    b.observe(0.0, {"tokens": 9999})  # never raised: our own count may be the stricter
    assert b.buckets.level == [250.0]


# --- shares between levels ------------------------------------------------------------------


def test_critical_waits_at_most_one_slot_behind_a_low_backlog() -> None:
    b = budget(rpm=60, burst=1)
    for _ in range(100):
        submit(b, "low", 0.0)
    run_until(b, 10.5)
    critical = submit(b, "critical", 10.5)
    (at, ticket), *_ = run_until(b, 12.0)
    assert ticket is critical
    assert at == pytest.approx(11.0)


def test_a_reserved_share_is_found_at_once_after_an_idle_spell() -> None:
    b = budget(rpm=60, burst=10, levels={"critical": {"min": "30%"}})
    for _ in range(50):
        submit(b, "low", 0.0)
    run_until(b, 30.0)  # low has drained everything it may, for 30 s
    assert b.buckets.level[0] == pytest.approx(3.0, abs=1e-6)  # 30 % of a 10-request burst
    assert [submit(b, "critical", 30.0).state for _ in range(3)] == [GRANTED] * 3


def test_a_level_below_its_min_is_served_first_when_it_waits() -> None:
    forever = {"max_wait": math.inf}
    b = budget(rpm=60, burst=2, levels={"low": {"min": "25%", **forever}, "critical": forever})
    for _ in range(200):
        submit(b, "critical", 0.0)
    lows = [submit(b, "low", 0.0) for _ in range(50)]
    grants = run_until(b, 120.0)
    served_low = [t for _, t in grants if t.level.name == "low"]
    # strict order would give critical everything; the min keeps a quarter for low
    assert len(served_low) == pytest.approx(0.25 * len(grants), abs=2)
    assert served_low == lows[: len(served_low)]


def test_an_idle_share_is_lent_to_the_levels_that_wait() -> None:
    b = budget(rpm=60, burst=5, levels={"critical": {"min": "50%"}, "low": {"max_wait": math.inf}})
    lows = [submit(b, "low", 0.0) for _ in range(200)]
    run_until(b, 100.0)
    # 2.5 requests kept for critical; everything else, and the whole refill, goes to low
    assert sum(t.state is GRANTED for t in lows) == 2 + 100


def test_max_caps_a_levels_share_while_others_wait() -> None:
    forever = {"max_wait": math.inf}
    b = budget(rpm=60, burst=8, levels={"high": {"max": "25%", **forever}, "normal": forever})
    highs = [submit(b, "high", 0.0) for _ in range(100)]
    normals = [submit(b, "normal", 0.0) for _ in range(100)]
    run_until(b, 60.0)
    # a quarter of the burst at once (2), then a quarter of the rate; normal gets the rest
    assert sum(t.state is GRANTED for t in highs) == pytest.approx(2 + 15, abs=1)
    assert sum(t.state is GRANTED for t in normals) == pytest.approx(6 + 45, abs=1)


def test_weighted_order_shares_the_rate_by_weight() -> None:
    b = budget(
        rpm=60,
        burst=1,
        order="weighted",
        levels={"high": {"weight": 3, "max_wait": math.inf}, "low": {"max_wait": math.inf}},
    )
    for _ in range(100):
        submit(b, "high", 0.0)
        submit(b, "low", 0.0)
    grants = run_until(b, 80.5)
    high = sum(1 for _, t in grants if t.level.name == "high")
    assert high == pytest.approx(60, abs=2)
    assert len(grants) == 80


def test_flows_take_turns_within_a_level_fifo_within_a_flow() -> None:
    b = budget(rpm=60, burst=1)
    submit(b, "low", 0.0)  # takes the burst
    a = [submit(b, "low", 0.0, flow="a") for _ in range(3)]
    c = [submit(b, "low", 0.0, flow="b") for _ in range(2)]
    order = [t for _, t in run_until(b, 10.0)]
    assert order == [a[0], c[0], a[1], c[1], a[2]]


def test_a_large_request_is_not_overtaken_by_small_ones() -> None:
    b = budget(tpm=600, burst=10)  # 100 tokens, 10 a second
    submit(b, "low", 0.0, tokens=100)
    big = submit(b, "low", 0.0, tokens=90)
    small = [submit(b, "low", 0.0, tokens=5) for _ in range(3)]
    order = [t for _, t in run_until(b, 30.0)]
    assert order[0] is big
    assert order[1:] == small


# --- shedding --------------------------------------------------------------------------------


def test_full_queues_shed_and_evict_the_least_important_newest() -> None:
    b = budget(rpm=60, burst=1, queue=2, levels={"low": {"queue": 1}})
    submit(b, "low", 0.0)
    waiting = submit(b, "low", 0.0)
    over = submit(b, "low", 0.0)
    assert (over.state, over.reason) == (SHED, Reason.QUEUE_FULL)
    submit(b, "high", 0.0)
    high = submit(b, "high", 0.0)  # the total queue is full: low's waiter makes room
    assert high.state is WAITING
    assert (waiting.state, waiting.reason) == (SHED, Reason.EVICTED)
    refused = submit(b, "bulk", 0.0)
    assert (refused.state, refused.reason) == (SHED, Reason.QUEUE_FULL)
    assert refused.retry_after == pytest.approx(3.0)  # 2 high waiting + itself, at 1/s


def test_max_wait_sheds_waiters_and_zero_means_never_wait() -> None:
    b = budget(rpm=60, burst=1, levels={"low": {"max_wait": 2.5}, "bulk": {"max_wait": 0}})
    submit(b, "normal", 0.0)
    for _ in range(5):
        submit(b, "normal", 0.0)
    late = submit(b, "low", 0.0)
    b.advance(2.5)
    assert (late.state, late.reason) == (SHED, Reason.TIMEOUT)
    never = submit(b, "bulk", 3.0)
    assert (never.state, never.reason) == (SHED, Reason.LIMIT)


def test_a_level_with_max_zero_is_always_shed() -> None:
    b = budget(rpm=60, levels={"bulk": {"max": "0%"}})
    shed = submit(b, "bulk", 0.0)
    assert (shed.state, shed.reason, shed.retry_after) == (SHED, Reason.LIMIT, 3600.0)


def test_close_sheds_waiters_and_later_requests_with_shutdown() -> None:
    b = budget(rpm=60, burst=1)
    held = submit(b, "low", 0.0)
    waiter = submit(b, "low", 0.0)
    b.close(0.5)
    later = submit(b, "critical", 1.0)
    assert [waiter.reason, later.reason] == [Reason.SHUTDOWN, Reason.SHUTDOWN]
    b.settle(held, 2.0)
    assert held.state is TicketState.RELEASED
    assert b.in_flight == 0


def test_cancel_withdraws_a_waiter_and_gives_back_a_grant_never_sent() -> None:
    b = budget(rpm=60, burst=2)
    sent = submit(b, "low", 0.0)
    unsent = submit(b, "low", 0.0)
    waiter = submit(b, "low", 0.0)
    b.cancel(waiter, 0.0)
    assert waiter.state is TicketState.CANCELLED
    assert b.waiting == 0
    b.cancel(unsent, 0.0)
    assert unsent.state is TicketState.RELEASED
    assert b.buckets.level == [1.0]
    b.settle(sent, 0.0)


def test_next_deadline_is_none_when_nothing_waits_and_inf_waits_have_no_expiry() -> None:
    b = budget(rpm=60, burst=1, levels={"low": {"max_wait": math.inf}})
    assert b.next_deadline() is None
    submit(b, "low", 0.0)
    submit(b, "low", 0.0)
    assert b.next_deadline() == pytest.approx(1.0)


# --- misuse --------------------------------------------------------------------------------


def test_tokens_must_be_a_number_at_least_zero() -> None:
    b = budget(tpm=1000)
    for bad in (-1, math.nan, math.inf, "10", True):
        with pytest.raises(ValueError, match=r"tokens = .*: expected an estimate, a number ≥ 0"):
            b.ticket("low", tokens=bad)  # type: ignore[arg-type]


def test_settle_refuse_and_submit_check_the_tickets_state() -> None:
    b = budget(rpm=60, burst=1)
    ticket = submit(b, "low", 0.0)
    with pytest.raises(TicketStateError, match="was already submitted"):
        b.submit(ticket, 0.0)
    with pytest.raises(ValueError, match=r"tokens = -5: expected the actual count"):
        b.settle(ticket, 0.0, tokens=-5)
    with pytest.raises(ValueError, match=r"retry_after = -1: expected seconds ≥ 0 or None"):
        b.refused(ticket, 0.0, retry_after=-1)
    b.settle(ticket, 0.0)
    with pytest.raises(TicketStateError, match=r"cannot settle .*only a granted ticket was sent"):
        b.settle(ticket, 0.0)
    with pytest.raises(TicketStateError, match="cannot refuse"):
        b.refused(ticket, 0.0)


def test_a_ticket_of_another_budget_or_level_set_is_refused() -> None:
    b = budget(rpm=60)
    other = RateScheduler(BudgetPolicy(rpm=60, level_set=LevelSet(["gold", "lead"])))
    with pytest.raises(
        TicketStateError, match=r"not a ticket of budget 'budget'.*RateScheduler.ticket"
    ):
        b.submit(other.ticket("lead"), 0.0)


def test_an_unknown_dimension_names_the_ones_limited() -> None:
    b = budget(rpm=60)
    with pytest.raises(ValueError, match=r"budget 'budget' limits \['requests'\], not 'tokens'"):
        b.observe(0.0, {"tokens": 5})
    with pytest.raises(ValueError, match=r"remaining requests = 'x': expected a number"):
        b.observe(0.0, {"requests": "x"})  # type: ignore[dict-item]
