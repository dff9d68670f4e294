"""The sans-I/O state both priority queues share: which item a consumer gets, and when.

Theory of operation
-------------------
Items are tickets of a core `Scheduler` (``ticket.data`` is the item), so
the order, the bounds, eviction and ``max_wait`` are the scheduler's rules,
decided in one place. The scheduler hands out *seats*; the question is what
a seat stands for in a queue. Here a seat is **a consumer ready to take an
item**, and a grant is an item handed to such a consumer. Two layouts
follow, one per way of consuming:

* **take layout** (``get()``): one seat. While nobody waits in ``get()`` the
  seat is held by a *plug* ticket (of a private level ranked below every
  real one: with no ``min`` in this layout its rank decides nothing, and
  last keeps it out of the order loops' way), so every put waits in the scheduler in
  policy order, and ``get`` pulls the next item with `Scheduler.take` (the
  order rules, no seat counted: the consumer asking is the free seat). When
  consumers wait and nothing is queued, the seat is freed, so a put is
  granted at once and goes to a waiting consumer: no item is ever granted
  to nobody (no prefetch). ``min`` is left out of this layout and ``max``
  keeps only its zero: both limit seats held *while work is in progress*,
  which ``get()`` cannot see (``task_done`` is optional, as in asyncio).
* **serve layout** (``serve(handler, concurrency=N)``): N seats, one per
  worker, with the policy's every knob resolved for N. A worker waiting for
  work is a free seat; a grant is an item handed to it; the seat is released
  when the handler returns, so ``min`` and ``max`` are limits on work in
  progress across the workers. Seats of workers not yet waiting are held by
  plugs of a private level ranked above every real one (it never queues).

Switching layouts (``serve`` starting or stopping) files the waiting items
into a fresh scheduler, oldest first, each submitted at its own original
time so its ``max_wait`` deadline is kept: O(n) once per switch.

*Stats.* Plugs live on their own level in both layouts, so the policy's
levels count items only. A switch retires the old scheduler's counters and
histograms into ``_retired`` (less the queued items it moved, which are
counted again where they end), so `stats` never goes back: Prometheus
counters stay monotonic. Service times are kept from the serve layout only:
there a seat is held while the handler runs; a take layout's seat is held
by whatever item was handed last, which measures nothing.

Invariant of the take layout, between calls: the seat is free exactly when
more consumers wait (``getters``) than items are ready for them (``ready``,
granted to woken consumers but not yet picked up). So a free seat implies an
empty queue, and a grant always has a consumer.

Rejected alternatives: a seat per waiting consumer by resizing (O(levels)
per get, and it re-resolves percentages, which means nothing for a queue);
seats = items between get() and task_done() (a consumer that never calls
task_done, legal with asyncio.Queue, would stall the queue); a capacity-1
scheduler for serve() too (``max`` could not act across N workers).

Everything here is synchronous and clock-free: the adapters (`aio`,
`threads`) pass ``now``, serialise calls, wake consumers for ``wake``
grants and deliver the tickets collected in ``shed``.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Hashable
from typing import final

from ..core.levels import Level, LevelSet
from ..core.policy import GatePolicy, LevelPolicy
from ..core.scheduler import Scheduler
from ..core.stats import GateStats, LevelStats, WaitHistogram
from ..core.tickets import Reason, Ticket, TicketState

__all__ = ["QueueState"]

_WAITING = TicketState.WAITING
_GRANTED = TicketState.GRANTED
_SHED = TicketState.SHED

#: ``data`` of the tickets that hold seats for absent consumers
_PLUG = object()


@final
class _Retired:
    """What the schedulers a queue has switched away from counted for one level."""

    __slots__ = ("granted", "service", "shed", "waits")

    def __init__(self) -> None:
        self.granted = 0
        self.shed: dict[Reason, int] = dict.fromkeys(Reason, 0)
        self.waits = WaitHistogram()
        self.service = WaitHistogram()


@final
class QueueState:
    """Items, seats and counters of one priority queue, with time as an argument.

    Not thread-safe: each adapter serialises calls (the event loop, a lock).
    """

    __slots__ = (
        "_plug_level",
        "_plug_name",
        "_plugs",
        "_retired",
        "by_name",
        "closed",
        "getters",
        "holder",
        "policy",
        "ready",
        "scheduler",
        "serving",
        "shed",
        "unfinished",
        "wake",
    )

    def __init__(self, policy: GatePolicy) -> None:
        if not isinstance(policy, GatePolicy):
            raise TypeError(
                f"a priority queue takes a GatePolicy, not {type(policy).__name__}; "
                "from a policy file use Policy.gate(name)"
            )
        self.policy = policy
        self._plug_name = _plug_name(policy.level_set)
        self.scheduler = Scheduler(_take_policy(policy, self._plug_name))
        self.by_name: dict[str, Level] = {}
        self._plug_level = self.scheduler.levels[self._plug_name]
        self._use_levels()
        self._retired = {name: _Retired() for name in policy.level_set.names}
        #: the ticket holding the take layout's seat, None when the seat is free
        self.holder: Ticket | None = None
        #: serve layout: seats held for workers that are not waiting yet
        self._plugs: list[Ticket] = []
        #: granted tickets whose consumer has been woken but has not picked them up
        self.ready: deque[Ticket] = deque()
        #: consumers waiting for an item (take layout: blocked in get())
        self.getters = 0
        #: outbox: tickets shed since the adapter last looked (``data`` is the item)
        self.shed: list[Ticket] = []
        #: outbox: grants added to ``ready``; the adapter wakes that many consumers
        self.wake = 0
        #: items put and not yet marked done (task_done) or shed, as for join()
        self.unfinished = 0
        self.serving = False
        self.closed = False

    # -- queries ----------------------------------------------------------------

    def qsize(self, level: Level | str | int | None = None) -> int:
        if level is None:
            return self.scheduler.waiting + len(self.ready)
        resolved = self.level(level)
        return self.scheduler.waiting_at(resolved) + sum(
            1 for t in self.ready if t.level is resolved
        )

    def stats(self) -> GateStats:
        """Items per level since the queue was made: handed out, shed, queued.

        ``granted`` counts items handed to a consumer; ``in_use`` and
        ``capacity`` count ``serve`` workers busy and running (0 for ``get()``
        consumers, whose work the queue cannot see), and ``service`` their
        handlers' run times.
        """
        scheduler = self.scheduler
        levels = tuple(
            self._level_stats(scheduler, current)
            for current in scheduler.stats().levels
            if current.level in self._retired
        )
        capacity = scheduler.capacity if self.serving else 0
        in_use = sum(level.in_use for level in levels)
        waiting = sum(level.waiting for level in levels)
        return GateStats(self.policy.name, capacity, in_use, waiting, levels)

    def _level_stats(self, scheduler: Scheduler, current: LevelStats) -> LevelStats:
        retired = self._retired[current.level]
        waits, service = scheduler.histograms(current.level)
        all_waits = WaitHistogram()
        all_waits.merge(retired.waits)
        all_waits.merge(waits)
        all_service = WaitHistogram()
        all_service.merge(retired.service)
        if self.serving:
            all_service.merge(service)
        shed = {reason: retired.shed[reason] + n for reason, n in current.shed.items()}
        granted = retired.granted + current.granted
        in_use = current.in_use if self.serving else 0
        return LevelStats(
            level=current.level,
            min=current.min,
            max=current.max,
            in_use=in_use,
            waiting=current.waiting,
            flows=current.flows,
            submitted=granted + sum(shed.values()) + current.waiting,
            granted=granted,
            released=granted - in_use,
            cancelled=0,
            shed=shed,
            wait=all_waits.summary(),
            service=all_service.summary(),
        )

    def level(self, level: Level | str | int) -> Level:
        """The current layout's level for a name, rank or `Level` of the policy's set."""
        if type(level) is str:
            found = self.by_name.get(level)
            if found is not None:
                return found
        return self.by_name[self.policy.level_set.resolve(level).name]

    # -- the take layout --------------------------------------------------------

    def start(self, now: float) -> None:
        """Hold the seat: call once, with the adapter's first reading of its clock."""
        self._balance(now)

    def put(
        self, item: object, level: Level | str | int, flow: Hashable | None, now: float
    ) -> Ticket:
        """File an item; returns its ticket (SHED when refused: it is then in ``shed``).

        The adapters inline the common case (the ticket waits, nothing is
        evicted) and call `filed` for the rest; this does both in one call.
        """
        lvl = self.by_name.get(level) if type(level) is str else None
        ticket = Ticket(lvl or self.level(level), flow, item)
        self.filed(ticket, self.scheduler.submit(ticket, now), now)
        return ticket

    def filed(self, ticket: Ticket, changed: list[Ticket], now: float) -> None:
        """Account for ``scheduler.submit(ticket)`` and the tickets it changed."""
        state = ticket.state
        if state is _WAITING:
            self.unfinished += 1
            self._shed_waiters(changed)  # a waiter evicted to make room, if any
        elif state is _GRANTED:  # a seat was free: a consumer is waiting for it
            self.unfinished += 1
            self.ready.append(ticket)
            self.wake += 1
            if not self.serving:
                self.holder = ticket
                self._balance(now)
        else:
            self.shed.append(ticket)  # refused: never counted as unfinished

    def take(self, now: float, *, waiting: bool = False) -> Ticket | None:
        """The next item for a consumer, or None when there is none (take layout).

        ``waiting``: the consumer is one of ``getters``, woken; if it gets an
        item it stops waiting (one step, so the seat is not freed and retaken).
        """
        ready = self.ready
        if ready:
            ticket = ready.popleft()
            if waiting:
                self.getters -= 1
                self._balance(now)
            elif self.getters > len(ready):
                self._balance(now)
            return ticket
        # Items queue only while no consumer waits (the seat is held), so this
        # consumer is alone: it pulls the next item by the rules, seats untouched.
        shed = self.shed
        before = len(shed)
        pulled = self.scheduler.take(now, shed)
        if len(shed) != before:
            self.unfinished -= len(shed) - before  # past max_wait: the timer was late
        return pulled

    def register(self, now: float) -> None:
        """A consumer starts waiting (it found nothing to take)."""
        self.getters += 1
        if not self.serving:
            self._balance(now)

    def unregister(self, now: float) -> None:
        """A waiting consumer leaves: it took an item, timed out or was cancelled."""
        self.getters -= 1
        if not self.serving:
            self._balance(now)

    def _balance(self, now: float) -> None:
        """Free the seat exactly when more consumers wait than items are ready for them."""
        scheduler = self.scheduler
        while self.getters > len(self.ready) and self.holder is not None:
            changed = scheduler.release(self.holder, now)
            self.holder = None
            for t in changed:  # a grant only if items were queued: give it to a waiter
                if t.state is _GRANTED:
                    self.holder = t
                    self.ready.append(t)
                    self.wake += 1
                else:
                    self._shed_waiter(t)
        if self.holder is None and self.getters <= len(self.ready):
            plug = Ticket(self._plug_level, None, _PLUG)
            scheduler.submit(plug, now)
            # The seat was free, so nothing was queued: the plug has it, unless the
            # scheduler is closed (nothing is queued again then).
            if plug.state is _GRANTED:
                self.holder = plug

    # -- the serve layout -------------------------------------------------------

    def start_serving(self, concurrency: int, now: float) -> None:
        """Switch to N seats, one per worker, each held by a plug until its worker waits."""
        if self.getters:
            raise RuntimeError(
                f"cannot serve a queue while {self.getters} get() call(s) wait on it; "
                "consume a queue with get() or with serve(), not both at once"
            )
        policy = _serve_policy(self.policy, self._plug_name)
        items = self._collect(now)
        scheduler = Scheduler(policy)
        start = min((t.submitted_at for t in items), default=now)
        if concurrency != scheduler.capacity:
            scheduler.resize(concurrency, start)
        self.scheduler = scheduler
        self.holder = None
        self._use_levels()
        self._plugs = [Ticket(self._plug_level, None, _PLUG) for _ in range(concurrency)]
        for plug in self._plugs:
            scheduler.submit(plug, start)
        self.serving = True
        self._refile(items, now)

    def claim(self, now: float) -> Ticket | None:
        """A worker asks for work: a ready item, or its own seat unplugged (serve layout)."""
        if self.ready:
            return self.ready.popleft()
        if self._plugs:
            return self._granted(self.scheduler.release(self._plugs.pop(), now))
        return None

    def finish(self, ticket: Ticket, now: float) -> Ticket | None:
        """A worker's handler returned: its seat goes to the next item, given back to it."""
        return self._granted(self.scheduler.release(ticket, now))

    def stop_serving(self, now: float) -> None:
        """Back to the take layout; call once no handler runs any more."""
        items = self._collect(now)
        self.scheduler = Scheduler(_take_policy(self.policy, self._plug_name))
        self.serving = False
        self._plugs = []
        self.holder = None
        self._use_levels()
        start = min((t.submitted_at for t in items), default=now)
        self._balance(start)
        self._refile(items, now)
        if self.closed:
            self.close(now)

    def _granted(self, changed: list[Ticket]) -> Ticket | None:
        granted: Ticket | None = None
        for t in changed:
            if t.state is not _GRANTED:
                self._shed_waiter(t)
            elif granted is None:
                granted = t
            else:  # not expected (one seat frees at a time), but never dropped
                self.ready.append(t)
                self.wake += 1
        return granted

    # -- both layouts -----------------------------------------------------------

    def expire(self, now: float) -> None:
        """Shed every item past its level's ``max_wait`` (into ``shed``)."""
        self._shed_waiters(self.scheduler.expire(now))

    def close(self, now: float) -> None:
        """Refuse later puts and shed every queued item with reason ``shutdown``.

        Items already handed to a woken consumer (``ready``) are still picked up.
        """
        self.closed = True
        self._shed_waiters(self.scheduler.close(now))

    def task_done(self) -> None:
        if self.unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self.unfinished -= 1

    def _shed_waiters(self, tickets: list[Ticket]) -> None:
        for t in tickets:
            self._shed_waiter(t)

    def _shed_waiter(self, ticket: Ticket) -> None:
        self.unfinished -= 1
        self.shed.append(ticket)

    def _collect(self, now: float) -> list[Ticket]:
        """Every queued or ready item, oldest first, taken out of the current scheduler.

        The scheduler is retired: its counts are kept for `stats`.
        """
        items = self.scheduler.close(now)  # withdraws the waiters (marked shed there, not here)
        items.extend(self.ready)
        self.ready.clear()
        self._retire(items)
        items.sort(key=lambda t: t.submitted_at)
        return items

    def _retire(self, moved: list[Ticket]) -> None:
        """Keep the current scheduler's counts; ``moved`` items will be counted again."""
        scheduler = self.scheduler
        for current in scheduler.stats().levels:
            retired = self._retired.get(current.level)
            if retired is None:
                continue  # the plugs' level
            waits, service = scheduler.histograms(current.level)
            retired.waits.merge(waits)
            if self.serving:
                retired.service.merge(service)
            retired.granted += current.granted
            for reason, n in current.shed.items():
                retired.shed[reason] += n
        for ticket in moved:
            retired = self._retired[ticket.level.name]
            if ticket.state is _SHED:  # by the close above
                retired.shed[Reason.SHUTDOWN] -= 1
            else:  # handed to a consumer who left; its wait sample stays
                retired.granted -= 1

    def _refile(self, items: list[Ticket], now: float) -> None:
        """Queue items again in the (fresh) scheduler, each at its own submission time."""
        scheduler = self.scheduler
        for old in items:
            ticket = Ticket(self.by_name[old.level.name], old.flow, old.data)
            # Every seat is held, so it waits; the bounds are the same, so nothing is
            # shed. Submitted at its first submission time, it keeps its deadline.
            self._shed_waiters(scheduler.submit(ticket, old.submitted_at))
        self.expire(now)

    def _use_levels(self) -> None:
        levels = self.scheduler.levels
        real = self.policy.level_set.names
        self.by_name = {lvl.name: lvl for lvl in levels if lvl.name in real}
        self._plug_level = levels[self._plug_name]

    def __repr__(self) -> str:
        layout = "serving" if self.serving else "take"
        return f"<QueueState {layout}, {self.qsize()} queued, {self.unfinished} unfinished>"


