"""Random operation sequences over random policies, checked after every step.

Two kinds of check: the scheduler must make exactly the decisions of the
naive `reference_model.Model`, and the invariants of docs/concepts.md must hold on the
scheduler's own state. Hypothesis draws how long each run is, so the test
counts the steps it really took and requires at least `MIN_STEPS`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from prioritize.core import GatePolicy, LevelPolicy, LevelSet, Reason, Scheduler, Ticket
from prioritize.core.tickets import TicketState

from .reference_model import Model, ModelTicket

TERMINAL = {TicketState.RELEASED, TicketState.CANCELLED, TicketState.SHED}
ALLOWED = {
    TicketState.NEW: {
        TicketState.WAITING,
        TicketState.GRANTED,
        TicketState.SHED,
        TicketState.CANCELLED,
    },
    # RELEASED straight from WAITING: pulled by take(), a queue's consumer, holding no seat
    TicketState.WAITING: {
        TicketState.GRANTED,
        TicketState.SHED,
        TicketState.CANCELLED,
        TicketState.RELEASED,
    },
    TicketState.GRANTED: {TicketState.RELEASED},
}
FLOWS: list[Hashable | None] = [None, "a", "b", "c"]


@st.composite
def level_policies(draw: st.DrawFn, capacity: int, spare: list[float]) -> LevelPolicy:
    # spare[0]: seats not yet promised as a min (fractional once percentages are used)
    if draw(st.booleans()):
        low: int | str = draw(st.integers(0, math.floor(spare[0])))
        spare[0] -= int(low)
    else:
        pct = draw(st.sampled_from([0, 10, 25, 40]))
        exact = pct * capacity / 100
        low = f"{pct}%" if exact <= spare[0] else 0
        spare[0] -= exact if low else 0
    high = draw(st.one_of(st.none(), st.integers(0, capacity + 1), st.just("50%")))
    if high is not None and isinstance(low, int) and isinstance(high, int) and high < low:
        high = low
    if isinstance(low, str) and isinstance(high, int) and high * 100 < int(low[:-1]) * capacity:
        high = None
    if isinstance(low, int) and high == "50%" and low * 2 > capacity:
        high = None
    return LevelPolicy(
        min=low,
        max=high,
        weight=draw(st.sampled_from([1, 2, 3, 0.5])),
        queue=draw(st.one_of(st.none(), st.integers(0, 4))),
        max_wait=draw(st.sampled_from([0.0, 0.5, 1.0, 2.5, math.inf])),
    )


@st.composite
def gate_policies(draw: st.DrawFn) -> GatePolicy:
    count = draw(st.integers(1, 5))
    level_set = LevelSet([f"l{i}" for i in range(count)])
    capacity = draw(st.integers(1, 6))
    spare = [float(capacity)]
    levels = {}
    for level in level_set:
        if draw(st.integers(0, 3)):
            levels[level.name] = draw(level_policies(capacity, spare))
    return GatePolicy(
        capacity=capacity,
        levels=levels,
        order=draw(st.sampled_from(["strict", "weighted"])),  # type: ignore[arg-type]
        queue=draw(st.integers(0, 12)),
        level_set=level_set,
    )


#: steps every CI run must execute, counted, not estimated from the settings
MIN_STEPS = 5000


class SchedulerMachine(RuleBasedStateMachine):
    #: rule steps executed, across all runs of the machine
    steps = 0

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.tickets: list[Ticket] = []
        self.twins: dict[int, ModelTicket] = {}
        self.seq: dict[int, int] = {}
        self.last_granted: dict[tuple[int, Hashable | None], int] = {}
        self.submitted: dict[int, int] = {}
        self.released: dict[int, int] = {}
        #: ids of tickets a take() pulled: released without ever holding a seat
        self.pulled: set[int] = set()

    @initialize(policy=gate_policies())
    def start(self, policy: GatePolicy) -> None:
        self.scheduler = Scheduler(policy)
        self.model = Model(policy)
        self.before = self.snapshot()

    # -- helpers ----------------------------------------------------------------------

    def snapshot(self) -> tuple[list[int], int, dict[int, TicketState]]:
        held = [lane.held for lane in self.scheduler._lanes]
        return held, self.scheduler.in_use, {id(t): t.state for t in self.tickets}

    def check(self, changed: list[Ticket], expected: list[ModelTicket]) -> None:
        SchedulerMachine.steps += 1
        assert [self.twins[id(t)].key for t in changed] == [m.key for m in expected]
        for t in self.tickets:
            twin = self.twins[id(t)]
            assert t.state.value == twin.state, (t, twin)
            assert t.reason == twin.reason
        held_before, in_use_before, states_before = self.before
        for t in self.tickets:
            old, new = states_before.get(id(t), TicketState.NEW), t.state
            if old is not new:
                assert new in ALLOWED.get(old, set()), f"{t}: {old} -> {new}"
            granted = new is TicketState.GRANTED and old is not TicketState.GRANTED
            pulled = old is TicketState.WAITING and new is TicketState.RELEASED  # by take()
            if granted or pulled:
                key = (t.level.rank, t.flow)
                assert self.seq[id(t)] > self.last_granted.get(key, -1), "FIFO within a flow"
                self.last_granted[key] = self.seq[id(t)]
            if new is TicketState.SHED:
                assert t.reason is not None
                assert t.retry_after is not None
                assert 0 <= t.retry_after < math.inf
        # a grant never pushes a level past max nor the gate past capacity
        for lane, before in zip(self.scheduler._lanes, held_before, strict=True):
            assert lane.held <= max(lane.max, before)
        assert self.scheduler.in_use <= max(self.scheduler.capacity, in_use_before)
        self.before = self.snapshot()

    def new_ticket(self, rank: int, flow: Hashable | None, wait: bool) -> Ticket:
        level = self.scheduler.levels[rank % len(self.scheduler.levels)]
        t = self.scheduler.ticket(level, flow, wait=wait)
        self.twins[id(t)] = ModelTicket(len(self.tickets), level.rank, flow, wait)
        self.seq[id(t)] = len(self.tickets)
        self.tickets.append(t)
        return t

    def in_state(self, state: TicketState) -> list[Ticket]:
        return [t for t in self.tickets if t.state is state]

    # -- rules ------------------------------------------------------------------------

    @rule(rank=st.integers(0, 4), flow=st.sampled_from(FLOWS), wait=st.booleans() | st.just(True))
    def submit(self, rank: int, flow: Hashable | None, wait: bool) -> None:
        t = self.new_ticket(rank, flow, wait)
        self.submitted[t.level.rank] = self.submitted.get(t.level.rank, 0) + 1
        changed = self.scheduler.submit(t, self.now)
        self.check(changed, self.model.submit(self.twins[id(t)], self.now))

    @precondition(lambda self: any(t.state is TicketState.GRANTED for t in self.tickets))
    @rule(pick=st.integers(0, 10**6))
    def release(self, pick: int) -> None:
        granted = self.in_state(TicketState.GRANTED)
        t = granted[pick % len(granted)]
        changed = self.scheduler.release(t, self.now)
        self.check(changed, self.model.release(self.twins[id(t)], self.now))

    @precondition(lambda self: bool(self.tickets))
    @rule(pick=st.integers(0, 10**6))
    def cancel(self, pick: int) -> None:
        t = self.tickets[pick % len(self.tickets)]
        changed = self.scheduler.cancel(t, self.now)
        self.check(changed, self.model.cancel(self.twins[id(t)], self.now))

    @rule()
    def take(self) -> None:
        shed: list[Ticket] = []
        pulled = self.scheduler.take(self.now, shed)
        twin, twins_shed = self.model.take(self.now)
        assert (pulled is None) == (twin is None)
        if pulled is not None:
            self.pulled.add(id(pulled))
        changed = shed if pulled is None else [*shed, pulled]
        self.check(changed, twins_shed if twin is None else [*twins_shed, twin])

    @precondition(lambda self: any(t.state is TicketState.WAITING for t in self.tickets))
    @rule(pick=st.integers(0, 10**6))
    def cancel_waiting(self, pick: int) -> None:
        # most tickets ever made have finished: pick among the waiting for a real removal
        waiting = self.in_state(TicketState.WAITING)
        t = waiting[pick % len(waiting)]
        changed = self.scheduler.cancel(t, self.now)
        self.check(changed, self.model.cancel(self.twins[id(t)], self.now))

    @rule(dt=st.sampled_from([0.0, 0.25, 0.5, 1.0, 3.0]))
    def advance_and_expire(self, dt: float) -> None:
        self.now += dt
        changed = self.scheduler.expire(self.now)
        self.check(changed, self.model.expire(self.now))

    @rule(dt=st.sampled_from([0.5, 1.0, 3.0]))
    def advance_without_expiring(self, dt: float) -> None:
        # the adapter's timer is late: the next call meets waiters already overdue
        self.now += dt
        SchedulerMachine.steps += 1

    @rule(capacity=st.integers(1, 8))
    def resize(self, capacity: int) -> None:
        changed = self.scheduler.resize(capacity, self.now)
        self.check(changed, self.model.resize(capacity, self.now))

    @rule(roll=st.integers(0, 19))
    def close(self, roll: int) -> None:
        if roll == 0:  # rarely: a closed gate ends the interesting part of a run
            changed = self.scheduler.close(self.now)
            self.check(changed, self.model.close(self.now))
        else:
            SchedulerMachine.steps += 1  # a step that changed nothing is still a step

    # -- invariants ---------------------------------------------------------------------

    @invariant()
    def queues_within_bounds(self) -> None:
        s = self.scheduler
        assert s.waiting <= s.policy.queue
        for lane in s._lanes:
            assert lane.waiting <= lane.queue
            assert lane.waiting == len(lane.tickets())
            assert lane.stale == lane.stale_entries()
            assert lane.solo or lane.waiting, "an empty lane starts over in solo mode"
            if lane.solo:  # one flow's waiters, in arrivals alone
                assert not lane.flows
                assert not lane.ring
                assert all(t.flow == lane.solo_key for t in lane.tickets())

    @invariant()
    def work_conserving(self) -> None:
        s = self.scheduler
        free = s.capacity - s.in_use
        if free <= 0:
            return
        unmet = 0
        for lane in s._lanes:
            if lane.waiting:
                blocked = lane.held >= lane.max or free - 1 < unmet
                assert blocked, f"{lane.level} waits while a seat it may take is free"
            unmet += max(0, lane.min - lane.held)

    @invariant()
    def most_important_reservation_never_lent_downwards(self) -> None:
        s = self.scheduler
        held_before = self.before[0]
        top = s._lanes[0]
        others_grew = any(
            lane.held > before for lane, before in zip(s._lanes[1:], held_before[1:], strict=False)
        )
        if others_grew:
            assert s.capacity - s.in_use >= max(0, top.min - top.held)

    @invariant()
    def counters_balance(self) -> None:
        for stats, lane in zip(self.scheduler.stats().levels, self.scheduler._lanes, strict=True):
            rank = lane.level.rank
            assert stats.submitted == self.submitted.get(rank, 0)
            released = [
                t for t in self.tickets if t.level.rank == rank and t.state is TicketState.RELEASED
            ]
            assert stats.released == len(released)
            # a seat given back is a service sample; a take() held no seat
            assert stats.service.count == sum(1 for t in released if id(t) not in self.pulled)
            assert stats.wait.count == stats.granted
            ended = stats.granted + stats.shed_total + stats.cancelled
            assert stats.submitted == ended + stats.waiting
            assert stats.granted == stats.released + stats.in_use
            assert stats.in_use == lane.held
            assert sum(stats.shed.values()) == stats.shed_total
        assert self.scheduler.in_use == sum(lane.held for lane in self.scheduler._lanes)
        assert self.scheduler.waiting == sum(lane.waiting for lane in self.scheduler._lanes)

    @invariant()
    def next_deadline_is_the_oldest_waiter_deadline(self) -> None:
        assert self.scheduler.next_deadline() == self.model.next_deadline()

    @invariant()
    def shed_reasons_are_known(self) -> None:
        for t in self.in_state(TicketState.SHED):
            assert isinstance(t.reason, Reason)


SETTINGS = settings(
    max_examples=200,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_scheduler_matches_the_model_and_keeps_every_invariant() -> None:
    SchedulerMachine.steps = 0
    run_state_machine_as_test(SchedulerMachine, settings=SETTINGS)
    assert SchedulerMachine.steps >= MIN_STEPS, f"only {SchedulerMachine.steps} steps ran"
