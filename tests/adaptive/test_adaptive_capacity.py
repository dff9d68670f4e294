"""AdaptiveCapacity: the scheduler follows the controller, and a falling limit keeps priorities."""

from __future__ import annotations

import math

import pytest

from prioritize import GatePolicy, LevelPolicy, LevelSet, Scheduler, TicketState, TicketStateError
from prioritize.adaptive import AIMD, AdaptiveCapacity, Gradient

LEVELS = LevelSet(["critical", "high", "normal", "low"])


def test_observe_resizes_the_scheduler_and_returns_the_grants_when_the_limit_grows() -> None:
    sched = Scheduler(GatePolicy(capacity=2))
    adaptive = AdaptiveCapacity(sched, AIMD(initial=2, min_limit=1, window=0.0, window_samples=1))
    tickets = [sched.ticket("normal") for _ in range(4)]
    for t in tickets:
        sched.submit(t, now=0.0)
    assert [t.state for t in tickets[2:]] == [TicketState.WAITING] * 2
    granted = adaptive.observe(now=1.0, rtt=0.05)  # fast, 2 of 2 in use: + 1 seat
    assert granted == [tickets[2]]
    assert sched.capacity == 3 == adaptive.limit


def test_observe_changes_nothing_while_the_limit_holds() -> None:
    sched = Scheduler(GatePolicy(capacity=10))
    adaptive = AdaptiveCapacity(sched, AIMD(initial=10, window=1.0, window_samples=10))
    assert adaptive.observe(now=0.0, rtt=0.05) == []
    assert sched.capacity == 10


def test_observe_brings_a_mismatched_scheduler_to_the_limit() -> None:
    sched = Scheduler(GatePolicy(capacity=50))
    adaptive = AdaptiveCapacity(sched, Gradient(initial=20, min_limit=4))
    adaptive.observe(now=0.0, rtt=0.05)  # the first sample starts the probe, at min
    assert sched.capacity == 4


def test_release_reports_the_rtt_since_the_grant_and_resizes_after() -> None:
    sched = Scheduler(GatePolicy(capacity=1))
    aimd = AIMD(initial=1, min_limit=1, max_rtt=0.5, window=0.0, window_samples=1)
    adaptive = AdaptiveCapacity(sched, aimd)
    first, second, third = (sched.ticket("normal") for _ in range(3))
    for t in (first, second, third):
        sched.submit(t, now=0.0)
    # first held its seat 0.1 s: fast, so the limit grows to 2 and third gets the new seat
    assert adaptive.release(first, now=0.1) == [second, third]
    assert aimd.rtt == pytest.approx(0.1)
    assert sched.capacity == 2


def test_a_dropped_request_shrinks_the_gate() -> None:
    sched = Scheduler(GatePolicy(capacity=10))
    adaptive = AdaptiveCapacity(sched, AIMD(initial=10, window=0.0, window_samples=1))
    held = [sched.ticket("normal") for _ in range(10)]
    for t in held:
        sched.submit(t, now=0.0)
    assert adaptive.release(held[0], now=1.0, dropped=True) == []
    assert sched.capacity == 9


def test_when_the_limit_falls_the_least_important_levels_lose_their_seats_first() -> None:
    # Four levels with a reservation of 4 seats each; 20 seats, weighted order, so
    # at 20 seats every level holds 5. The limit then halves to 10: reservations
    # no longer fit, so the least important give theirs up first (low's, then half
    # of normal's), and as the old holders finish, the seats go back to the levels
    # still reserved, none to low. No seat is revoked on the way.
    policy = GatePolicy(
        capacity=20,
        level_set=LEVELS,
        order="weighted",
        levels={name: LevelPolicy(min=4, max_wait=float("inf")) for name in LEVELS.names},
    )
    sched = Scheduler(policy)
    aimd = AIMD(initial=20, backoff=0.5, window=50.0, window_samples=1)
    adaptive = AdaptiveCapacity(sched, aimd)
    submitted = [sched.ticket(name) for _ in range(30) for name in LEVELS.names]
    for ticket in submitted:
        sched.submit(ticket, now=0.0)
    holders = [t for t in submitted if t.state is TicketState.GRANTED]
    assert [sched.held(name) for name in LEVELS.names] == [5, 5, 5, 5]

    adaptive.observe(now=0.0, rtt=0.05)  # the first window closes on its count: 21
    assert adaptive.observe(now=60.0, rtt=0.05, dropped=True) == []  # halves: 10
    assert sched.capacity == 10
    assert [sched.limits(name).min for name in LEVELS.names] == [4, 4, 2, 0]

    grants = []
    for i, ticket in enumerate(holders):  # the next window cannot close before t = 110
        for granted in adaptive.release(ticket, now=61.0 + i * 0.1):
            assert granted.state is TicketState.GRANTED
            grants.append(granted.level.name)
    assert sched.capacity == 10
    after = [sched.held(name) for name in LEVELS.names]
    assert after == [4, 4, 2, 0]
    assert "low" not in grants  # no seat went back to low once the limit fell
    lost = [5 - held for held in after]
    assert lost == sorted(lost) == [1, 1, 3, 5]  # the less important, the more it lost


def test_repr_shows_limit_and_seats() -> None:
    sched = Scheduler(GatePolicy(capacity=20, name="api"))
    adaptive = AdaptiveCapacity(sched, AIMD(initial=20))
    assert repr(adaptive) == "<AdaptiveCapacity api limit 20, 0/20 seats, 0 waiting>"


def test_a_falling_limit_takes_effect_before_the_freed_seat_is_handed_out() -> None:
    sched = Scheduler(GatePolicy(capacity=4))
    adaptive = AdaptiveCapacity(sched, AIMD(initial=4, min_limit=1, window=0.0, window_samples=1))
    held = [sched.ticket("normal") for _ in range(4)]
    waiter = sched.ticket("normal")
    for t in [*held, waiter]:
        sched.submit(t, now=0.0)
    assert adaptive.release(held[0], now=1.0, dropped=True) == []  # 4 -> 3 seats: none free
    assert waiter.state is TicketState.WAITING
    assert (sched.capacity, sched.in_use) == (3, 3)


def test_releasing_a_ticket_without_a_seat_raises_and_teaches_the_controller_nothing() -> None:
    sched = Scheduler(GatePolicy(capacity=1))
    aimd = AIMD(initial=1, min_limit=1, window=0.0, window_samples=1)
    adaptive = AdaptiveCapacity(sched, aimd)
    holder, waiter = sched.ticket("normal"), sched.ticket("normal")
    sched.submit(holder, now=0.0)
    sched.submit(waiter, now=0.0)
    with pytest.raises(TicketStateError):
        adaptive.release(waiter, now=1.0, dropped=True)
    assert aimd.limit == 1
    assert math.isnan(aimd.rtt)