#: the plugs' level: it never queues, and may take any seat
_PLUG_POLICY = LevelPolicy(max_wait=0.0, queue=0)


def _plug_name(levels: LevelSet) -> str:
    """A level name for the plugs, apart from the policy's own."""
    names = levels.names
    return next(
        name
        for name in ("plug", *(f"plug-{i}" for i in range(len(names) + 1)))
        if name not in names
    )


def _take_policy(policy: GatePolicy, plug: str) -> GatePolicy:
    """One seat, no ``min``, ``max`` kept only where it is 0 (the level is never served).

    The plug level comes last: with no ``min`` anywhere, a free seat goes to
    the plug whatever its rank, and the order loops meet the real levels first.
    """
    limits = policy.resolve(policy.capacity)
    levels = {}
    for level, lim in zip(policy.level_set, limits, strict=True):
        knobs = policy.policy_for(level.name)
        levels[level.name] = LevelPolicy(
            max=0 if lim.max == 0 else None,
            weight=knobs.weight,
            queue=knobs.queue,
            max_wait=knobs.max_wait,
        )
    levels[plug] = _PLUG_POLICY
    return dataclasses.replace(
        policy,
        capacity=1,
        level_set=LevelSet([*policy.level_set.names, plug]),
        levels=levels,
    )


def _serve_policy(policy: GatePolicy, plug: str) -> GatePolicy:
    """The policy as given, plus the plug level ranked above every real level.

    Ranked first, the plugs are never kept out of a seat by a real level's ``min``.
    """
    return dataclasses.replace(
        policy,
        level_set=LevelSet([plug, *policy.level_set.names]),
        levels={plug: _PLUG_POLICY, **policy.levels},
    )
