"""The sans-I/O scheduler of one gate: who gets a seat now, who waits, who is shed.

Theory of operation
-------------------
Every mutating call (`submit`, `release`, `cancel`, `expire`, `resize`,
`close`) takes the current time and returns the tickets whose state it
changed, other than by the caller's own hand: granted ones, and shed ones
carrying ``reason`` and ``retry_after``. (`take`, the queue's pull, returns
the ticket it hands out and appends the ones it sheds to a caller's list.)
An adapter resolves exactly those (wakes a future, answers 503) and arms
one timer for `next_deadline`. The
scheduler never reads a clock, sleeps, locks or does I/O, so one instance
behaves identically under asyncio, threads, a job worker or the simulator.

The rules of docs/concepts.md, as implemented in `_choose`:

1. *Eligibility (trunk reservation).* Level i may take a free seat when it
   holds fewer than ``max`` and, after taking it, the free seats still cover
   the unmet ``min`` of every more important level.
2. *Work conservation.* After every call, no waiting level is eligible while
   a seat is free (`_dispatch` runs until that holds).
3. *Guarantee.* When a free seat is going to be taken, the most important
   waiting level below its ``min`` takes it, ahead of every level that would
   borrow beyond its ``min``. A level below ``min`` is only ever kept out by
   ``max`` or by every waiting level being ineligible, so a flood of more
   important work cannot starve it: it gets the next seat that frees.
4. *Order.* Otherwise ``strict`` serves the most important eligible level;
   ``weighted`` uses stride scheduling over eligible levels (each grant
   advances the level's pass by 1/weight; lowest pass wins, ties to the more
   important). Deterministic and O(levels).
5. *Flows.* Within a level, flows take turns (`Lane`); FIFO within a flow.
6. *Shedding.* Queues are bounded per level and in total; a full gate
   evicts the newest waiter of the least important waiting level for a more
   important arrival, otherwise rejects the arrival. ``max_wait`` sheds
   waiters via `expire` (and at dispatch, should the adapter's timer be late).
7. *Resize.* Capacity changes re-resolve percentages; lowering it revokes
   nothing, new grants wait until holders have drained below the new limits.

Every operation is O(levels) plus amortised O(1) queue work, whatever the
number of waiters or flows.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import final

from ..errors import ConfigError, TicketStateError
from .choice import choose, choose_unreserved, lanes_ahead
from .lanes import Lane
from .levels import Level, LevelSet
from .policy import GatePolicy, LevelLimits, Order
from .rate import CompletionRate
from .stats import GateStats, WaitHistogram
from .tickets import Reason, Ticket, TicketState

__all__ = ["Scheduler"]

_NEW = TicketState.NEW
_WAITING = TicketState.WAITING
_GRANTED = TicketState.GRANTED
_RELEASED = TicketState.RELEASED
_CANCELLED = TicketState.CANCELLED
_SHED = TicketState.SHED

#: ``retry_after`` when nothing has completed recently to measure a rate from.
_FALLBACK_RETRY_AFTER = 1.0
_MAX_RETRY_AFTER = 3600.0
_WAIT_BATCH = WaitHistogram.BATCH
#: resolved capacities kept at most (an adaptive gate's range, typically)
_RESOLVED_KEPT = 1024


@final
class Scheduler:
    """The seats, queues and shedding decisions of one gate, with time as an argument.

    Not thread-safe: an adapter serialises calls (the event loop, a lock).
    ``now`` must not go backwards; a smaller value than last seen is treated
    as the last seen, so adapters that read the clock before taking their
    lock stay correct.
    """

    __slots__ = (
        "_by_name",
        "_capacity",
        "_closed",
        "_completions",
        "_has_min",
        "_in_use",
        "_lanes",
        "_limits",
        "_now",
        "_queue_limit",
        "_reserve",
        "_reserve_stale",
        "_resolved",
        "_simple",
        "_vtime",
        "_waiting",
        "_weighted",
        "levels",
        "name",
        "policy",
    )

    def __init__(self, policy: GatePolicy) -> None:
        self.policy = policy
        self.name = policy.name
        self.levels: LevelSet = policy.level_set
        self._lanes = [Lane(level) for level in self.levels]
        self._by_name = {level.name: level for level in self.levels}
        self._weighted = policy.order is Order.WEIGHTED
        self._queue_limit = policy.queue
        self._capacity = 0
        self._in_use = 0
        self._waiting = 0
        self._closed = False
        self._now = -math.inf
        self._vtime = 0.0
        self._reserve = [0] * len(self._lanes)
        self._reserve_stale = True
        self._has_min = False
        self._simple = False
        self._limits: list[LevelLimits] = []
        #: ``policy.resolve`` by capacity, kept for resizes back to a capacity seen before
        self._resolved: dict[int, list[LevelLimits]] = {}
        #: completions per second behind ``retry_after``, fed by `_released` once per window
        self._completions = CompletionRate()
        self._apply_capacity(policy.capacity)

    # -- queries ----------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def in_use(self) -> int:
        """Seats held now (may exceed capacity for a while after a resize down)."""
        return self._in_use

    @property
    def waiting(self) -> int:
        """Tickets queued now, all levels together."""
        return self._waiting

    @property
    def is_closed(self) -> bool:
        return self._closed

    def held(self, level: Level | str | int) -> int:
        return self._lanes[self.levels.resolve(level).rank].held

    def waiting_at(self, level: Level | str | int) -> int:
        return self._lanes[self.levels.resolve(level).rank].waiting

    def limits(self, level: Level | str | int) -> LevelLimits:
        """The level's knobs resolved for the current capacity."""
        return self._limits[self.levels.resolve(level).rank]

    def waiting_tickets(self, level: Level | str | int) -> list[Ticket]:
        """Queued tickets of one level in arrival order (O(n); for inspection and tests)."""
        return self._lanes[self.levels.resolve(level).rank].tickets()

    def next_deadline(self) -> float | None:
        """When the oldest waiter reaches ``max_wait``: the time to call `expire` next."""
        soonest: float | None = None
        if self._waiting:
            for lane in self._lanes:
                if lane.waiting and lane.max_wait != math.inf:
                    oldest = lane.oldest()
                    if oldest is not None and (soonest is None or oldest.deadline < soonest):
                        soonest = oldest.deadline
        return soonest

    def stats(self) -> GateStats:
        """A frozen snapshot of seats, queues and counters per level."""
        levels = tuple(lane.stats() for lane in self._lanes)
        return GateStats(self.name, self._capacity, self._in_use, self._waiting, levels)

    def histograms(self, level: Level | str | int) -> tuple[WaitHistogram, WaitHistogram]:
        """The live wait and service histograms behind one level's stats.

        For adapters that carry stats over from one scheduler to the next (a
        queue switching layouts): read or `WaitHistogram.merge` them, never
        record into them.
        """
        lane = self._lanes[self.levels.resolve(level).rank]
        return lane.waits, lane.service

    def retry_after(self, level: Level | str | int, now: float) -> float:
        """Seconds until a new request at ``level`` could be served: the estimate a shed
        ticket carries, for adapters that refuse a request themselves (a client timeout)."""
        return self._retry_after(self.levels.resolve(level).rank, max(now, self._now))

    def completion_rate(self, now: float) -> float:
        """Releases per second over the recent window (the ``retry_after`` denominator)."""
        return self._completions.per_second(max(now, self._now), self._released())

    # -- mutations --------------------------------------------------------------

    def ticket(
        self,
        level: Level | str | int,
        flow: Hashable | None = None,
        data: object = None,
        *,
        wait: bool = True,
    ) -> Ticket:
        """A new ticket of this gate's level set (names and ranks are resolved here)."""
        resolved = self._by_name.get(level) if type(level) is str else None
        return Ticket(resolved or self.levels.resolve(level), flow, data, wait=wait)

    def submit(self, ticket: Ticket, now: float) -> list[Ticket]:
        """Ask for a seat. The ticket ends up GRANTED, WAITING or SHED.

        Returns every ticket whose state changed, the submitted one included
        unless it is left waiting, plus any waiter evicted to make room.
        """
        if ticket.state is not _NEW:
            raise TicketStateError(
                f"{ticket!r} was already submitted; submit only new tickets, once"
            )
        try:
            lane = self._lanes[ticket.level.rank]
        except IndexError:
            lane = self._lane_of(ticket)  # raises
        if lane.level is not ticket.level:  # identity: cheaper than Level.__eq__
            lane = self._lane_of(ticket)
        if now > self._now:
            self._now = now
        else:
            now = self._now
        ticket.submitted_at = now
        if self._closed:
            self._shed(ticket, Reason.SHUTDOWN, now)
            return [ticket]
        free = self._capacity - self._in_use
        if (
            free > 0
            and lane.held < lane.max
            and free > (self._reserves()[lane.level.rank] if self._has_min else 0)
        ):
            if not self._waiting:  # a seat at once: the uncontended hot path, inlined
                ticket.state = _GRANTED
                ticket.granted_at = now
                held = lane.held
                lane.held = held + 1
                if held < lane.min:
                    self._reserve_stale = True
                self._in_use += 1
                lane.waits.zero += 1  # waited 0 s: counted, no sample to fold
                return [ticket]
            # Seats are free but others wait; let the full rules decide between them.
            changed: list[Ticket] = []
            self._enqueue(lane, ticket, now)
            self._dispatch(now, changed)
            if ticket.state is _GRANTED:
                return changed
            lane.pop_newest()  # it is the newest arrival; requeue it under the bounds below
            self._waiting -= 1
            ticket.state = _NEW
            return changed + self._queue_or_shed(lane, ticket, now)
        if (  # the common overload case, inlined: room to wait, nothing to evict
            self._waiting < self._queue_limit
            and lane.waiting < lane.queue
            and ticket.wait
            and lane.max_wait > 0.0
            and lane.max
        ):
            self._enqueue(lane, ticket, now)
            return []
        return self._queue_or_shed(lane, ticket, now)

    def release(self, ticket: Ticket, now: float) -> list[Ticket]:
        """Give a granted ticket's seat back; returns the tickets granted in its place.

        How long the seat was held is recorded for stats (``LevelStats.service``).
        """
        if ticket.state is not _GRANTED:
            raise TicketStateError(f"cannot release {ticket!r}: only a granted ticket holds a seat")
        try:
            lane = self._lanes[ticket.level.rank]
        except IndexError:
            lane = self._lane_of(ticket)  # raises
        if lane.level is not ticket.level:  # identity: cheaper than Level.__eq__
            lane = self._lane_of(ticket)
        if now > self._now:
            self._now = now
        else:
            now = self._now
        ticket.state = _RELEASED
        service = lane.service.pending
        service.append(now - ticket.granted_at)  # type: ignore[operator]  # set: it was granted
        if len(service) >= _WAIT_BATCH:
            lane.service.fold()
        held = lane.held
        lane.held = held - 1
        if held <= lane.min:
            self._reserve_stale = True
        self._in_use -= 1
        if now >= self._completions.due:
            self._completions.sample(now, self._released())
        if not self._waiting:
            return []
        changed: list[Ticket] = []
        self._dispatch(now, changed)
        return changed

    def take(self, now: float, shed: list[Ticket]) -> Ticket | None:
        """Hand the next waiting ticket, by the order rules, to a consumer that pulls.

        For a queue, where a consumer asking is what a free seat is elsewhere:
        no seat is counted, so ``min`` plays no part and ``max`` only where it
        is 0 (such a level is not served, as for grants). Strict order takes from the most important
        waiting level, weighted order by stride as a grant would, and flows
        take turns as always. The ticket ends RELEASED, its wait recorded and
        counted as a completion for ``retry_after``. Tickets found past their
        ``max_wait`` on the way (the adapter's timer is late) are shed with
        reason ``timeout`` and appended to ``shed``. None when nothing that
        may be served waits.
        """
        if now > self._now:
            self._now = now
        else:
            now = self._now
        lanes = self._lanes
        while self._waiting:
            if self._weighted:
                best: Lane | None = None
                for lane in lanes:
                    if lane.waiting and lane.max and (best is None or lane.pass_ < best.pass_):
                        best = lane  # ties go to the more important, as for grants
                if best is None:
                    return None
                lane = best
                self._vtime = lane.pass_
                lane.pass_ += lane.stride
            else:
                for lane in lanes:
                    if lane.waiting and lane.max:
                        break
                else:
                    return None
            ticket = lane.pop_next()
            self._waiting -= 1
            if ticket.deadline < now:
                self._shed(ticket, Reason.TIMEOUT, now)
                shed.append(ticket)
                continue
            ticket.state = _RELEASED
            ticket.granted_at = now
            pending = lane.waits.pending
            pending.append(now - ticket.submitted_at)
            if len(pending) >= _WAIT_BATCH:
                lane.waits.fold()
            if now >= self._completions.due:
                self._completions.sample(now, self._released())
            return ticket
        return None

    def cancel(self, ticket: Ticket, now: float) -> list[Ticket]:
        """Withdraw a request whatever its state.

        A waiting ticket leaves its queue (CANCELLED); a granted one gives its
        seat back, as `release` (RELEASED), which covers a cancellation that
        races with a grant; a finished ticket is left as it is.
        """
        state = ticket.state
        if state is _GRANTED:
            return self.release(ticket, now)
        if state is _WAITING:
            lane = self._lane_of(ticket)
            ticket.state = _CANCELLED
            lane.remove(ticket)
            self._waiting -= 1
            lane.cancelled += 1
            # Leaving can unblock nobody: a waiter only ever blocks by holding a seat.
            return []
        if state is _NEW:
            ticket.state = _CANCELLED  # never submitted: nothing to count
        return []

    def expire(self, now: float) -> list[Ticket]:
        """Shed every waiter that has waited its level's ``max_wait``.

        Adapters call this from their one timer, armed for `next_deadline`.
        """
        self._now = max(self._now, now)
        now = self._now
        shed: list[Ticket] = []
        if not self._waiting:
            return shed
        for lane in self._lanes:
            if not lane.waiting or lane.max_wait == math.inf:
                continue
            while True:
                oldest = lane.oldest()
                if oldest is None or oldest.deadline > now:
                    break
                lane.pop_oldest()
                self._waiting -= 1
                self._shed(oldest, Reason.TIMEOUT, now)
                shed.append(oldest)
        return shed

    def resize(self, capacity: int, now: float) -> list[Ticket]:
        """Change the number of seats; returns tickets granted if it grew.

        Lowering capacity takes no seat away: new grants wait until holders
        drain below the new limits. Percentages are resolved again.
        """
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
            raise ConfigError(f"gates.{self.name}.capacity: {capacity!r} is not a whole number ≥ 1")
        self._now = max(self._now, now)
        self._apply_capacity(capacity)
        changed: list[Ticket] = []
        self._dispatch(self._now, changed)
        return changed

    def close(self, now: float) -> list[Ticket]:
        """Stop admitting: shed every waiter with reason ``shutdown``.

        Holders keep their seats until they release; later submits are shed.
        """
        self._now = max(self._now, now)
        self._closed = True
        shed: list[Ticket] = []
        for lane in self._lanes:
            for ticket in lane.tickets():
                ticket.state = _CANCELLED  # marks its entries stale before removal
                lane.remove(ticket)
                self._waiting -= 1
                self._shed(ticket, Reason.SHUTDOWN, self._now)
                shed.append(ticket)
        return shed

    # -- internals --------------------------------------------------------------

    def _lane_of(self, ticket: Ticket) -> Lane:
        """The ticket's lane, checked: its level must be one of this gate's levels."""
        level = ticket.level
        if 0 <= level.rank < len(self._lanes) and self._lanes[level.rank].level == level:
            return self._lanes[level.rank]
        raise TicketStateError(
            f"{ticket!r} has level {level!r}, which is not one of gate {self.name!r}'s "
            f"levels {self.levels.names}; create tickets with Scheduler.ticket()"
        )

    def _apply_capacity(self, capacity: int) -> None:
        self._capacity = capacity
        limits = self._resolved.get(capacity)
        if limits is None:
            # An adaptive limit moves back and forth over a range of capacities:
            # resolving percentages costs tens of µs, a lookup nothing.
            if len(self._resolved) >= _RESOLVED_KEPT:
                self._resolved.clear()
            limits = self._resolved[capacity] = self.policy.resolve(capacity)
        self._limits = limits
        for lane, lim in zip(self._lanes, self._limits, strict=True):
            lane.min = lim.min
            lane.max = lim.max
            lane.weight = lim.weight
            lane.stride = 1.0 / lim.weight
            lane.queue = lim.queue
            lane.max_wait = lim.max_wait
        self._has_min = any(lim.min for lim in self._limits)
        # strict order and no reservation anywhere: dispatch takes the short path
        self._simple = not self._has_min and not self._weighted
        self._reserve_stale = True

    def _reserves(self) -> list[int]:
        """For each level, the unmet ``min`` of all more important levels together."""
        if self._reserve_stale:
            total = 0
            for lane in self._lanes:
                self._reserve[lane.level.rank] = total
                if lane.held < lane.min:
                    total += lane.min - lane.held
            self._reserve_stale = False
        return self._reserve

    def _shed(self, ticket: Ticket, reason: Reason, now: float) -> None:
        ticket.state = _SHED
        ticket.reason = reason
        ticket.retry_after = self._retry_after(ticket.level.rank, now)
        self._lanes[ticket.level.rank].shed[reason] += 1

    def _enqueue(self, lane: Lane, ticket: Ticket, now: float) -> None:
        if self._weighted and not lane.waiting and lane.pass_ < self._vtime:
            lane.pass_ = self._vtime  # no credit hoarded while idle
        lane.append(ticket, now + lane.max_wait)
        self._waiting += 1

    def _queue_or_shed(self, lane: Lane, ticket: Ticket, now: float) -> list[Ticket]:
        if not ticket.wait or lane.max_wait <= 0.0 or lane.max == 0:
            # may not wait, or would wait for a seat its level can never hold
            self._shed(ticket, Reason.LIMIT, now)
            return [ticket]
        if lane.waiting >= lane.queue:
            self._shed(ticket, Reason.QUEUE_FULL, now)
            return [ticket]
        if self._waiting >= self._queue_limit:
            victim_lane = self._least_important_waiting()
            if victim_lane is None or victim_lane.level.rank <= lane.level.rank:
                self._shed(ticket, Reason.QUEUE_FULL, now)
                return [ticket]
            victim = victim_lane.pop_newest()
            self._waiting -= 1
            self._shed(victim, Reason.EVICTED, now)
            self._enqueue(lane, ticket, now)
            return [victim]
        self._enqueue(lane, ticket, now)
        return []

    def _least_important_waiting(self) -> Lane | None:
        for lane in reversed(self._lanes):
            if lane.waiting:
                return lane
        return None

    def _dispatch(self, now: float, changed: list[Ticket]) -> None:
        """Hand free seats to waiters until none is free or no waiter is eligible."""
        lanes = self._lanes
        while self._waiting and self._in_use < self._capacity:
            if self._simple:  # rule 4, strict, with no min to honour: the hot path
                for lane in lanes:
                    if lane.waiting and lane.held < lane.max:
                        break
                else:
                    return
            elif not self._has_min:  # weighted, no min: stride scheduling, inlined
                best = choose_unreserved(lanes)
                if best is None:
                    return
                lane = best
                self._vtime = lane.pass_
                lane.pass_ += lane.stride
            else:
                choice = self._choose()
                if choice is None:
                    return
                lane = choice
            ticket = lane.pop_next()
            self._waiting -= 1
            changed.append(ticket)
            if ticket.deadline < now:  # the adapter's expiry timer is late
                self._shed(ticket, Reason.TIMEOUT, now)
                continue
            # the grant, inlined: this loop is the scheduler's hottest path
            ticket.state = _GRANTED
            ticket.granted_at = now
            held = lane.held
            lane.held = held + 1
            if held < lane.min:
                self._reserve_stale = True
            self._in_use += 1
            pending = lane.waits.pending
            pending.append(now - ticket.submitted_at)
            if len(pending) >= _WAIT_BATCH:
                lane.waits.fold()

    def _choose(self) -> Lane | None:
        lane, by_guarantee = choose(
            self._lanes, self._capacity - self._in_use, self._reserves(), self._weighted
        )
        if lane is not None and self._weighted and not by_guarantee:
            self._charge(lane)  # guaranteed seats are not contended: they cost no turn
        return lane

    def _charge(self, lane: Lane) -> None:
        self._vtime = lane.pass_
        lane.pass_ += lane.stride

    def _released(self) -> int:
        """Seats given back so far (queue pulls included): every grant but the seats held.

        Derived when the completion rate is sampled (once per window) or a
        request is shed, so the release path counts nothing of its own.
        """
        return sum(lane.waits.count - lane.held for lane in self._lanes)

    def _retry_after(self, rank: int, now: float) -> float:
        """Little's law: the work queued ahead of this level over the completion rate."""
        rate = self._completions.per_second(now, self._released())
        if rate <= 0.0:
            return _FALLBACK_RETRY_AFTER
        return min(lanes_ahead(self._lanes, rank, self._weighted) / rate, _MAX_RETRY_AFTER)

    def __repr__(self) -> str:
        return (
            f"<Scheduler {self.name} {self._in_use}/{self._capacity} seats, "
            f"{self._waiting} waiting>"
        )
