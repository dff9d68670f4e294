"""The sans-I/O scheduler of a rate budget: requests and tokens per minute shared between levels.

Theory of operation
-------------------
A *token bucket* per dimension (requests, tokens): it holds at most
``burst`` seconds of the rate and refills continuously. A sliding window
was rejected: providers themselves replenish continuously (a token
bucket), so a bucket matches what they enforce, needs O(1) state instead
of a log of recent spends, and tells exactly *when* a request will fit
(the refill is linear), which is what the adapter's one timer needs.

Per-level shares, on top of the one bucket (the numbers live in
`budget_buckets`):

* ``min`` is a *credit* per level and dimension: it refills at ``min`` ×
  rate up to ``min`` × burst, and the level's spends draw it down (at most
  one request's cost into debt). A level's unspent credit is kept out of
  reach of every less important level (trunk reservation, as for a gate's
  seats: critical finds its share at once, even after an idle spell); once
  the credit is full, the level's share of the refill flows to the others,
  so an idle share is lent. A waiting level whose credit is positive in
  every dimension is *below its min* and is served first (the guarantee).
* ``max`` is a second bucket per level (``max`` × rate, ``max`` × burst)
  that its spends must also fit; a level that does not fit is skipped.
* Otherwise ``strict`` order serves the most important waiting level and
  ``weighted`` order shares by stride scheduling, each grant advancing the
  level's pass by its cost in seconds of the rate over its weight. Flows
  take turns within a level and each flow is FIFO (`Lane`).

No overtaking: the request the rules choose is served first, so tokens
accumulate for it and a large request is never starved by small ones
behind it. A request that could never fit (more than the burst left to
its level, or a level whose ``max`` is 0) is shed at once (``limit``).

A call asks with an *estimate* of its tokens; `settle` reconciles it with
the actual count (a refund, or an extra debit that may leave the bucket in
debt). A provider's 429 (`refused`) empties the buckets, pauses until its
``Retry-After`` and multiplies the rate by ``backoff`` — once per round of
calls in flight, as TCP halves its window once per loss event — and the
rate climbs back linearly over ``recovery`` seconds. Rate changes apply
from the call that makes them, so the rate is constant between calls:
spends over any interval never exceed the burst plus the rate integrated
over it. Time is an argument; `next_deadline` says when to call `advance`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import final

from ..errors import TicketStateError
from .budget_buckets import Buckets
from .budget_policy import BudgetPolicy
from .budget_tickets import BudgetLevelStats, BudgetStats, RateTicket, is_amount, peek
from .lanes import Lane
from .levels import Level, LevelSet
from .policy import Order
from .tickets import Reason, Ticket, TicketState

__all__ = ["BudgetLevelStats", "BudgetStats", "RateScheduler", "RateTicket"]

_NEW = TicketState.NEW
_WAITING = TicketState.WAITING
_GRANTED = TicketState.GRANTED
_MAX_RETRY_AFTER = 3600.0


@final
class RateScheduler:
    """The buckets, queues and shedding decisions of one budget, with time as an argument.

    Every mutating call takes ``now`` and returns the tickets whose state it
    changed other than by the caller's hand (granted, shed). Not thread-safe;
    ``now`` going backwards is read as the last time seen.
    """

    def __init__(self, policy: BudgetPolicy) -> None:
        self.policy = policy
        self.name = policy.name
        self.levels: LevelSet = policy.level_set
        self.dimensions = tuple(policy.per_minute)
        self._shares = policy.resolve()
        #: the numbers: bucket, credits and caps (public for inspection and tests)
        self.buckets = Buckets(
            [r / 60 for r in policy.per_minute.values()], policy.burst, self._shares
        )
        self._lanes = [Lane(level) for level in self.levels]
        for lane, share in zip(self._lanes, self._shares, strict=True):
            lane.queue, lane.max_wait, lane.weight = share.queue, share.max_wait, share.weight
        self._tokens = self.dimensions.index("tokens") if "tokens" in self.dimensions else -1
        self._queued = [[0.0] * len(self._lanes) for _ in self.dimensions]
        self._in_flight = [0] * len(self._lanes)
        self._granted = [0] * len(self._lanes)
        self._spent = [[0.0] * len(self.dimensions) for _ in self._lanes]
        self._waiting = 0
        self._decreased_at = -math.inf
        self._paused_until = -math.inf
        self._now = -math.inf
        self._vtime = 0.0
        self._closed = False

    # -- queries ---------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def in_flight(self) -> int:
        """Granted tickets not yet settled."""
        return sum(self._in_flight)

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def paused_until(self) -> float:
        """No grant before this time (a provider's ``Retry-After``)."""
        return self._paused_until

    def dimension(self, name: str) -> int:
        """The index of ``"requests"`` or ``"tokens"`` in `dimensions` and the bucket lists."""
        try:
            return self.dimensions.index(name)
        except ValueError:
            limits = list(self.dimensions)
            raise ValueError(f"budget {self.name!r} limits {limits}, not {name!r}") from None

    def waiting_at(self, level: Level | str | int) -> int:
        return self._lanes[self.levels.resolve(level).rank].waiting

    def waiting_tickets(self, level: Level | str | int) -> list[Ticket]:
        return self._lanes[self.levels.resolve(level).rank].tickets()

    def head(self, level: Level | str | int) -> RateTicket | None:
        """The level's request served next (its flows take turns), or None."""
        lane = self._lanes[self.levels.resolve(level).rank]
        return peek(lane) if lane.waiting else None

    def cost(self, ticket: RateTicket) -> list[float]:
        """What the ticket charges, per dimension: one request and its estimated tokens."""
        return self._cost_of(ticket.tokens)

    def candidate(self) -> Level | None:
        """The level whose request is served next by the rules, once it fits (None: none)."""
        lane = self._choose(charge=False)
        return None if lane is None else lane.level

    def retry_after(self, level: Level | str | int, now: float, tokens: float = 0.0) -> float:
        """Seconds until a request of ``level`` and ``tokens`` could be served, as estimated."""
        rank = self.levels.resolve(level).rank
        return self._retry_after(rank, self._cost_of(tokens), max(now, self._now))

    def next_deadline(self) -> float | None:
        """When to call `advance` next: a waiter's ``max_wait``, or a request's turn to fit."""
        if not self._waiting:
            return None
        times = [lane.oldest().deadline for lane in self._lanes if lane.waiting]  # type: ignore[union-attr]
        if self._now < self._paused_until:
            times.append(self._paused_until)
        else:
            for rank, lane in enumerate(self._lanes):
                if lane.waiting:
                    times.append(self._now + self.buckets.ready_in(rank, self.cost(peek(lane))))
            chosen = self._choose(charge=False)
            if chosen is not None:
                cost = self.cost(peek(chosen))
                times.append(self._now + self.buckets.fits_in(chosen.level.rank, cost))
        soonest = min(times)
        return None if soonest == math.inf else soonest

    def stats(self) -> BudgetStats:
        dims, b = self.dimensions, self.buckets
        levels = tuple(
            BudgetLevelStats(
                level=lane.level.name,
                min=share.min,
                max=share.max,
                waiting=lane.waiting,
                in_flight=self._in_flight[rank],
                granted=self._granted[rank],
                cancelled=lane.cancelled,
                shed=dict(lane.shed),
                spent=dict(zip(dims, self._spent[rank], strict=True)),
                credit=dict(zip(dims, b.credit[rank], strict=True)),
            )
            for rank, (lane, share) in enumerate(zip(self._lanes, self._shares, strict=True))
        )
        return BudgetStats(
            name=self.name,
            per_minute={d: b.rate(k) * 60 for k, d in enumerate(dims)},
            available=dict(zip(dims, b.level, strict=True)),
            factor=b.factor,
            paused_for=max(0.0, self._paused_until - self._now),
            waiting=self._waiting,
            in_flight=self.in_flight,
            levels=levels,
        )

    # -- mutations -------------------------------------------------------------------

    def ticket(
        self,
        level: Level | str | int,
        flow: Hashable | None = None,
        data: object = None,
        *,
        tokens: float = 0.0,
        wait: bool = True,
    ) -> RateTicket:
        """A new ticket of this budget's level set, asking for ``tokens`` (an estimate)."""
        if not is_amount(tokens):
            raise ValueError(f"tokens = {tokens!r}: expected an estimate, a number ≥ 0")
        return RateTicket(self.levels.resolve(level), flow, data, wait, float(tokens))

    def submit(self, ticket: RateTicket, now: float) -> list[Ticket]:
        """Ask for budget. The ticket ends up GRANTED, WAITING or SHED.

        Returns every ticket whose state changed, the submitted one included
        unless it waits, plus waiters granted, expired or evicted meanwhile.
        """
        if ticket.state is not _NEW:
            raise TicketStateError(f"{ticket!r} was already submitted; submit only new tickets")
        lane = self._lane_of(ticket)
        changed = self.advance(now)
        now = ticket.submitted_at = self._now
        cost = self.cost(ticket)
        if self._closed:
            return [*changed, self._shed(ticket, Reason.SHUTDOWN)]
        if not self.buckets.could_fit(lane.level.rank, cost):
            self._shed(ticket, Reason.LIMIT)
            ticket.retry_after = _MAX_RETRY_AFTER  # no wait would help
            return [*changed, ticket]
        # Served at once if the rules choose it and it fits; else queued, within bounds.
        self._enqueue(lane, ticket, cost, now)
        self._dispatch(now, changed)
        if ticket.state is not _WAITING:
            return changed
        self._dequeue(lane, ticket, cost, lane.pop_newest())
        if not ticket.wait or lane.max_wait <= 0.0:
            return [*changed, self._shed(ticket, Reason.LIMIT)]
        if lane.waiting >= lane.queue:
            return [*changed, self._shed(ticket, Reason.QUEUE_FULL)]
        if self._waiting >= self.policy.queue:
            victim_lane = next((ln for ln in reversed(self._lanes) if ln.waiting), None)
            if victim_lane is None or victim_lane.level.rank <= lane.level.rank:
                return [*changed, self._shed(ticket, Reason.QUEUE_FULL)]
            victim = victim_lane.pop_newest()
            self._dequeue(victim_lane, victim, self.cost(victim), victim)  # type: ignore[arg-type]
            changed.append(self._shed(victim, Reason.EVICTED))
        self._enqueue(lane, ticket, cost, now)
        self._dispatch(now, changed)
        return changed

    def settle(self, ticket: RateTicket, now: float, tokens: float | None = None) -> list[Ticket]:
        """End a granted call; ``tokens`` is its actual count (None: the estimate stands).

        The difference is refunded, or debited (possibly into debt). Returns
        the tickets granted or shed meanwhile.
        """
        self._check_granted(ticket, "settle")
        if tokens is not None and not is_amount(tokens):
            raise ValueError(f"tokens = {tokens!r}: expected the actual count, a number ≥ 0")
        changed = self.advance(now)
        if tokens is not None:
            self._charge_tokens(ticket, float(tokens) - ticket.charged)
            ticket.charged = float(tokens)
        self._end(ticket)
        self._dispatch(self._now, changed)
        return changed

    def refused(
        self, ticket: RateTicket, now: float, retry_after: float | None = None
    ) -> list[Ticket]:
        """End a granted call the provider refused (429): back off, and pause ``retry_after``.

        Its tokens are given back (the provider did not process it), every
        bucket is emptied, and the rate is cut by ``backoff`` unless a
        refusal of a call granted after the last cut has cut it already.
        """
        self._check_granted(ticket, "refuse")
        if retry_after is not None and not is_amount(retry_after):
            raise ValueError(f"retry_after = {retry_after!r}: expected seconds ≥ 0 or None")
        changed = self.advance(now)
        self._charge_tokens(ticket, -ticket.charged)
        ticket.charged = 0.0
        self._end(ticket)
        if ticket.granted_at is not None and ticket.granted_at > self._decreased_at:
            self.buckets.back_off(self.policy.backoff)
            self._decreased_at = self._now
        self.buckets.level = [min(level, 0.0) for level in self.buckets.level]
        if retry_after:
            until = self._now + min(retry_after, _MAX_RETRY_AFTER)
            self._paused_until = max(self._paused_until, until)
        return changed

    def observe(self, now: float, remaining: Mapping[str, float]) -> list[Ticket]:
        """Lower the buckets to what the provider says remains (``{"tokens": 1200}``)."""
        changed = self.advance(now)
        for name, value in remaining.items():
            if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
                raise ValueError(f"remaining {name} = {value!r}: expected a number")
            k = self.dimension(name)
            self.buckets.level[k] = min(self.buckets.level[k], float(value))
        return changed

    def cancel(self, ticket: RateTicket, now: float) -> list[Ticket]:
        """Withdraw a request. A waiting one leaves its queue (CANCELLED); a granted one whose
        call was never made gives its whole cost back (RELEASED, nothing charged)."""
        changed = self.advance(now)
        if ticket.state is _WAITING:
            lane = self._lane_of(ticket)
            ticket.state = TicketState.CANCELLED
            lane.remove(ticket)
            self._dequeue(lane, ticket, self.cost(ticket), ticket)
            lane.cancelled += 1
        elif ticket.state is _GRANTED:
            refund = [-c for c in self._cost_of(ticket.charged)]
            self._charge(ticket.level.rank, refund)
            ticket.charged = 0.0
            self._end(ticket)
        elif ticket.state is _NEW:
            ticket.state = TicketState.CANCELLED
        self._dispatch(self._now, changed)
        return changed

    def advance(self, now: float) -> list[Ticket]:
        """Bring the budget to ``now``: refill, shed waiters past ``max_wait``, grant what fits.

        Adapters call it from their one timer, armed for `next_deadline`.
        """
        changed: list[Ticket] = []
        if now > self._now:
            if self._now > -math.inf:
                self.buckets.refill(now - self._now, self.policy.recovery)
            self._now = now
        now = self._now
        for lane in self._lanes if self._waiting else ():
            while (oldest := lane.oldest()) is not None and oldest.deadline <= now:
                lane.pop_oldest()
                self._dequeue(lane, oldest, self.cost(oldest), oldest)  # type: ignore[arg-type]
                changed.append(self._shed(oldest, Reason.TIMEOUT))
        self._dispatch(now, changed)
        return changed

    def close(self, now: float) -> list[Ticket]:
        """Shed every waiter with reason ``shutdown``, and every later request."""
        changed = self.advance(now)
        self._closed = True
        for lane in self._lanes:
            for ticket in lane.tickets():
                ticket.state = TicketState.CANCELLED  # marks its entries stale
                lane.remove(ticket)
                self._dequeue(lane, ticket, self.cost(ticket), ticket)  # type: ignore[arg-type]
                changed.append(self._shed(ticket, Reason.SHUTDOWN))
        return changed

    # -- internals -------------------------------------------------------------------

    def _lane_of(self, ticket: Ticket) -> Lane:
        rank = ticket.level.rank
        if isinstance(ticket, RateTicket) and 0 <= rank < len(self._lanes):
            lane = self._lanes[rank]
            if lane.level == ticket.level:
                return lane
        raise TicketStateError(
            f"{ticket!r} is not a ticket of budget {self.name!r} (levels "
            f"{self.levels.names}); create tickets with RateScheduler.ticket()"
        )

    def _check_granted(self, ticket: RateTicket, verb: str) -> None:
        self._lane_of(ticket)
        if ticket.state is not _GRANTED:
            raise TicketStateError(f"cannot {verb} {ticket!r}: only a granted ticket was sent")

    def _cost_of(self, tokens: float) -> list[float]:
        return [tokens if dim == "tokens" else 1.0 for dim in self.dimensions]

    def _choose(self, charge: bool) -> Lane | None:
        """Rules 3 and 4: the waiting level below its min first, else by order, max permitting."""
        guarantee: Lane | None = None
        best: Lane | None = None
        weighted = self.policy.order is Order.WEIGHTED
        buckets = self.buckets
        for rank, lane in enumerate(self._lanes):
            if not lane.waiting or buckets.is_capped(rank, self.cost(peek(lane))):
                continue
            if guarantee is None and buckets.is_below_min(rank):
                guarantee = lane
            if best is None or (weighted and lane.pass_ < best.pass_):
                best = lane
        if guarantee is not None:
            return guarantee  # guaranteed share is not contended: it costs no turn
        if best is not None and weighted and charge:
            self._vtime = best.pass_
            cost = self.cost(peek(best))
            seconds = max(c / r for c, r in zip(cost, buckets.rates, strict=True))
            best.pass_ += seconds / best.weight
        return best

    def _dispatch(self, now: float, changed: list[Ticket]) -> None:
        """Serve the chosen request while it fits (no overtaking: tokens wait for it)."""
        while self._waiting and now >= self._paused_until:
            lane = self._choose(charge=False)
            if lane is None:
                return
            ticket = peek(lane)
            cost = self.cost(ticket)
            if ticket.deadline < now:  # the adapter's timer is late
                self._dequeue(lane, ticket, cost, lane.pop_next())
                changed.append(self._shed(ticket, Reason.TIMEOUT))
                continue
            if not self.buckets.fits(lane.level.rank, cost):
                return
            self._choose(charge=True)
            self._dequeue(lane, ticket, cost, lane.pop_next())
            ticket.state = _GRANTED
            ticket.granted_at = now
            ticket.charged = ticket.tokens
            self._in_flight[lane.level.rank] += 1
            self._granted[lane.level.rank] += 1
            self._charge(lane.level.rank, cost)
            changed.append(ticket)

    def _charge(self, rank: int, amounts: list[float]) -> None:
        self.buckets.charge(rank, amounts)
        spent = self._spent[rank]
        for k, amount in enumerate(amounts):
            spent[k] += amount

    def _charge_tokens(self, ticket: RateTicket, amount: float) -> None:
        if self._tokens >= 0 and amount:
            amounts = [0.0] * len(self.dimensions)
            amounts[self._tokens] = amount
            self._charge(ticket.level.rank, amounts)

    def _end(self, ticket: RateTicket) -> None:
        ticket.state = TicketState.RELEASED
        self._in_flight[ticket.level.rank] -= 1

    def _enqueue(self, lane: Lane, ticket: RateTicket, cost: list[float], now: float) -> None:
        if not lane.waiting and lane.pass_ < self._vtime:
            lane.pass_ = self._vtime  # no credit hoarded while idle
        lane.append(ticket, now + lane.max_wait)
        self._waiting += 1
        for k, c in enumerate(cost):
            self._queued[k][lane.level.rank] += c

    def _dequeue(self, lane: Lane, ticket: Ticket, cost: list[float], removed: Ticket) -> None:
        if removed is not ticket:
            raise TicketStateError(f"budget {self.name!r}: queue out of step at {ticket!r}")
        self._waiting -= 1
        rank = lane.level.rank
        for k, c in enumerate(cost):
            self._queued[k][rank] = self._queued[k][rank] - c if lane.waiting else 0.0

    def _shed(self, ticket: Ticket, reason: Reason) -> Ticket:
        rank = ticket.level.rank
        ticket.state = TicketState.SHED
        ticket.reason = reason
        tokens = ticket.tokens if isinstance(ticket, RateTicket) else 0.0
        ticket.retry_after = self._retry_after(rank, self._cost_of(tokens), self._now)
        self._lanes[rank].shed[reason] += 1
        return ticket

    def _retry_after(self, rank: int, cost: list[float], now: float) -> float:
        """What is queued ahead (its level and the more important ones) over the rate."""
        b = self.buckets
        wait = max(0.0, self._paused_until - now)
        weighted = self.policy.order is Order.WEIGHTED
        for k, c in enumerate(cost):
            queued = self._queued[k]
            ahead = queued[rank] if weighted else sum(queued[: rank + 1])
            need = ahead + c + b.reserve(rank, k) - max(b.level[k], 0.0)
            wait = max(wait, need / b.rate(k))
        return min(wait, _MAX_RETRY_AFTER)

    def __repr__(self) -> str:
        b = self.buckets
        dims = ", ".join(
            f"{d} {b.level[k]:g}/{b.bursts[k]:g}" for k, d in enumerate(self.dimensions)
        )
        flight = f"{self.in_flight} in flight, {self._waiting} waiting"
        return f"<RateScheduler {self.name}: {dims}; {flight}>"
