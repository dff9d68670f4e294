"""Exact grant orders for every scheduling rule in docs/concepts.md, on virtual time."""

from __future__ import annotations

import math

import pytest

from prioritize import (
    ConfigError,
    GatePolicy,
    LevelPolicy,
    LevelSet,
    Reason,
    Scheduler,
    Ticket,
    TicketState,
    TicketStateError,
)

INF = math.inf


def gate(
    capacity: int, order: str = "strict", queue: int = 1000, **levels: LevelPolicy
) -> Scheduler:
    return Scheduler(GatePolicy(capacity=capacity, levels=levels, order=order, queue=queue))  # type: ignore[arg-type]


def submit(s: Scheduler, level: str, now: float = 0.0, flow: object = None, **kw: bool) -> Ticket:
    t = s.ticket(level, flow=flow, **kw)
    s.submit(t, now)
    return t


def fill(s: Scheduler, level: str, n: int, now: float = 0.0) -> list[Ticket]:
    return [submit(s, level, now) for _ in range(n)]


def names(tickets: list[Ticket]) -> list[str]:
    return [t.level.name for t in tickets]


def test_grants_at_once_while_seats_are_free() -> None:
    s = gate(2)
    a, b, c = fill(s, "bulk", 3)
    assert (a.state, b.state, c.state) == (TicketState.GRANTED,) * 2 + (TicketState.WAITING,)
    assert s.in_use == 2
    assert s.waiting == 1
    assert repr(s) == "<Scheduler gate 2/2 seats, 1 waiting>"


def test_strict_order_serves_the_most_important_waiting_level_first() -> None:
    s = gate(1)
    holder = submit(s, "normal")
    bulk, low, crit, high = (submit(s, lvl, 1.0) for lvl in ("bulk", "low", "critical", "high"))
    order: list[Ticket] = []
    last = holder
    for now in (2.0, 3.0, 4.0, 5.0):
        granted = s.release(last, now)
        assert len(granted) == 1
        order += granted
        last = granted[0]
    assert order == [crit, high, low, bulk]


def test_flows_take_turns_within_a_level_and_stay_fifo_within_a_flow() -> None:
    s = gate(1)
    holder = submit(s, "normal")
    arrivals = [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("c", 1), ("c", 2)]
    tickets = {(f, i): submit(s, "normal", flow=f) for f, i in arrivals}
    served = []
    last = holder
    while s.waiting:
        (last,) = s.release(last, 1.0)
        served.append(next(k for k, t in tickets.items() if t is last))
    assert served == [("a", 1), ("b", 1), ("c", 1), ("a", 2), ("c", 2), ("a", 3)]


def test_a_flow_that_empties_rejoins_the_ring_at_the_back() -> None:
    s = gate(1)
    holder = submit(s, "normal")
    a1 = submit(s, "normal", flow="a")
    b1 = submit(s, "normal", flow="b")
    b2 = submit(s, "normal", flow="b")
    s.cancel(a1, 0.0)
    a2 = submit(s, "normal", flow="a")  # a lost its turn when it emptied
    (g1,) = s.release(holder, 1.0)
    (g2,) = s.release(g1, 1.0)
    (g3,) = s.release(g2, 1.0)
    assert [g1, g2, g3] == [b1, a2, b2]


def test_critical_finds_reserved_seats_after_idle() -> None:
    s = gate(4, critical=LevelPolicy(min=2))
    bulk = fill(s, "bulk", 5)
    assert sum(t.state is TicketState.GRANTED for t in bulk) == 2  # 2 seats kept for critical
    c1, c2 = fill(s, "critical", 2, 10.0)
    assert c1.state is c2.state is TicketState.GRANTED
    assert c1.waited == 0.0


def test_trunk_reservation_protects_only_against_less_important_levels() -> None:
    s = gate(4, high=LevelPolicy(min=2))
    crit = fill(s, "critical", 4)  # more important than high: may borrow high's seats
    assert all(t.state is TicketState.GRANTED for t in crit)
    assert submit(s, "bulk").state is TicketState.WAITING


def test_max_caps_a_level_and_the_seat_goes_to_the_next_level() -> None:
    s = gate(3, critical=LevelPolicy(max=1))
    c1, c2 = fill(s, "critical", 2)
    n1 = submit(s, "normal")
    assert (c1.state, c2.state, n1.state) == (
        TicketState.GRANTED,
        TicketState.WAITING,
        TicketState.GRANTED,
    )
    assert s.in_use == 2  # a seat stays free: the only waiter is at its max
    n2 = submit(s, "normal")
    assert n2.state is TicketState.GRANTED
    assert s.release(c1, 1.0) == [c2]


