"""Random operation sequences over QueueState, both layouts, invariants after every step.

The invariants are the queue's promises: every item put is in exactly one
place (queued, ready for a woken consumer, taken, being handled, or shed,
once); ``unfinished`` counts exactly the accepted items not yet done or
shed; in the take layout the seat is free exactly when more consumers wait
than items are ready for them, and then nothing is queued (no prefetch, no
consumer left waiting beside a queued item); in the serve layout every
seat is a worker's: plugged, ready, or busy.
"""

from __future__ import annotations

import math
from collections import Counter

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

from prioritize import GatePolicy, LevelPolicy, LevelSet, Reason, Ticket, TicketState
from prioritize.queues._state import QueueState

MIN_STEPS = 3000


@st.composite
def policies(draw: st.DrawFn) -> GatePolicy:
    count = draw(st.integers(1, 4))
    level_set = LevelSet([f"l{i}" for i in range(count)])
    capacity = draw(st.integers(1, 4))
    spare = capacity
    levels = {}
    for level in level_set:
        low = draw(st.integers(0, spare))
        spare -= low
        high = draw(st.one_of(st.none(), st.integers(low, capacity), st.just(0)))
        levels[level.name] = LevelPolicy(
            min=low if high != 0 else 0,
            max=high,
            weight=draw(st.sampled_from([1, 2, 0.5])),
            queue=draw(st.one_of(st.none(), st.integers(0, 4))),
            max_wait=draw(st.sampled_from([0.0, 1.0, 2.5, math.inf])),
        )
    return GatePolicy(
        capacity=capacity,
        levels=levels,
        order=draw(st.sampled_from(["strict", "weighted"])),
        queue=draw(st.integers(0, 8)),
        level_set=level_set,
    )


