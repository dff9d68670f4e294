"""One level's waiting room: flows taking turns, FIFO within a flow, O(1) everything.

A lane keeps each waiting ticket in two deques:

* ``arrivals``, the level's arrival order, whose left end is the oldest
  waiter (the first to reach ``max_wait``) and whose right end is the newest
  (the one evicted when the gate's queue is full);
* its flow's ``queue``, FIFO within the flow; flows with waiters sit in
  ``ring`` and are served round-robin, one ticket per turn.

A flow with no live waiter leaves the ring at once, whatever emptied it, and
rejoins at the back when a waiter arrives: a turn is never kept for a flow
that has nothing to serve.

Removal is lazy. A ticket leaving from the middle of a deque (a cancel, or a
grant that is not the oldest arrival) stays there as a *stale* entry, skipped
and dropped when it reaches an end; so does the ring entry of a flow that
emptied out of turn (an *orphan*, recognised by ``live == 0``). ``stale``
counts these entries; when they outnumber live waiters the lane is
compacted, so memory stays proportional to the live queue and every
operation is amortised O(1).

*Solo mode.* Most lanes serve one flow at a time (no flows given, or one
tenant busy). While every live waiter shares one flow key, the lane keeps
``arrivals`` alone: it *is* that flow's FIFO, so the flow record, the ring
and the second deque cost nothing. The first waiter of another flow splits
the lane (the solo flow's queue is built from ``arrivals``, O(n) once); it
returns to solo mode when it empties. Each waiter is copied at most once per
split, so this stays amortised O(1).

Rejected alternatives: a heap re-heapified on eviction (O(n), the seed's
defect); ``dict``-as-ordered-set (popping its front is O(n) between resizes);
intrusive doubly-linked lists (exact O(1) but about twice the attribute
traffic of ``deque`` on the hot path).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import final

from .levels import Level
from .stats import LevelStats, WaitHistogram
from .tickets import Reason, Ticket, TicketState

__all__: list[str] = []

_WAITING = TicketState.WAITING
_COMPACT_SLACK = 64
_SPARE_FLOWS = 64


@final
class _Flow:
    __slots__ = ("key", "live", "queue")

    def __init__(self, key: Hashable | None) -> None:
        self.key = key
        #: live waiters in ``queue``; 0 means the flow is an orphan ring entry
        self.live = 0
        self.queue: deque[Ticket] = deque()


@final
class Lane:
    """Waiting tickets, seats held and counters of one level at one gate."""

    __slots__ = (
        "arrivals",
        "cancelled",
        "flows",
        "held",
        "level",
        "max",
        "max_wait",
        "min",
        "pass_",
        "queue",
        "ring",
        "service",
        "shed",
        "solo",
        "solo_key",
        "spare",
        "stale",
        "stride",
        "waiting",
        "waits",
        "weight",
    )

    def __init__(self, level: Level) -> None:
        self.level = level
        # resolved knobs, set by the scheduler from the policy
        self.min = 0
        self.max = 0
        self.weight = 1.0
        self.stride = 1.0
        self.queue = 0
        self.max_wait = 0.0
        # live state
        self.held = 0
        self.waiting = 0
        self.stale = 0
        #: stride-scheduling position under weighted order
        self.pass_ = 0.0
        self.arrivals: deque[Ticket] = deque()
        #: every live waiter has flow ``solo_key``; ``flows`` and ``ring`` are empty
        self.solo = True
        self.solo_key: Hashable | None = None
        self.flows: dict[Hashable | None, _Flow] = {}
        self.ring: deque[_Flow] = deque()
        #: emptied flow records kept for reuse: most arrivals open an empty flow
        self.spare: list[_Flow] = []
        # counters, for stats; grants are counted by ``waits``, and submissions and
        # releases follow from the outcomes, so the hot path counts nothing twice
        self.cancelled = 0
        self.shed: dict[Reason, int] = dict.fromkeys(Reason, 0)
        self.waits = WaitHistogram()
        #: how long each seat given back by ``Scheduler.release`` was held
        self.service = WaitHistogram()

    def append(self, ticket: Ticket, deadline: float) -> None:
        """Queue ``ticket`` at the back of its flow, to be shed at ``deadline``."""
        ticket.state = _WAITING
        ticket.deadline = deadline
        if self.solo:
            key = ticket.flow
            if not self.waiting:
                self.solo_key = key
            elif key is not self.solo_key and key != self.solo_key:  # as a dict compares keys
                self._split()
                self._append_to_flow(ticket)
                return
            self.arrivals.append(ticket)
            self.waiting += 1
            return
        self._append_to_flow(ticket)

    def _append_to_flow(self, ticket: Ticket) -> None:
        flow = self.flows.get(ticket.flow)
        if flow is None:
            if self.spare:
                flow = self.spare.pop()
                flow.key = ticket.flow
            else:
                flow = _Flow(ticket.flow)
            self.flows[ticket.flow] = flow
            self.ring.append(flow)
        flow.queue.append(ticket)
        flow.live += 1
        self.arrivals.append(ticket)
        self.waiting += 1

    def _split(self) -> None:
        """Leave solo mode: the solo flow gets its own queue of the live waiters."""
        flow = self.spare.pop() if self.spare else _Flow(self.solo_key)
        flow.key = self.solo_key
        flow.queue.extend(t for t in self.arrivals if t.state is _WAITING)
        flow.live = self.waiting
        self.flows[flow.key] = flow
        self.ring.append(flow)
        self.solo = False

    def pop_next(self) -> Ticket:
        """Remove and return the next ticket to serve: the head of the flow whose turn it is."""
        if self.solo:
            arrivals = self.arrivals
            ticket = arrivals.popleft()
            while ticket.state is not _WAITING:
                self.stale -= 1
                ticket = arrivals.popleft()
            waiting = self.waiting = self.waiting - 1
            if not waiting or self.stale > 2 * waiting + _COMPACT_SLACK:
                self._tidy()
            return ticket
        ring = self.ring
        flow = ring[0]
        while not flow.live:  # orphans: their queues hold only stale entries
            ring.popleft()
            self.stale -= len(flow.queue) + 1
            flow = ring[0]
        queue = flow.queue
        ticket = queue.popleft()
        while ticket.state is not _WAITING:
            self.stale -= 1
            ticket = queue.popleft()
        flow.live -= 1
        if flow.live:
            ring.rotate(-1)
        else:
            ring.popleft()
            del self.flows[flow.key]
            if queue:
                self.stale -= len(queue)
                queue.clear()
            # out of the ring and the dict: nothing refers to it, it may be reused
            if len(self.spare) < _SPARE_FLOWS:
                self.spare.append(flow)
        arrivals = self.arrivals
        if arrivals[0] is ticket:
            arrivals.popleft()
        else:
            self.stale += 1
        waiting = self.waiting = self.waiting - 1
        if not waiting or self.stale > 2 * waiting + _COMPACT_SLACK:
            self._tidy()
        return ticket

    def pop_newest(self) -> Ticket:
        """Remove and return the most recent arrival (the eviction victim)."""
        arrivals = self.arrivals
        while arrivals[-1].state is not _WAITING:
            arrivals.pop()
            self.stale -= 1
        ticket = arrivals.pop()
        if self.solo:
            self._left()
            return ticket
        flow = self.flows[ticket.flow]
        # Newer entries of its flow, if any, are stale: it is the newest live one.
        queue = flow.queue
        while queue[-1] is not ticket:
            queue.pop()
            self.stale -= 1
        queue.pop()
        self._flow_left(flow)
        self._left()
        return ticket

    def oldest(self) -> Ticket | None:
        """The longest-waiting live ticket, or None."""
        arrivals = self.arrivals
        while arrivals and arrivals[0].state is not _WAITING:
            arrivals.popleft()
            self.stale -= 1
        return arrivals[0] if arrivals else None

    def pop_oldest(self) -> Ticket:
        """Remove and return the longest-waiting ticket (call after `oldest` found one)."""
        ticket = self.arrivals.popleft()
        if self.solo:
            self._left()
            return ticket
        flow = self.flows[ticket.flow]
        queue = flow.queue
        # It is the oldest live ticket of its flow too: whatever precedes it is stale.
        while queue[0] is not ticket:
            queue.popleft()
            self.stale -= 1
        queue.popleft()
        self._flow_left(flow)
        self._left()
        return ticket

    def remove(self, ticket: Ticket) -> None:
        """Forget a waiting ticket from anywhere in the queue (a cancel).

        The caller changes the ticket's state first: that is what marks its
        two entries stale.
        """
        if self.solo:
            self.stale += 1
        else:
            self.stale += 2
            self._flow_left(self.flows[ticket.flow])
        self._left()

    def _flow_left(self, flow: _Flow) -> None:
        # Out of turn: if the flow is now empty its ring entry becomes an orphan.
        flow.live -= 1
        if not flow.live:
            del self.flows[flow.key]
            self.stale += 1

    def _left(self) -> None:
        self.waiting -= 1
        self._tidy()

    def _tidy(self) -> None:
        if self.waiting == 0:
            self.solo = True
            if self.stale:  # with no stale entry every deque is already empty
                self.arrivals.clear()
                self.flows.clear()
                self.ring.clear()
                self.stale = 0
        elif self.stale > 2 * self.waiting + _COMPACT_SLACK:
            self._compact()

    def _compact(self) -> None:
        self.arrivals = deque(t for t in self.arrivals if t.state is _WAITING)
        self.ring = deque(flow for flow in self.ring if flow.live)
        for flow in self.ring:
            flow.queue = deque(t for t in flow.queue if t.state is _WAITING)
        self.stale = 0

    def stats(self) -> LevelStats:
        """A frozen snapshot of this level's seats, queue and counters."""
        granted = self.waits.count
        return LevelStats(
            level=self.level.name,
            min=self.min,
            max=self.max,
            in_use=self.held,
            waiting=self.waiting,
            flows=len(self.flow_keys()),
            submitted=granted + sum(self.shed.values()) + self.cancelled + self.waiting,
            granted=granted,
            released=granted - self.held,
            cancelled=self.cancelled,
            shed=dict(self.shed),
            wait=self.waits.summary(),
            service=self.service.summary(),
        )

    def tickets(self) -> list[Ticket]:
        """Live waiting tickets in arrival order (for close, stats and tests; O(n))."""
        return [t for t in self.arrivals if t.state is _WAITING]

    def flow_keys(self) -> list[Hashable | None]:
        """Flows with live waiters, in the order they will be served (O(flows))."""
        if self.solo:
            return [self.solo_key] if self.waiting else []
        return [flow.key for flow in self.ring if flow.live]

    def stale_entries(self) -> int:
        """Recount what ``stale`` tracks incrementally (O(n); for invariant checks)."""
        entries = len(self.arrivals) + sum(len(flow.queue) for flow in self.ring)
        orphans = sum(1 for flow in self.ring if not flow.live)
        live_entries = self.waiting if self.solo else 2 * self.waiting
        return entries + orphans - live_entries