def test_guarantee_serves_a_level_below_min_before_borrowers() -> None:
    s = gate(4, low=LevelPolicy(min=1))
    running = fill(s, "critical", 3)
    low_1 = submit(s, "low")  # takes its own reserved seat
    assert low_1.state is TicketState.GRANTED
    crit = fill(s, "critical", 3, 1.0)
    low_2 = submit(s, "low", 1.0)
    # low holds its min: a freed critical seat goes to critical's waiter
    assert s.release(running[0], 2.0) == [crit[0]]
    # low drops below its min: it gets the next seat ahead of critical's waiters
    assert s.release(low_1, 3.0) == [low_2]
    assert s.release(running[1], 4.0) == [crit[1]]


def test_guarantee_wins_over_a_borrower_even_when_a_more_important_min_is_idle() -> None:
    # high's 3 reserved seats are borrowed by critical; a freed seat would go to
    # critical anyway, so the level below its min reclaims it instead of starving.
    s = gate(10, critical=LevelPolicy(min=4), high=LevelPolicy(min=3), normal=LevelPolicy(min=2))
    crit = fill(s, "critical", 10)
    crit_waiting = fill(s, "critical", 5, 1.0)
    normal = submit(s, "normal", 1.0)
    assert normal.state is TicketState.WAITING
    assert s.release(crit[0], 2.0) == [normal]
    assert s.release(crit[1], 3.0) == [crit_waiting[0]]


def test_a_level_with_min_is_not_starved_by_critical_at_full_capacity() -> None:
    s = gate(4, critical=LevelPolicy(max_wait=INF), low=LevelPolicy(min=1, max_wait=INF))
    running = fill(s, "critical", 4)
    low_served = 0
    now = 0.0
    low_tickets = fill(s, "low", 50)
    for _ in range(200):
        now += 1.0
        fill(s, "critical", 2, now)  # critical keeps arriving faster than it is served
        done = running.pop(0)
        for t in s.release(done, now):
            running.append(t)
            low_served += t.level.name == "low"
    assert s.held("low") == 1  # low always holds its reserved seat
    assert low_served >= 40  # ...and gets every seat its own releases free
    assert sum(t.state is TicketState.GRANTED for t in low_tickets) >= 1


def test_weighted_order_shares_contended_seats_by_weight() -> None:
    s = gate(
        1,
        order="weighted",
        high=LevelPolicy(weight=3, max_wait=INF),
        bulk=LevelPolicy(weight=1, max_wait=INF),
    )
    holder = submit(s, "normal")
    fill(s, "high", 20)
    fill(s, "bulk", 20)
    served: list[str] = []
    last = holder
    for i in range(16):
        (last,) = s.release(last, float(i))
        served.append(last.level.name)
    assert served.count("high") == 12
    assert served.count("bulk") == 4
    assert served[:4] == ["high", "bulk", "high", "high"]


def test_weighted_level_returning_from_idle_gets_no_hoarded_credit() -> None:
    s = gate(1, order="weighted", high=LevelPolicy(max_wait=INF), low=LevelPolicy(max_wait=INF))
    last = submit(s, "high")
    fill(s, "high", 30)
    for i in range(20):  # only high waits: its pass advances
        (last,) = s.release(last, float(i))
    fill(s, "low", 10, 20.0)
    served = []
    for i in range(6):
        (last,) = s.release(last, 21.0 + i)
        served.append(last.level.name)
    assert served.count("low") == 3  # equal weights: alternate, not low six times


def test_full_queue_evicts_the_newest_waiter_of_the_least_important_level() -> None:
    s = gate(1, queue=3)
    submit(s, "normal")
    old_bulk, new_bulk = fill(s, "bulk", 2)
    low = submit(s, "low")
    high = submit(s, "high", 1.0)
    assert high.state is TicketState.WAITING
    assert new_bulk.state is TicketState.SHED
    assert new_bulk.reason is Reason.EVICTED
    assert old_bulk.state is low.state is TicketState.WAITING


def test_full_queue_rejects_an_arrival_of_the_least_important_waiting_level() -> None:
    s = gate(1, queue=2)
    submit(s, "normal")
    fill(s, "low", 2)
    changed = s.submit(t := s.ticket("low"), 0.0)
    assert changed == [t]
    assert t.reason is Reason.QUEUE_FULL
    bulk = submit(s, "bulk")
    assert bulk.reason is Reason.QUEUE_FULL


