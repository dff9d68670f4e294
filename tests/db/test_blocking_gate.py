"""The blocking gate synchronous pools wait on: the scheduler's decisions, delivered to threads.

A stateful Hypothesis machine runs the gate beside a plain `Scheduler` fed
the same operations, on a manual clock, and checks after every step that
both agree on every ticket and that exactly the decided waiters were woken.
Thread tests then show the waiting itself: a grant wakes its thread, a
timeout or ``max_wait`` sheds it, and an interrupted wait takes nothing.
"""

from __future__ import annotations

import math
import threading

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from prioritize import GatePolicy, LevelPolicy, Reason, Rejected, Scheduler, TicketState
from prioritize.core.levels import DEFAULT_LEVELS
from prioritize.core.tickets import Ticket
from prioritize.db._blocking import BlockingGate, Seat
from tests.db.helpers import until_sync

LEVELS = DEFAULT_LEVELS.names


class ManualClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


POLICY = GatePolicy(
    capacity=3,
    levels={
        "critical": LevelPolicy(min=1, max_wait=5),
        "high": LevelPolicy(max_wait=2),
        "low": LevelPolicy(max=2, queue=2, max_wait=math.inf),
        "bulk": LevelPolicy(max_wait=1),
    },
    queue=6,
    name="db",
)


