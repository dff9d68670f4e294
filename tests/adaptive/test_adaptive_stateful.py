"""A gate driven by a controller, under any sequence of arrivals, completions, drops and pauses.

Invariants checked after every step: the scheduler's capacity is the
controller's limit; the limit stays within its bounds; one window never moves
it by more than its documented step; while the Gradient controller probes, the
limit is its floor; a seat is only ever granted when one is free under the
current limit.
"""

from __future__ import annotations

import math

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from prioritize import GatePolicy, LevelPolicy, Scheduler, Ticket, TicketState
from prioritize.adaptive import AIMD, AdaptiveCapacity, Gradient

LEVELS = ["critical", "high", "normal", "low", "bulk"]
MIN, MAX = 3, 40


class AdaptiveGate(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.held: list[Ticket] = []
        self.granted_beyond_capacity = False

    @initialize(
        kind=st.sampled_from(["aimd", "gradient"]),
        initial=st.integers(MIN, MAX),
        window=st.sampled_from([0.0, 0.05, 0.5]),
        window_samples=st.integers(1, 5),
    )
    def build(self, kind: str, initial: int, window: float, window_samples: int) -> None:
        common = {"initial": initial, "min_limit": MIN, "max_limit": MAX, "window": window}
        common["window_samples"] = window_samples
        if kind == "aimd":
            self.controller: AIMD | Gradient = AIMD(max_rtt=0.1, **common)  # type: ignore[arg-type]
        else:
            self.controller = Gradient(probe_samples=5, probe_interval=2.0, **common)  # type: ignore[arg-type]
        policy = GatePolicy(
            capacity=initial,
            queue=200,
            levels={"critical": LevelPolicy(min="20%"), "low": LevelPolicy(min=2)},
        )
        self.sched = Scheduler(policy)
        self.adaptive = AdaptiveCapacity(self.sched, self.controller)

    def track(self, changed: list[Ticket]) -> None:
        for ticket in changed:
            if ticket.state is TicketState.GRANTED:
                self.held.append(ticket)
                if self.sched.in_use > self.sched.capacity:
                    self.granted_beyond_capacity = True

    @rule(level=st.sampled_from(LEVELS), count=st.integers(1, 10))
    def arrive(self, level: str, count: int) -> None:
        for _ in range(count):
            self.track(self.sched.submit(self.sched.ticket(level), self.now))

    @rule(
        index=st.integers(0, 10_000),
        took=st.floats(0.001, 1.0),
        dropped=st.booleans(),
    )
    def complete(self, index: int, took: float, dropped: bool) -> None:
        if not self.held:
            return
        ticket = self.held.pop(index % len(self.held))
        self.now = max(self.now, (ticket.granted_at or 0.0) + took)
        before, was_probing = self.controller.limit, self.probing()
        self.track(self.adaptive.release(ticket, self.now, dropped=dropped))
        after = self.controller.limit
        if self.probing():
            assert after == MIN  # a probe measures at the floor
        elif after < before:  # one window: 10 % at most, or the backoff; at least a seat
            assert after >= max(MIN, math.floor(min(0.9 * before, before - 1)))
        elif after > before and not was_probing:  # a probe's end restores the old limit
            step = 1 if isinstance(self.controller, AIMD) else 2  # 0.2 × sqrt(40) < 2
            assert after <= before + step

    @rule(seconds=st.floats(0.0, 3.0))
    def wait(self, seconds: float) -> None:
        self.now += seconds
        self.sched.expire(self.now)

    def probing(self) -> bool:
        return isinstance(self.controller, Gradient) and self.controller.is_probing

    @invariant()
    def capacity_is_the_limit_within_bounds(self) -> None:
        assert self.sched.capacity == self.controller.limit
        assert MIN <= self.controller.limit <= MAX

    @invariant()
    def grants_only_into_free_seats(self) -> None:
        assert not self.granted_beyond_capacity


AdaptiveGate.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
test_adaptive_gate = AdaptiveGate.TestCase
