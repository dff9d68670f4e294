"""SyncBudget against a plain RateScheduler: the thread front-end adds no decision and loses none.

A stateful Hypothesis machine starts a real thread per call on a
`SyncBudget` and feeds a bare `RateScheduler` the same operations at the
same virtual times. After every step both agree on every ticket and on the
statistics, and every thread has exactly the answer its ticket says: a
granted thread holds its budget, a shed one raised `Rejected` with the
scheduler's reason, a waiting one still waits — each woken once, whoever
(the test, or the waiter watching the clock) made the decision.
"""

from __future__ import annotations

import math
import queue
import threading

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from prioritize import Rejected, TicketState
from prioritize.core.budget import RateScheduler, RateTicket
from prioritize.llm import BudgetLevelPolicy, BudgetPolicy, SyncBudget
from prioritize.testing import VirtualClock
from tests.process.children import eventually

POLICY = BudgetPolicy(
    rpm=60,
    tpm=600,
    burst=3,
    queue=5,
    levels={
        "critical": BudgetLevelPolicy(min="30%", max_wait=5),
        "high": BudgetLevelPolicy(max_wait=3),
        "low": BudgetLevelPolicy(max="50%", queue=3, max_wait=math.inf),
        "bulk": BudgetLevelPolicy(max_wait=1.5),
    },
    name="api",
)
LEVELS = ["critical", "high", "low", "bulk"]


class Call:
    """A thread making one call: it holds its grant until told how the call went."""

    def __init__(self, budget: SyncBudget, level: str, flow: int, tokens: float) -> None:
        self.spend = budget.spend(level, flow=flow, tokens=tokens)
        #: what the thread was told: "granted" and/or the Rejected it raised
        self.answers: list[object] = []
        self.ending: queue.SimpleQueue[tuple[str, float]] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            with self.spend as spend:
                self.answers.append("granted")
                how, value = self.ending.get()
                if how == "refused":
                    spend.refused(value)
                else:
                    spend.actual(value)
        except Rejected as shed:
            self.answers.append(shed)

    def has_its_answer(self, ticket: RateTicket) -> bool:
        state = ticket.state
        if state is TicketState.WAITING:
            return self.answers == []
        if state is TicketState.SHED:
            return (
                len(self.answers) == 1
                and isinstance(self.answers[0], Rejected)
                and self.answers[0].reason is ticket.reason
            )
        return self.answers == ["granted"]


class BudgetAgainstScheduler(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = VirtualClock(100.0)
        self.budget = SyncBudget(POLICY, clock=self.clock)
        self.model = RateScheduler(POLICY)
        self.calls: list[tuple[Call, RateTicket]] = []

    def _delivered(self) -> None:
        for call, ticket in self.calls:
            assert call.spend.state is ticket.state, (call.spend, ticket)
            eventually(lambda c=call, t=ticket: c.has_its_answer(t), f"{call.spend!r} is told")

    @rule(
        level=st.sampled_from(LEVELS),
        flow=st.integers(0, 2),
        tokens=st.sampled_from([0.0, 10.0, 50.0, 200.0]),
    )
    def request(self, level: str, flow: int, tokens: float) -> None:
        ticket = self.model.ticket(level, flow, tokens=tokens)
        self.model.submit(ticket, self.clock())
        call = Call(self.budget, level, flow, tokens)
        eventually(lambda: call.spend.state is not TicketState.NEW, "the call is submitted")
        self.calls.append((call, ticket))
        self._delivered()

    @rule(seconds=st.sampled_from([0.25, 0.5, 1.0, 2.5]))
    def time_passes(self, seconds: float) -> None:
        self.model.advance(self.clock.advance(seconds))
        self.budget.advance()
        self._delivered()

    @precondition(lambda self: any(t.state is TicketState.GRANTED for _, t in self.calls))
    @rule(
        pick=st.integers(0, 20),
        actual=st.sampled_from([0.0, 30.0, 400.0]),
        refused=st.booleans(),
        retry_after=st.sampled_from([0.0, 0.5, 2.0]),
    )
    def call_ends(self, pick: int, actual: float, refused: bool, retry_after: float) -> None:
        granted = [(c, t) for c, t in self.calls if t.state is TicketState.GRANTED]
        call, ticket = granted[pick % len(granted)]
        if refused:
            self.model.refused(ticket, self.clock(), retry_after)
            call.ending.put(("refused", retry_after))
        else:
            self.model.settle(ticket, self.clock(), actual)
            call.ending.put(("actual", actual))
        call.thread.join()
        self._delivered()

    @rule()
    def stats_are_read(self) -> None:
        assert self.budget.stats().waiting == self.model.waiting

    @invariant()
    def both_agree(self) -> None:
        assert self.budget.stats() == self.model.stats()

    def teardown(self) -> None:
        self.budget.close()
        for call, ticket in self.calls:
            if ticket.state is TicketState.GRANTED:
                call.ending.put(("actual", 0.0))
            call.thread.join()
            assert len(call.answers) == 1  # every call ended once: granted, or shed
        stats = self.budget.stats()
        assert (stats.waiting, stats.in_flight) == (0, 0)


BudgetAgainstScheduler.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None
)
test_sync_budget_against_the_scheduler = BudgetAgainstScheduler.TestCase