def test_a_full_level_queue_rejects_its_own_arrivals() -> None:
    s = gate(1, bulk=LevelPolicy(queue=1))
    submit(s, "normal")
    assert submit(s, "bulk").state is TicketState.WAITING
    assert submit(s, "bulk").reason is Reason.QUEUE_FULL
    assert submit(s, "low").state is TicketState.WAITING


def test_a_level_that_never_waits_is_shed_with_limit() -> None:
    s = gate(1, bulk=LevelPolicy(max_wait=0))
    submit(s, "normal")
    assert submit(s, "bulk").reason is Reason.LIMIT
    assert submit(s, "high", wait=False).reason is Reason.LIMIT
    assert s.waiting == 0


def test_a_level_with_max_0_is_shed_at_once_instead_of_queueing() -> None:
    s = gate(2, low=LevelPolicy(max=0, max_wait=INF))
    t = submit(s, "low")
    assert t.reason is Reason.LIMIT
    assert s.waiting == 0
    assert s.next_deadline() is None


def test_waiters_past_max_wait_are_shed_with_timeout() -> None:
    s = gate(1, low=LevelPolicy(max_wait=2.0), bulk=LevelPolicy(max_wait=5.0))
    holder = submit(s, "normal")
    low = submit(s, "low", 1.0)
    bulk = submit(s, "bulk", 1.5)
    assert s.next_deadline() == 3.0
    assert s.expire(2.9) == []
    assert s.expire(3.0) == [low]
    assert low.reason is Reason.TIMEOUT
    assert s.next_deadline() == 6.5
    assert s.expire(10.0) == [bulk]
    assert s.next_deadline() is None
    assert s.release(holder, 11.0) == []


def test_a_late_timer_does_not_grant_an_expired_waiter() -> None:
    s = gate(1, low=LevelPolicy(max_wait=2.0))
    holder = submit(s, "normal")
    stale = submit(s, "low", 0.0)
    fresh = submit(s, "low", 5.0)
    assert s.release(holder, 6.0) == [stale, fresh]
    assert stale.reason is Reason.TIMEOUT
    assert fresh.state is TicketState.GRANTED


def test_retry_after_follows_queue_length_over_completion_rate() -> None:
    s = gate(1, normal=LevelPolicy(max_wait=INF), queue=10)
    last = submit(s, "normal")
    fill(s, "normal", 10)
    now = 0.0
    for _ in range(200):  # 10 completions per second, queue kept full
        now += 0.1
        (last,) = s.release(last, now)
        submit(s, "normal", now)
    assert s.completion_rate(now) == pytest.approx(10.0, rel=0.05)
    shed = submit(s, "normal", now)
    assert shed.reason is Reason.QUEUE_FULL
    # 10 waiting ahead + itself, served at 10 per second
    assert shed.retry_after == pytest.approx(1.1, rel=0.05)


def test_retry_after_has_a_fallback_before_anything_completed() -> None:
    s = gate(1, queue=0)
    submit(s, "normal")
    assert submit(s, "normal").retry_after == 1.0


def test_growing_capacity_grants_waiters() -> None:
    s = gate(1)
    submit(s, "normal")
    waiting = fill(s, "normal", 3)
    assert s.resize(3, 1.0) == waiting[:2]
    assert s.capacity == 3


def test_shrinking_capacity_revokes_nothing_and_drains_first() -> None:
    s = gate(4)
    held = fill(s, "normal", 4)
    waiter = submit(s, "normal")
    assert s.resize(2, 1.0) == []
    assert s.in_use == 4
    assert s.release(held[0], 2.0) == []
    assert s.release(held[1], 2.0) == []
    assert s.release(held[2], 2.0) == [waiter]


def test_percentages_are_resolved_again_after_a_resize() -> None:
    s = gate(10, critical=LevelPolicy(min="40%"), bulk=LevelPolicy(max="20%"))
    assert (s.limits("critical").min, s.limits("bulk").max) == (4, 2)
    s.resize(20, 0.0)
    assert (s.limits("critical").min, s.limits("bulk").max) == (8, 4)


def test_whole_number_mins_shrink_from_the_least_important_level_when_capacity_falls() -> None:
    s = gate(6, critical=LevelPolicy(min=3), normal=LevelPolicy(min=2), bulk=LevelPolicy(min=1))
    s.resize(4, 0.0)
    assert [s.limits(n).min for n in ("critical", "normal", "bulk")] == [3, 1, 0]


