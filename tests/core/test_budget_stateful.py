"""Random operation sequences on random budgets, with the invariants checked after every step.

The invariants: the spend over any window never exceeds the burst plus the
rate in force integrated over the window (less what the bucket holds at its
end); the request served next is the one the rules choose (a waiting level
below its min first), and it does not fit yet, so budget never idles while a
chosen request could take it; every ticket ends exactly once; queues stay
within their bounds; the counters balance.
"""

from __future__ import annotations

import copy
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

from prioritize.core import LevelSet, Reason, TicketState
from prioritize.core.budget import RateScheduler, RateTicket
from prioritize.core.budget_buckets import EPS, Buckets
from prioritize.core.budget_policy import BudgetLevelPolicy, BudgetPolicy

TERMINAL = {TicketState.RELEASED, TicketState.CANCELLED, TicketState.SHED}
ALLOWED = {
    TicketState.NEW: {TicketState.WAITING, TicketState.GRANTED, TicketState.SHED},
    TicketState.WAITING: {TicketState.GRANTED, TicketState.SHED, TicketState.CANCELLED},
    TicketState.GRANTED: {TicketState.RELEASED},
}
FLOWS: list[Hashable | None] = [None, "a", "b"]
SLACK = 1e-6


@st.composite
def budget_policies(draw: st.DrawFn) -> BudgetPolicy:
    count = draw(st.integers(1, 3))
    level_set = LevelSet([f"l{i}" for i in range(count)])
    rpm = draw(st.sampled_from([None, 6, 60, 600]))
    tpm = draw(st.sampled_from([1200, 60000]) if rpm is None else st.sampled_from([None, 6000]))
    burst = draw(st.sampled_from([2.0, 10.0, 60.0]))
    if rpm is not None and rpm * burst / 60 < 1:
        burst = 60.0 / rpm
    spare = 100
    levels = {}
    for level in level_set:
        if not draw(st.integers(0, 5)):
            continue
        low = draw(st.sampled_from([p for p in (0, 10, 25, 25, 40) if p <= spare]))
        spare -= low
        high = draw(st.sampled_from([None, 0, 50, 80, 100]))
        if high is not None and high < low:
            high = low
        levels[level.name] = BudgetLevelPolicy(
            min=f"{low}%",
            max=None if high is None else f"{high}%",
            weight=draw(st.sampled_from([1, 2, 0.5])),
            queue=draw(st.one_of(st.none(), st.integers(0, 4))),
            max_wait=draw(st.sampled_from([0.0, 0.5, 3.0, math.inf])),
        )
    return BudgetPolicy(
        rpm=rpm,
        tpm=tpm,
        levels=levels,
        order=draw(st.sampled_from(["strict", "weighted"])),  # type: ignore[arg-type]
        queue=draw(st.integers(0, 8)),
        burst=burst,
        backoff=0.5,
        recovery=draw(st.sampled_from([5.0, 60.0])),
        level_set=level_set,
    )


