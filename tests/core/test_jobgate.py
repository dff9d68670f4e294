"""JobGate decides as the Scheduler grants, from nothing but a broker's counts.

The decisive check runs a `Scheduler` (the reference) and a `JobGate` in
lockstep over random policies; the exact examples below it pin the
properties a job broker is built for (global WIP limits, no starvation below
``min``, weighted shares) and the errors a broker sees when it misuses the gate.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from prioritize.core import (
    GatePolicy,
    JobGate,
    LevelPolicy,
    LevelSet,
    LevelSnapshot,
    Order,
    Scheduler,
    Ticket,
    TicketState,
)
from prioritize.errors import ConfigError

from .test_scheduler_stateful import gate_policies


def unbounded(policy: GatePolicy, weighted: bool) -> GatePolicy:
    """The policy with nothing shed while waiting: a broker keeps every job it accepts.

    Queue bounds and ``max_wait`` are the Scheduler's admission control, not
    the decision JobGate shares with it; ``now`` stays 0, so the default 30 s
    never expires either. ``weighted`` forces weighted order, which has the
    most state to get wrong.
    """
    levels = {
        name: replace(lp, queue=None, max_wait=math.inf) for name, lp in policy.levels.items()
    }
    order = Order.WEIGHTED if weighted else policy.order
    return replace(policy, levels=levels, queue=10**9, order=order)


def snapshot(queued: list[int], running: list[int]) -> list[LevelSnapshot]:
    return [LevelSnapshot(q, r) for q, r in zip(queued, running, strict=True)]


#: steps every run must execute, counted, not estimated from the settings
MIN_STEPS = 3000


class LockstepMachine(RuleBasedStateMachine):
    """A broker's counts and a JobGate beside a Scheduler with the same policy.

    The correspondence. A Scheduler seat is a running job (the global WIP)
    and a waiting ticket is a queued job. The Scheduler is work-conserving:
    every call grants until no waiter is eligible. The broker matches it when
    its workers reserve whenever they have a free slot, so every step that
    can free a seat or add a job ends with *drain*: workers call
    `JobGate.reserve` on the counts, starting the job of the level it names
    (queued - 1, running + 1), until it answers None. The levels drain
    starts, in order, must be the levels of the tickets the Scheduler call
    granted, in order (so None at once ⇔ nothing granted):

    * enqueue ⇔ `Scheduler.submit` (granted at once, queued, or granted
      among the waiters it joins);
    * a job finishes ⇔ `Scheduler.release` of a ticket of that level;
    * a queued job is cancelled ⇔ `Scheduler.cancel` of a waiting ticket;
    * an idle worker polls ⇔ nothing: the Scheduler has nothing to grant.

    A job of a level with ``max = 0`` stays queued in the broker while the
    Scheduler sheds its ticket: JobGate must never start it, nor count it
    as waiting. Each reserve runs as a broker would: on a `with_state` copy
    of the stored state, `next_level` first (it must agree and change
    nothing), and the state stored afterwards.
    """

    steps = 0

    def __init__(self) -> None:
        super().__init__()
        self.holders: list[Ticket] = []

    @initialize(policy=st.builds(unbounded, gate_policies(), st.booleans()))
    def start(self, policy: GatePolicy) -> None:
        self.scheduler = Scheduler(policy)
        self.gate = JobGate(policy)
        self.row = self.gate.state()
        n = len(policy.level_set)
        self.queued = [0] * n
        self.running = [0] * n

    def drain(self) -> list[int]:
        started: list[int] = []
        while True:
            snap = snapshot(self.queued, self.running)
            gate = self.gate.with_state(self.row)
            expected = gate.next_level(snap)
            assert gate.state() == self.row, "next_level changed the state"
            rank = gate.reserve(snap)
            assert rank == expected
            self.row = gate.state()
            if rank is None:
                return started
            assert self.queued[rank] > 0
            self.queued[rank] -= 1
            self.running[rank] += 1
            started.append(rank)
            assert len(started) <= self.scheduler.capacity, "drain never ends"

    def check(self, changed: list[Ticket]) -> None:
        LockstepMachine.steps += 1
        granted = [t for t in changed if t.state is TicketState.GRANTED]
        self.holders += granted
        assert self.drain() == [t.level.rank for t in granted]

    @rule(rank=st.integers(0, 4))
    def enqueue(self, rank: int) -> None:
        level = self.scheduler.levels[rank % len(self.scheduler.levels)]
        self.queued[level.rank] += 1
        self.check(self.scheduler.submit(self.scheduler.ticket(level), 0.0))

    @rule(ranks=st.lists(st.integers(0, 4), min_size=2, max_size=6))
    def enqueue_several(self, ranks: list[int]) -> None:
        # queues build up faster than seats free: weighted order gets turns to share
        for rank in ranks:
            self.enqueue(rank)

    @precondition(lambda self: bool(self.holders))
    @rule(pick=st.integers(0, 10**6))
    def finish(self, pick: int) -> None:
        ticket = self.holders.pop(pick % len(self.holders))
        self.running[ticket.level.rank] -= 1
        self.check(self.scheduler.release(ticket, 0.0))

    @precondition(lambda self: bool(self.holders))
    @rule(picks=st.lists(st.integers(0, 10**6), min_size=2, max_size=6))
    def finish_several(self, picks: list[int]) -> None:
        # many turns in a row: stride positions drift apart, levels go idle and return
        for pick in picks:
            if self.holders:
                self.finish(pick)

    @precondition(lambda self: bool(self.scheduler.waiting))
    @rule(pick=st.integers(0, 10**6))
    def cancel_queued(self, pick: int) -> None:
        waiting = [t for lvl in self.scheduler.levels for t in self.scheduler.waiting_tickets(lvl)]
        ticket = waiting[pick % len(waiting)]
        self.queued[ticket.level.rank] -= 1
        self.check(self.scheduler.cancel(ticket, 0.0))

    @rule()
    def idle_worker_polls(self) -> None:
        self.check([])

    @invariant()
    def counts_agree(self) -> None:
        for level in self.scheduler.levels:
            rank = level.rank
            assert self.running[rank] == self.scheduler.held(level)
            limits = self.gate.limits(level)
            assert self.running[rank] <= limits.max
            if limits.max:
                assert self.queued[rank] == self.scheduler.waiting_at(level)
        assert sum(self.running) <= self.gate.capacity


LOCKSTEP = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_jobgate_starts_the_jobs_the_scheduler_grants() -> None:
    LockstepMachine.steps = 0
    run_state_machine_as_test(LockstepMachine, settings=LOCKSTEP)
    assert LockstepMachine.steps >= MIN_STEPS, f"only {LockstepMachine.steps} steps ran"


# -- exact examples ------------------------------------------------------------------

THREE = LevelSet(["high", "normal", "low"])
WIP = {"high": LevelPolicy(max=8), "normal": LevelPolicy(max=4), "low": LevelPolicy(max=2)}


@settings(max_examples=150, deadline=None)
@given(
    order=st.sampled_from(["strict", "weighted"]),
    ops=st.lists(st.tuples(st.sampled_from(["enqueue", "reserve", "finish"]), st.integers(0, 2))),
)
def test_wip_limits_8_4_2_hold_across_any_sequence(order: str, ops: list[tuple[str, int]]) -> None:
    policy = GatePolicy(capacity=14, levels=WIP, order=order, level_set=THREE)  # type: ignore[arg-type]
    gate, limits = JobGate(policy), (8, 4, 2)
    queued, running = [0, 0, 0], [0, 0, 0]
    for op, rank in ops:
        if op == "enqueue":
            queued[rank] += 1
        elif op == "finish" and running[rank]:
            running[rank] -= 1
        elif op == "reserve":
            got = gate.reserve(snapshot(queued, running))
            if got is None:  # the maxes add up to capacity: None only when queued levels are full
                assert all(not q or r >= m for q, r, m in zip(queued, running, limits, strict=True))
            else:
                queued[got] -= 1
                running[got] += 1
        assert all(r <= m for r, m in zip(running, limits, strict=True))
        assert sum(running) <= 14


def test_a_flood_of_critical_jobs_does_not_starve_low_below_its_min() -> None:
    gate = JobGate(GatePolicy(capacity=4, levels={"low": LevelPolicy(min=1)}))
    queued, running = [1000, 0, 0, 1, 0], [4, 0, 0, 0, 0]
    assert gate.reserve(snapshot(queued, running)) is None  # every seat is taken
    running[0] -= 1  # a critical job finishes: low, below its min, gets the seat
    assert gate.reserve(snapshot(queued, running)) == 3
    queued[3], running[3] = 5, 1
    running[0] -= 1  # low holds its min: the next seat is critical's again
    assert gate.reserve(snapshot(queued, running)) == 0


def test_weighted_3_to_1_gives_high_three_turns_to_every_bulk_turn() -> None:
    gate = JobGate(
        GatePolicy(
            capacity=1,
            order="weighted",  # type: ignore[arg-type]
            levels={"high": LevelPolicy(weight=3), "bulk": LevelPolicy(weight=1)},
        )
    )
    queued, running = [0, 100, 0, 0, 100], [0, 0, 1, 0, 0]  # a normal job holds the seat
    assert gate.reserve(snapshot(queued, running)) is None
    running[2] = 0
    served = []
    for _ in range(40):  # each job finishes before the next worker reserves
        rank = gate.reserve(snapshot(queued, running))
        assert rank is not None
        queued[rank] -= 1
        served.append(gate.levels[rank].name)
    assert served[:8] == ["high", "bulk", "high", "high", "high", "bulk", "high", "high"]
    assert served.count("high") == 30
    assert served.count("bulk") == 10


def test_an_idle_level_restarts_at_the_virtual_time() -> None:
    policy = GatePolicy(capacity=1, order="weighted", level_set=LevelSet(["a", "b"]))  # type: ignore[arg-type]
    gate = JobGate(policy)
    # a waits (its first job is blocked), then takes 10 turns alone while b is idle
    assert gate.reserve(snapshot([11, 0], [0, 1])) is None
    for left in range(11, 1, -1):
        assert gate.reserve(snapshot([left, 0], [0, 0])) == 0
    # b arrives: it restarts at the virtual time, with no credit for 10 idle turns
    served = [gate.reserve(snapshot([5, 5], [0, 0])) for _ in range(4)]
    assert served == [1, 0, 1, 0]


def test_a_job_taken_at_once_costs_no_turn_even_beside_jobs_that_can_never_run() -> None:
    # z's max is 0: its queued job never starts, and the gate is not "busy" because of it
    levels = {"z": LevelPolicy(max=0)}
    policy = GatePolicy(
        capacity=1, order="weighted", levels=levels, level_set=LevelSet(["a", "b", "z"])
    )  # type: ignore[arg-type]
    gate = JobGate(policy)
    assert gate.reserve(snapshot([0, 0, 1], [0, 0, 0])) is None
    assert gate.reserve(snapshot([1, 0, 1], [0, 0, 0])) == 0  # nothing else waits: free
    assert gate.reserve(snapshot([1, 1, 1], [1, 0, 0])) is None  # a and b now wait
    # a's first turn cost nothing, so a and b are level and the tie goes to a
    assert gate.reserve(snapshot([1, 1, 1], [0, 0, 0])) == 0
    assert gate.reserve(snapshot([0, 1, 1], [0, 0, 0])) == 1


def test_next_level_is_pure_and_state_round_trips() -> None:
    policy = GatePolicy(capacity=2, order="weighted", levels={"high": LevelPolicy(weight=2)})  # type: ignore[arg-type]
    gate = JobGate(policy)
    gate.reserve(snapshot([0, 3, 0, 2, 0], [0, 1, 0, 0, 0]))
    gate.reserve(snapshot([0, 2, 0, 2, 0], [0, 1, 0, 0, 0]))
    stored = gate.state()
    assert len(stored) == 11
    copy = gate.with_state(stored)
    snap = snapshot([0, 1, 0, 2, 0], [0, 1, 0, 0, 0])
    assert copy.next_level(snap) == copy.next_level(snap)
    assert copy.state() == stored
    copy.reserve(snap)  # the transaction fails: the copy is dropped, the stored row stays
    assert gate.state() == stored
    assert gate.with_state(stored).reserve(snap) == copy.with_state(stored).reserve(snap)


def test_a_snapshot_of_the_wrong_length_names_the_levels() -> None:
    gate = JobGate(GatePolicy(capacity=3, level_set=THREE))
    with pytest.raises(ConfigError, match=r"snapshot has 2 levels: expected 3, one LevelSnapshot"):
        gate.next_level(snapshot([1, 0], [0, 0]))
    with pytest.raises(ConfigError, match=r"\['high', 'normal', 'low'\], most important first"):
        gate.reserve([])


@pytest.mark.parametrize("field", ["queued", "running"])
def test_a_negative_count_is_refused_by_name(field: str) -> None:
    counts = {"queued": 0, "running": 0, field: -1}
    with pytest.raises(ConfigError, match=rf"LevelSnapshot.{field} = -1: expected a whole number"):
        LevelSnapshot(**counts)
    with pytest.raises(ConfigError, match=rf"LevelSnapshot.{field} = True: expected"):
        LevelSnapshot(**{**counts, field: True})


def test_a_malformed_state_is_refused() -> None:
    gate = JobGate(GatePolicy(capacity=3, level_set=THREE))
    with pytest.raises(ConfigError, match=r"state has 3 numbers: expected 7 \(the virtual time"):
        gate.with_state((0.0, 0.0, 0.0))
    with pytest.raises(ConfigError, match=r"state\[2\] = nan: expected a finite number"):
        gate.with_state((0.0, 0.0, math.nan, 0.0, 0.0, 0.0, 0.0))
    with pytest.raises(ConfigError, match=r"state\[5\] = 0.5: expected 0.0 or 1.0"):
        gate.with_state((0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0))


def test_repr_shows_levels_seats_and_order() -> None:
    assert repr(JobGate(GatePolicy(capacity=14, levels=WIP, level_set=THREE))) == (
        "<JobGate 3 levels, 14 seats, strict>"
    )