def test_resize_rejects_a_capacity_below_one() -> None:
    s = gate(2)
    with pytest.raises(ConfigError, match=r"gates.gate.capacity: 0 is not a whole number ≥ 1"):
        s.resize(0, 0.0)


def test_close_sheds_waiters_and_later_arrivals_with_shutdown() -> None:
    s = gate(1)
    holder = submit(s, "normal")
    waiters = fill(s, "high", 2)
    assert s.close(1.0) == waiters
    assert all(t.reason is Reason.SHUTDOWN for t in waiters)
    assert submit(s, "critical", 2.0).reason is Reason.SHUTDOWN
    assert s.release(holder, 3.0) == []
    assert s.is_closed


def test_cancel_withdraws_a_waiter_and_gives_back_a_granted_seat() -> None:
    s = gate(1)
    holder = submit(s, "normal")
    w1, w2 = fill(s, "normal", 2)
    assert s.cancel(w1, 1.0) == []
    assert w1.state is TicketState.CANCELLED
    assert s.cancel(holder, 2.0) == [w2]  # a cancel racing a grant releases the seat
    assert holder.state is TicketState.RELEASED
    assert s.cancel(w1, 3.0) == []  # finished tickets are left alone


def test_stats_count_every_outcome_per_level() -> None:
    s = gate(1, queue=1, low=LevelPolicy(max_wait=1.0))
    holder = submit(s, "normal")
    submit(s, "low")
    submit(s, "bulk")  # queue full
    s.expire(5.0)
    s.release(holder, 6.0)
    stats = s.stats()
    low = stats.level("low")
    assert (low.submitted, low.granted, low.waiting, low.shed[Reason.TIMEOUT]) == (1, 0, 0, 1)
    assert stats.level("bulk").shed[Reason.QUEUE_FULL] == 1
    assert stats.level("normal").released == 1
    assert stats.in_use == 0


def test_wait_summary_reports_quantiles_of_waits() -> None:
    s = gate(1, normal=LevelPolicy(max_wait=INF))
    last = submit(s, "normal")
    fill(s, "normal", 100)
    for i in range(100):
        (last,) = s.release(last, float(i + 1))
    wait = s.stats().level("normal").wait
    assert wait.count == 101
    assert wait.max == 100.0
    assert wait.p50 == pytest.approx(50.0, rel=0.2)
    assert wait.p99 == pytest.approx(99.0, rel=0.2)


# -- the source documents' three configurations ---------------------------------------


def test_reservations_40_30_20_10_with_higher_levels_borrowing() -> None:
    s = gate(
        10,
        critical=LevelPolicy(min="40%"),
        high=LevelPolicy(min="30%"),
        normal=LevelPolicy(min="20%"),
        low=LevelPolicy(min="10%"),
    )
    lows = fill(s, "low", 5)
    assert s.held("low") == 1  # only its own 10 %: the rest is reserved above it
    normals = fill(s, "normal", 5)
    assert s.held("normal") == 2
    crits = fill(s, "critical", 8)
    assert s.held("critical") == 7  # its 4 plus high's 3, borrowed while high is idle
    highs = fill(s, "high", 2, 1.0)
    assert all(t.state is TicketState.WAITING for t in highs)
    # high is below its min: it gets each freed seat before critical's waiter
    assert s.release(crits[0], 2.0) == [highs[0]]
    assert s.release(crits[1], 3.0) == [highs[1]]
    assert s.release(crits[2], 4.0) == [crits[7]]
    assert all(t.state is TicketState.WAITING for t in lows[1:] + normals[2:])


def test_wip_limits_8_4_2() -> None:
    tiers = LevelSet(["high", "medium", "low"])
    wip = {"high": LevelPolicy(max=8), "medium": LevelPolicy(max=4), "low": LevelPolicy(max=2)}
    s = Scheduler(GatePolicy(capacity=20, level_set=tiers, levels=wip))
    batches = {level: fill(s, level, 10) for level in ("low", "medium", "high")}
    assert [s.held(lvl) for lvl in ("high", "medium", "low")] == [8, 4, 2]
    assert s.in_use == 14  # six seats stay free: every waiter is at its WIP limit
    # a completion frees WIP for its own level only
    assert s.release(batches["medium"][0], 1.0) == [batches["medium"][4]]
    assert s.release(batches["low"][0], 1.0) == [batches["low"][2]]