class BudgetMachine(RuleBasedStateMachine):
    steps = 0

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.tickets: list[RateTicket] = []
        self.seen: dict[int, TicketState] = {}
        #: after each step: (time, spent so far per dimension, bucket level, rate in force)
        self.log: list[tuple[float, list[float], list[float], list[float]]] = []

    @initialize(policy=budget_policies())
    def start(self, policy: BudgetPolicy) -> None:
        self.budget = RateScheduler(policy)
        self.policy = policy
        self.budget.advance(0.0)
        self.record()
        self.shadow = copy.deepcopy(self.budget.buckets)
        self.shadow_at = 0.0

    # -- rules ---------------------------------------------------------------------------

    @rule(
        rank=st.integers(0, 3),
        share=st.sampled_from([0.0, 0.01, 0.1, 0.3, 0.9, 1.5]),
        flow=st.sampled_from(FLOWS),
        wait=st.booleans(),
    )
    def submit(self, rank: int, share: float, flow: Hashable | None, wait: bool) -> None:
        level = self.budget.levels[rank % len(self.budget.levels)]
        tokens = share * self.budget.buckets.bursts[-1] if "tokens" in self.budget.dimensions else 0
        ticket = self.budget.ticket(level, flow, tokens=tokens, wait=wait)
        self.tickets.append(ticket)
        self.seen[id(ticket)] = TicketState.NEW
        self.apply(self.budget.submit(ticket, self.now), extra=ticket, check_grants=True)

    @rule(rank=st.integers(0, 3), count=st.integers(2, 6))
    def flood(self, rank: int, count: int) -> None:
        """Several small requests of one level at once: contention, where the rules matter."""
        for _ in range(count):
            self.submit(rank, 0.01, None, True)

    @rule(dt=st.sampled_from([0.0, 0.05, 0.3, 1.0, 4.0]))
    def time_passes(self, dt: float) -> None:
        self.now += dt
        self.apply(self.budget.advance(self.now), check_grants=True)

    @precondition(lambda self: self.budget.next_deadline() is not None)
    @rule()
    def timer_fires(self) -> None:
        deadline = self.budget.next_deadline()
        assert deadline is not None
        assert deadline >= self.now - SLACK, "a deadline in the past was not acted on"
        self.now = max(self.now, deadline)
        self.apply(self.budget.advance(self.now), check_grants=True)

    @rule(pick=st.integers(0, 10**6), ratio=st.sampled_from([None, 0.0, 0.5, 1.0, 3.0]))
    def settle(self, pick: int, ratio: float | None) -> None:
        granted = self.in_state(TicketState.GRANTED)
        if granted:
            ticket = granted[pick % len(granted)]
            actual = None if ratio is None else ticket.tokens * ratio
            self.apply(self.budget.settle(ticket, self.now, actual), extra=ticket)

    @rule(pick=st.integers(0, 10**6), retry_after=st.sampled_from([None, 0.0, 2.0]))
    def provider_refuses(self, pick: int, retry_after: float | None) -> None:
        granted = self.in_state(TicketState.GRANTED)
        if granted:
            ticket = granted[pick % len(granted)]
            self.apply(self.budget.refused(ticket, self.now, retry_after), extra=ticket)

    @rule(pick=st.integers(0, 10**6))
    def cancel(self, pick: int) -> None:
        live = self.in_state(TicketState.WAITING) + self.in_state(TicketState.GRANTED)
        if live:
            ticket = live[pick % len(live)]
            self.apply(self.budget.cancel(ticket, self.now), extra=ticket)

    @rule(share=st.sampled_from([0.0, 0.5]))
    def provider_reports_remaining(self, share: float) -> None:
        dim = self.budget.dimensions[0]
        remaining = {dim: share * self.budget.buckets.bursts[0]}
        self.apply(self.budget.observe(self.now, remaining))

    @precondition(lambda self: len(self.tickets) > 12)
    @rule()
    def close(self) -> None:
        self.apply(self.budget.close(self.now))

    # -- bookkeeping ---------------------------------------------------------------------

    def in_state(self, state: TicketState) -> list[RateTicket]:
        return [t for t in self.tickets if t.state is state]

    def apply(
        self, changed: list[object], extra: RateTicket | None = None, check_grants: bool = False
    ) -> None:
        type(self).steps += 1
        if check_grants:
            self.check_each_grant([t for t in changed if isinstance(t, RateTicket)])
        assert len({id(t) for t in changed}) == len(changed), "a ticket reported twice in a step"
        for ticket in self.tickets:
            before, after = self.seen[id(ticket)], ticket.state
            if before is not after:
                assert after in ALLOWED.get(before, set()), f"{ticket!r}: {before} -> {after}"
                moved_by_caller = ticket is extra
                assert moved_by_caller or ticket in changed, f"{ticket!r} changed unreported"
                if after is TicketState.SHED:
                    assert isinstance(ticket.reason, Reason)
                    assert ticket.retry_after is not None
                    assert ticket.retry_after >= 0
                self.seen[id(ticket)] = after
        self.record()
        self.shadow = copy.deepcopy(self.budget.buckets)
        self.shadow_at = self.now

    def check_each_grant(self, changed: list[RateTicket]) -> None:
        """Replay the step's grants on a copy of the buckets taken before it, checking at each
        one the reservation, the guarantee and strict order with numbers read, not reused."""
        budget, shadow = self.budget, self.shadow
        if self.now > self.shadow_at:
            shadow.refill(self.now - self.shadow_at, self.policy.recovery)
        grants = [t for t in changed if t.state is TicketState.GRANTED]
        for i, ticket in enumerate(grants):
            rank, cost = ticket.level.rank, budget.cost(ticket)
            for k, c in enumerate(cost):
                reserve = sum(max(credit[k], 0.0) for credit in shadow.credit[:rank])
                slack = 2 * EPS * shadow.bursts[k]
                assert shadow.level[k] - c >= reserve - slack, "a grant dipped into a reserve"
                assert shadow.cap[rank][k] >= c - slack, "a grant beyond the level's max"
            open_levels = [(lv, h) for lv, h in self.waiting_then(grants[i:]) if lv != ticket.level]
            below = [lv for lv, _ in open_levels if self.below_min(shadow, lv.rank)]
            if not self.below_min(shadow, rank):
                assert not below, f"{ticket.level} served while {below} waited below its min"
                if self.policy.order == "strict":
                    ahead = [lv for lv, _ in open_levels if lv.rank < rank]
                    assert not ahead, f"{ticket.level} served while {ahead} waited"
            shadow.charge(rank, cost)

    def waiting_then(self, later: list[RateTicket]) -> list[tuple[object, RateTicket]]:
        """Levels waiting at a grant, with their heads, whose max bucket could pay the head."""
        out = []
        for level in self.budget.levels:
            mine = [t for t in later if t.level == level]
            head = mine[0] if mine else self.budget.head(level)
            if head is not None:
                cost = self.budget.cost(head)
                cap = self.shadow.cap[level.rank]
                if all(
                    cap[k] >= c - EPS * b
                    for k, (c, b) in enumerate(zip(cost, self.shadow.bursts, strict=True))
                ):
                    out.append((level, head))
        return out

    @staticmethod
    def below_min(buckets: Buckets, rank: int) -> bool:
        share = buckets.shares[rank]
        return share.min > 0 and all(
            c > EPS * b for c, b in zip(buckets.credit[rank], buckets.bursts, strict=True)
        )

    def record(self) -> None:
        b = self.budget.buckets
        spent = [
            sum(lv.spent[d] for lv in self.budget.stats().levels) for d in self.budget.dimensions
        ]
        rates = [b.rate(k) for k in range(len(b.rates))]
        self.log.append((self.now, spent, list(b.level), rates))

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def spend_within_burst_plus_rate(self) -> None:
        """Spend(s, t) ≤ burst + ∫ rate − bucket(t), for every window ending at the last step."""
        if len(self.log) < 2:
            return
        t, spent_t, level_t, _ = self.log[-1]
        for k, burst in enumerate(self.budget.buckets.bursts):
            integral = 0.0
            for i in range(len(self.log) - 2, -1, -1):
                s, spent_s, _, rates = self.log[i]
                integral += rates[k] * (self.log[i + 1][0] - s)
                window = spent_t[k] - spent_s[k]
                assert window <= burst + integral - level_t[k] + SLACK * burst, (
                    f"{self.budget.dimensions[k]}: spent {window} in [{s}, {t}], "
                    f"burst {burst} + refill {integral}, bucket now {level_t[k]}"
                )

    @invariant()
    def chosen_request_goes_first_and_does_not_fit_yet(self) -> None:
        budget = self.budget
        if not budget.waiting or self.now < budget.paused_until:
            return
        b = budget.buckets
        open_levels = []
        for level in budget.levels:
            head = budget.head(level)
            if head is not None and not b.is_capped(level.rank, budget.cost(head)):
                open_levels.append(level)
        candidate = budget.candidate()
        if not open_levels:
            assert candidate is None
            return
        below = [lv for lv in open_levels if b.is_below_min(lv.rank)]
        if below:
            assert candidate == below[0], "a waiting level below its min was passed over"
        elif self.policy.order == "strict":
            assert candidate == open_levels[0]
        assert candidate is not None
        head = budget.head(candidate)
        assert head is not None
        assert not b.fits(candidate.rank, budget.cost(head)), "budget idles while work waits"

    @invariant()
    def queues_within_bounds_and_counters_balance(self) -> None:
        budget = self.budget
        shares = self.policy.resolve()
        assert budget.waiting <= self.policy.queue
        total_waiting = 0
        for level, share in zip(budget.levels, shares, strict=True):
            waiting = budget.waiting_at(level)
            assert waiting <= share.queue
            total_waiting += waiting
            mine = [t for t in self.tickets if t.level == level]
            assert waiting == sum(t.state is TicketState.WAITING for t in mine)
            stats = budget.stats().levels[level.rank]
            assert stats.in_flight == sum(t.state is TicketState.GRANTED for t in mine)
            assert sum(stats.shed.values()) == sum(t.state is TicketState.SHED for t in mine)
        assert total_waiting == budget.waiting

    def teardown(self) -> None:
        """Every ticket ends exactly once: close, settle what is granted, nothing is left."""
        if not hasattr(self, "budget"):
            return
        self.apply(self.budget.close(self.now))
        for ticket in self.in_state(TicketState.GRANTED):
            self.apply(self.budget.settle(ticket, self.now), extra=ticket)
        assert all(t.state in TERMINAL for t in self.tickets)
        assert self.budget.waiting == 0
        assert self.budget.in_flight == 0


def test_budget_state_machine() -> None:
    BudgetMachine.steps = 0
    run_state_machine_as_test(
        BudgetMachine,
        settings=settings(
            max_examples=150,
            stateful_step_count=60,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    assert BudgetMachine.steps >= 2000