class QueueMachine(RuleBasedStateMachine):
    steps = 0

    @initialize(policy=policies())
    def start(self, policy: GatePolicy) -> None:
        self.policy = policy
        self.q = QueueState(policy)
        self.now = 0.0
        self.q.start(self.now)
        self.next_item = 0
        self.accepted: set[int] = set()
        self.taken: list[int] = []
        self.busy: list[Ticket] = []
        self.shed: Counter[int] = Counter()
        self.done = 0
        self.workers = 0

    def step(self) -> None:
        QueueMachine.steps += 1
        for t in self.q.shed:
            assert t.state is TicketState.SHED
            assert isinstance(t.reason, Reason)
            self.shed[t.data] += 1  # type: ignore[index]
        self.q.shed = []
        self.q.wake = 0

    @rule(data=st.data(), flow=st.sampled_from([None, "a", "b"]))
    def put(self, data: st.DataObject, flow: str | None) -> None:
        level = data.draw(st.sampled_from(self.policy.level_set.names))
        item = self.next_item
        self.next_item += 1
        ticket = self.q.put(item, level, flow, self.now)
        if ticket.state is not TicketState.SHED:
            self.accepted.add(item)
        self.step()

    @rule(dt=st.sampled_from([0.0, 0.3, 1.0, 2.0]))
    def advance_and_expire(self, dt: float) -> None:
        self.now += dt
        self.q.expire(self.now)
        self.step()

    @rule(dt=st.sampled_from([0.5, 3.0]))
    def advance_without_expiry(self, dt: float) -> None:
        # the adapter's timer is late: takes and claims meet overdue items first
        self.now += dt
        self.step()

    @precondition(lambda self: not self.q.serving)
    @rule()
    def take(self) -> None:
        ticket = self.q.take(self.now)
        if ticket is not None:
            self.taken.append(ticket.data)  # type: ignore[arg-type]
        self.step()

    @precondition(lambda self: not self.q.serving)
    @rule()
    def consumer_starts_waiting(self) -> None:
        self.q.register(self.now)
        self.step()

    @precondition(lambda self: not self.q.serving and self.q.getters > 0)
    @rule()
    def waiting_consumer_is_woken(self) -> None:
        ticket = self.q.take(self.now, waiting=True)
        if ticket is not None:
            self.taken.append(ticket.data)  # type: ignore[arg-type]
        self.step()

    @precondition(lambda self: not self.q.serving and self.q.getters > 0)
    @rule()
    def waiting_consumer_leaves(self) -> None:
        self.q.unregister(self.now)
        self.step()

    @precondition(lambda self: bool(self.taken))
    @rule()
    def task_done(self) -> None:
        self.q.task_done()
        self.done += 1
        self.taken.pop()
        self.step()

    @precondition(lambda self: not self.q.serving and self.q.getters == 0)
    @rule(workers=st.integers(1, 4))
    def start_serving(self, workers: int) -> None:
        self.q.start_serving(workers, self.now)
        self.workers = workers
        self.step()

    @precondition(lambda self: self.q.serving and len(self.busy) < self.workers)
    @rule()
    def worker_claims(self) -> None:
        ticket = self.q.claim(self.now)
        if ticket is not None:
            self.busy.append(ticket)
        self.step()

    @precondition(lambda self: self.q.serving and bool(self.busy))
    @rule(data=st.data())
    def worker_finishes(self, data: st.DataObject) -> None:
        ticket = self.busy.pop(data.draw(st.integers(0, len(self.busy) - 1)))
        following = self.q.finish(ticket, self.now)
        self.q.task_done()
        self.done += 1
        if following is not None:
            self.busy.append(following)
        self.step()

    @precondition(lambda self: self.q.serving and not self.busy)
    @rule()
    def stop_serving(self) -> None:
        self.q.stop_serving(self.now)
        self.step()

    @rule()
    def close(self) -> None:
        self.q.close(self.now)
        self.step()

    # -- invariants -------------------------------------------------------------------

    def queued(self) -> list[int]:
        out: list[int] = []
        for level in self.q.scheduler.levels:
            out += [t.data for t in self.q.scheduler.waiting_tickets(level)]  # type: ignore[misc]
        return out

    @invariant()
    def every_item_is_in_exactly_one_place(self) -> None:
        if not hasattr(self, "q"):
            return
        ready = [t.data for t in self.q.ready]
        busy = [t.data for t in self.busy]
        handed = self.taken + busy
        places = Counter(self.queued() + ready + handed) + self.shed
        assert all(n == 1 for n in places.values()), places
        # an item got and marked done has left every list: nothing else is missing
        assert len(places) + self.done == self.next_item

    @invariant()
    def unfinished_counts_accepted_items_not_done_or_shed(self) -> None:
        if not hasattr(self, "q"):
            return
        shed_accepted = sum(n for item, n in self.shed.items() if item in self.accepted)
        assert self.q.unfinished == len(self.accepted) - shed_accepted - self.done

    @invariant()
    def seats_stand_for_consumers(self) -> None:
        if not hasattr(self, "q"):
            return
        q, s = self.q, self.q.scheduler
        assert q.qsize() == s.waiting + len(q.ready)
        if q.serving:
            plugs = s.held(s.levels[0])
            assert s.in_use == plugs + len(q.ready) + len(self.busy)
            assert s.in_use <= s.capacity
        else:
            assert s.capacity == 1
            if q.getters > len(q.ready):
                assert q.holder is None  # a consumer waits: the seat is free for it
                assert s.waiting == 0  # and nothing is queued beside it
            elif not s.is_closed and any(s.limits(level).max for level in s.levels):
                assert q.holder is not None
                assert q.holder.state is TicketState.GRANTED
                assert s.in_use == 1


SETTINGS = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_queue_state_keeps_every_item_and_every_invariant() -> None:
    QueueMachine.steps = 0
    run_state_machine_as_test(QueueMachine, settings=SETTINGS)
    assert QueueMachine.steps >= MIN_STEPS, f"only {QueueMachine.steps} steps ran"