def test_dedicated_per_tier_pools_4_2_1() -> None:
    tiers = LevelSet(["gold", "silver", "bronze"])
    pools = {
        "gold": LevelPolicy(min=4, max=4),
        "silver": LevelPolicy(min=2, max=2),
        "bronze": LevelPolicy(min=1, max=1),
    }
    s = Scheduler(GatePolicy(capacity=7, level_set=tiers, levels=pools))
    gold = fill(s, "gold", 10)
    assert s.held("gold") == 4  # cannot use the other tiers' workers even when idle
    bronze = fill(s, "bronze", 3)
    silver = fill(s, "silver", 3)
    assert [s.held(t) for t in ("gold", "silver", "bronze")] == [4, 2, 1]
    assert s.release(gold[0], 1.0) == [gold[4]]
    assert s.release(bronze[0], 1.0) == [bronze[1]]
    assert silver[2].state is TicketState.WAITING


# -- misuse ---------------------------------------------------------------------------


def test_submitting_a_ticket_twice_is_an_error() -> None:
    s = gate(1)
    t = submit(s, "normal")
    with pytest.raises(TicketStateError, match=r"was already submitted; submit only new tickets"):
        s.submit(t, 1.0)


def test_releasing_a_ticket_without_a_seat_is_an_error() -> None:
    s = gate(1)
    submit(s, "normal")
    waiter = submit(s, "normal")
    with pytest.raises(TicketStateError, match=r"cannot release .* only a granted ticket"):
        s.release(waiter, 1.0)


def test_a_ticket_of_another_level_set_is_refused() -> None:
    s = gate(1)
    other = Scheduler(GatePolicy(capacity=1, level_set=LevelSet(["a", "b"])))
    with pytest.raises(TicketStateError, match=r"not one of gate 'gate''s levels"):
        s.submit(other.ticket("b"), 0.0)


def test_time_going_backwards_is_treated_as_the_last_time_seen() -> None:
    s = gate(1, normal=LevelPolicy(max_wait=1.0))
    submit(s, "normal", 10.0)
    late = submit(s, "normal", 5.0)  # a stale clock reading
    assert late.submitted_at == 10.0
    assert late.deadline == 11.0


def test_every_bad_level_name_is_its_own_problem() -> None:
    with pytest.raises(ConfigError) as info:
        LevelSet(["Gold", "silver", "silver"])
    assert [str(p) for p in info.value.problems] == [
        "levels: level name 'Gold' is not accepted: use 1-32 lowercase letters, digits, "
        "'_' or '-', starting with a letter",
        "levels: level name 'silver' appears twice",
    ]


def test_policy_warns_about_levels_that_can_never_hold_a_seat() -> None:
    policy = GatePolicy(
        capacity=4,
        levels={
            "critical": LevelPolicy(min=2),
            "high": LevelPolicy(min=2),
            "low": LevelPolicy(min=0),
            "bulk": LevelPolicy(max=0),
        },
    )
    assert [str(w) for w in policy.warnings()] == [
        "gates.gate.levels.normal: can never hold a seat: the mins of the levels above it "
        "take all 4 seats; give it a min, or lower theirs",
        "gates.gate.levels.low: can never hold a seat: the mins of the levels above it "
        "take all 4 seats; give it a min, or lower theirs",
        "gates.gate.levels.bulk: max is 0: every request of this level is shed",
    ]
    s = Scheduler(policy)
    stranded = submit(s, "low")
    assert stranded.state is TicketState.WAITING  # the warning is true: no seat ever comes
    assert s.in_use == 0


def test_a_sensible_policy_has_no_warnings() -> None:
    policy = GatePolicy(capacity=10, levels={"critical": LevelPolicy(min="40%")})
    assert policy.warnings() == []


def test_retry_after_is_offered_for_adapters_that_refuse_requests_themselves() -> None:
    s = gate(1, queue=10)
    last = submit(s, "normal")
    fill(s, "normal", 4)
    now = 0.0
    for _ in range(40):  # 10 completions per second, 4 kept waiting
        now += 0.1
        (last,) = s.release(last, now)
        submit(s, "normal", now)
    assert s.retry_after("normal", now) == pytest.approx(0.5, rel=0.05)  # (4 + 1) / 10
    assert s.retry_after("critical", now) == pytest.approx(0.1, rel=0.05)  # nothing ahead