class GateAgainstScheduler(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
        self.gate = BlockingGate(POLICY, clock=self.clock)
        self.model = Scheduler(POLICY)
        #: (the gate's seat, the model's ticket), in submission order
        self.pairs: list[tuple[Seat, Ticket]] = []
        #: whether each seat queued when requested (by id)
        self.queued: dict[int, bool] = {}

    def _submit(self, level: str, flow: int) -> None:
        ticket = self.model.ticket(level, flow)
        self.model.submit(ticket, self.clock.now)
        if ticket.state is TicketState.SHED:
            with pytest.raises(Rejected) as shed:
                self.gate.request(DEFAULT_LEVELS[level], flow)
            assert shed.value.reason is ticket.reason
            return
        seat = self.gate.request(DEFAULT_LEVELS[level], flow)
        self.pairs.append((seat, ticket))
        self.queued[id(seat)] = seat.state is TicketState.WAITING

    @rule(level=st.sampled_from(LEVELS), flow=st.integers(0, 2))
    def request(self, level: str, flow: int) -> None:
        self._submit(level, flow)

    @precondition(lambda self: any(s.state is TicketState.GRANTED for s, _ in self.pairs))
    @rule(pick=st.integers(0, 50))
    def release(self, pick: int) -> None:
        held = [(s, t) for s, t in self.pairs if s.state is TicketState.GRANTED]
        seat, ticket = held[pick % len(held)]
        self.gate.release(seat)
        self.model.release(ticket, self.clock.now)

    @precondition(lambda self: any(s.state is TicketState.WAITING for s, _ in self.pairs))
    @rule(pick=st.integers(0, 50))
    def withdraw(self, pick: int) -> None:
        waiting = [(s, t) for s, t in self.pairs if s.state is TicketState.WAITING]
        seat, ticket = waiting[pick % len(waiting)]
        self.gate.withdraw(seat)
        self.model.cancel(ticket, self.clock.now)

    @rule(seconds=st.sampled_from([0.5, 1.0, 1.5, 3.0]))
    def expire(self, seconds: float) -> None:
        self.clock.now += seconds
        self.gate.expire()
        self.model.expire(self.clock.now)

    @invariant()
    def agrees_with_the_scheduler(self) -> None:
        for seat, ticket in self.pairs:
            assert (seat.state, seat.reason) == (ticket.state, ticket.reason)
        assert self.gate.scheduler.in_use == self.model.in_use <= POLICY.capacity
        assert self.gate.scheduler.waiting == self.model.waiting

    @invariant()
    def exactly_the_decided_waiters_are_woken(self) -> None:
        # a park is released once: when a queued seat is granted or shed by someone else;
        # a seat granted on request never parks, a withdrawn waiter was not woken
        for seat, _ in self.pairs:
            decided = seat.state not in (TicketState.WAITING, TicketState.CANCELLED)
            assert (not seat.park.locked()) == (self.queued[id(seat)] and decided)


TestGateAgainstScheduler = GateAgainstScheduler.TestCase
TestGateAgainstScheduler.settings = settings(max_examples=150, stateful_step_count=40)


def one_seat(**levels: LevelPolicy) -> BlockingGate:
    return BlockingGate(GatePolicy(capacity=1, levels=levels, name="db"))


def test_a_release_wakes_the_thread_whose_seat_it_granted() -> None:
    gate = one_seat()
    holder = gate.acquire(DEFAULT_LEVELS["normal"])
    got: list[Seat] = []
    thread = threading.Thread(target=lambda: got.append(gate.acquire(DEFAULT_LEVELS["high"])))
    thread.start()
    until_sync(lambda: gate.scheduler.waiting == 1, "the thread queued")
    gate.release(holder)
    thread.join()
    assert got[0].state is TicketState.GRANTED
    assert gate.scheduler.held("high") == 1
    gate.release(got[0])
    assert gate.scheduler.in_use == 0


def test_a_timeout_sheds_the_waiter_and_frees_its_place() -> None:
    gate = one_seat()
    holder = gate.acquire(DEFAULT_LEVELS["normal"])
    with pytest.raises(Rejected) as late:
        gate.acquire(DEFAULT_LEVELS["normal"], timeout=0.01)
    assert (late.value.level, late.value.reason) == ("normal", Reason.TIMEOUT)
    assert gate.scheduler.waiting == 0
    gate.release(holder)
    assert gate.scheduler.in_use == 0


def test_max_wait_sheds_a_waiter_without_a_timer_thread() -> None:
    gate = one_seat(bulk=LevelPolicy(max_wait=0.01))
    holder = gate.acquire(DEFAULT_LEVELS["normal"])
    threads_before = threading.active_count()
    with pytest.raises(Rejected) as late:
        gate.acquire(DEFAULT_LEVELS["bulk"])
    assert late.value.reason is Reason.TIMEOUT
    assert threading.active_count() == threads_before
    gate.release(holder)


def test_a_waiter_woken_at_its_deadline_sheds_the_others_overdue_too() -> None:
    gate = BlockingGate(
        GatePolicy(capacity=1, levels={"bulk": LevelPolicy(max_wait=0.01)}, name="db")
    )
    holder = gate.acquire(DEFAULT_LEVELS["normal"])
    queued = gate.request(DEFAULT_LEVELS["bulk"])  # nobody waits on it: no thread parks here
    with pytest.raises(Rejected):
        gate.acquire(DEFAULT_LEVELS["bulk"])
    assert queued.state is TicketState.SHED
    assert not queued.park.locked()
    gate.release(holder)


def test_an_interrupted_wait_withdraws_and_a_late_grant_is_given_back() -> None:
    gate = one_seat()
    holder = gate.acquire(DEFAULT_LEVELS["normal"])
    seat = gate.request(DEFAULT_LEVELS["normal"])
    gate.release(holder)  # granted while "interrupted" before it could wake
    assert seat.state is TicketState.GRANTED
    gate.withdraw(seat)
    assert gate.scheduler.in_use == 0
    waiting = gate.request(DEFAULT_LEVELS["normal"])
    other = gate.request(DEFAULT_LEVELS["low"])
    gate.withdraw(other)
    assert other.state is TicketState.CANCELLED
    gate.release(waiting)


def test_close_sheds_every_waiter_and_every_later_request() -> None:
    gate = one_seat()
    holder = gate.acquire(DEFAULT_LEVELS["normal"])
    shed: list[Rejected] = []

    def wait() -> None:
        try:
            gate.acquire(DEFAULT_LEVELS["high"])
        except Rejected as exc:
            shed.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    until_sync(lambda: gate.scheduler.waiting == 1, "the thread queued")
    gate.close()
    thread.join()
    assert [e.reason for e in shed] == [Reason.SHUTDOWN]
    with pytest.raises(Rejected) as refused:
        gate.request(DEFAULT_LEVELS["critical"])
    assert refused.value.reason is Reason.SHUTDOWN
    gate.release(holder)
    assert repr(gate) == "<BlockingGate db 0/1 seats, 0 waiting>"
