"""`SyncBudget`: a provider's rate (requests and tokens per minute) shared by priority, for threads.

``with budget.spend("high", tokens=estimate) as spend:`` blocks the calling
thread until the call fits the budget by its level's share, then
``spend.actual(n)`` reports what the call really cost; leaving the block
settles it. ``budget.call(fn, ..., usage=...)`` does the same around one
call. This is `Budget` for code without an event loop: the official sync
clients (through `SyncBudgetTransport`), thread pools, scripts.

Theory of operation
-------------------
As the other thread front-ends (`prioritize.db`'s blocking gate, the
process gate's seats): one ``threading.Lock`` around the sans-I/O
`RateScheduler`, every decision delivered right after the call that made
it, and each waiting thread parked on a lock of its own (its spend's
``park``, taken at creation) that whoever decides its ticket releases,
once.

A rate differs from seats in one way that matters: a waiter's turn comes
with *time* (the bucket refills), not only with another call, so someone
must be awake at `RateScheduler.next_deadline`. There is no timer thread.
One waiting thread is the *watcher*, chosen as the request first in line
(the one the next refill is for): it parks with a timeout up to the next
deadline, and when it wakes it advances the scheduler (refill, grant what
fits, shed whoever is past ``max_wait``) and parks again. Every other waiter
parks until its ticket is decided or its own ``timeout``. When the
watcher's ticket is decided (usually granted by its own advance) or it
withdraws, the watch passes to the request now first in line, woken for
it; a call that brings the next deadline before the watcher's wake-up (a
refund, a more important request) wakes the watcher to look again. So one
thread at a time wakes for the clock, and a thread is woken for its
decision exactly once. A wake-up is *posted* under the budget's lock at
most once until its thread takes it (`_post`, `_take`), so a decision and
a watch landing together release a park once.

A waiter interrupted while it waits (its own timeout, ``KeyboardInterrupt``,
any exception) withdraws under the lock: still queued, it leaves the
queue; granted meanwhile, the whole cost goes back (the call was never
made); a watcher hands the watch on. Nothing leaks.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from types import TracebackType
from typing import TypeVar, final

from ..core.budget import RateScheduler
from ..core.budget_policy import BudgetPolicy
from ..core.budget_tickets import BudgetStats
from ..core.config import Policy
from ..core.levels import Level
from ..core.tickets import Reason, Ticket, TicketState
from ..errors import Rejected
from ._shared import Settling, check_policy, default_of, find_budget, level_of

__all__ = ["SyncBudget", "SyncSpend"]

_R = TypeVar("_R")
_GRANTED = TicketState.GRANTED
_WAITING = TicketState.WAITING
_INF = math.inf


@final
class SyncBudget:
    """A rate budget shared between priority levels, for threads. Thread-safe.

    Build it from a `BudgetPolicy` or a policy file's budget
    (`SyncBudget.from_policy`). Every way of spending ends in one of two
    outcomes: the grant, or `Rejected` with ``level``, ``reason`` and
    ``retry_after``. A call's level is the one given, else
    `prioritize.current_level()`, else ``default_level`` (the policy's).
    ``clock`` is the monotonic clock the budget reads (tests pass a
    `prioritize.testing.VirtualClock` and call `advance` after moving it).
    """

    __slots__ = ("_clock", "_default", "_lock", "_scheduler", "_watch_until", "_watcher")

    def __init__(
        self,
        policy: BudgetPolicy,
        *,
        default_level: Level | str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._scheduler = RateScheduler(check_policy("SyncBudget", policy))
        self._default = default_of(policy.level_set, default_level)
        if not callable(clock):
            raise TypeError(f"clock = {clock!r}: expected a callable returning seconds")
        self._clock = clock
        self._lock = threading.Lock()
        #: the waiter that wakes for the next deadline, and when it will
        self._watcher: SyncSpend | None = None
        self._watch_until = _INF

    @classmethod
    def from_policy(
        cls, policy: Policy, name: str, *, clock: Callable[[], float] = time.monotonic
    ) -> SyncBudget:
        """The budget called ``name`` in a policy (``load_policy()`` or ``parse_policy()``)."""
        budget = find_budget(policy, name)
        return cls(budget, default_level=policy.default_level.name, clock=clock)

    # -- spending ------------------------------------------------------------------------

    def spend(
        self,
        level: Level | str | None = None,
        *,
        tokens: float = 0,
        flow: Hashable | None = None,
        timeout: float | None = None,
    ) -> SyncSpend:
        """Budget for one call, held by ``with``; ``tokens`` is the call's estimate.

        Blocks as the policy says (at most the level's ``max_wait``, and at
        most ``timeout`` seconds if given) and raises `Rejected` when shed.
        """
        chosen = level_of(self._scheduler.levels, self._default, level)
        return SyncSpend(self, chosen, flow, tokens, timeout)

    def call(
        self,
        fn: Callable[..., _R],
        /,
        *args: object,
        level: Level | str | None = None,
        tokens: float = 0,
        flow: Hashable | None = None,
        usage: Callable[[_R], float | None] | None = None,
        **kwargs: object,
    ) -> _R:
        """``fn(*args, **kwargs)`` within the budget; ``usage(result)`` gives the actual tokens
        (None: keep the estimate)."""
        with self.spend(level, tokens=tokens, flow=flow) as spend:
            result = fn(*args, **kwargs)
            if usage is not None:
                actual = usage(result)
                if actual is not None:
                    spend.actual(actual)
            return result

    def observe(self, remaining: Mapping[str, float]) -> None:
        """Lower the budget to what the provider says remains (``{"tokens": 1200}``)."""
        with self._lock:
            self._settle(self._scheduler.observe(self._clock(), remaining), None)

    # -- managing it ---------------------------------------------------------------------

    @property
    def scheduler(self) -> RateScheduler:
        """The sans-I/O scheduler behind the budget (read it; change it through the budget)."""
        return self._scheduler

    @property
    def policy(self) -> BudgetPolicy:
        return self._scheduler.policy

    def stats(self) -> BudgetStats:
        with self._lock:
            return self._scheduler.stats()

    def advance(self) -> None:
        """Bring the budget to the clock's time: refill, grant what fits, shed the overdue.

        Waiting threads do this themselves when their deadline comes; call it
        after moving an injected clock.
        """
        with self._lock:
            self._settle(self._scheduler.advance(self._clock()), None)

    def close(self) -> None:
        """Shed every waiter with reason ``shutdown``, and every later call."""
        with self._lock:
            self._settle(self._scheduler.close(self._clock()), None)

    # -- waiting -------------------------------------------------------------------------

    def _enter(self, spend: SyncSpend) -> None:
        """Submit, then wait while queued: granted, or `Rejected`; withdrawn if interrupted."""
        with self._lock:
            self._settle(self._scheduler.submit(spend, self._clock()), spend)
        if spend.state is _WAITING:
            try:
                self._wait(spend)
            except BaseException:
                with self._lock:
                    self._settle(self._scheduler.cancel(spend, self._clock()), spend)
                raise
        if spend.state is not _GRANTED:
            raise Rejected.from_ticket(spend)

    def _wait(self, spend: SyncSpend) -> None:
        """Park until the ticket is decided, watching the clock when it is this thread's turn."""
        timeout = spend._timeout
        stop = _INF if timeout is None else self._clock() + timeout
        woken = False
        while True:
            with self._lock:
                self._take(spend, woken)
                if spend.state is not _WAITING:
                    return
                now = self._clock()
                if now >= stop:
                    self._settle(self._scheduler.advance(now), spend)
                    if spend.state is not _WAITING:
                        return  # its turn came at the last moment: served, not timed out
                    changed = self._scheduler.cancel(spend, now)
                    retry_after = self._scheduler.retry_after(spend.level, now, spend.tokens)
                    self._settle(changed, spend)
                    raise Rejected(spend.level.name, Reason.TIMEOUT, retry_after)
                until = stop
                if self._watcher is spend:
                    self._watch_until = -_INF  # looking now: no need to be woken for it
                    self._settle(self._scheduler.advance(now), spend)
                    if spend.state is not _WAITING:
                        return
                    if self._watcher is spend:
                        deadline = self._scheduler.next_deadline()
                        self._watch_until = _INF if deadline is None else deadline
                        until = min(until, self._watch_until)
            if until == _INF:
                woken = spend.park.acquire()
            else:
                woken = spend.park.acquire(timeout=max(0.0, until - self._clock()))

    def _settle(self, changed: list[Ticket], own: SyncSpend | None) -> None:
        """Wake the waiters the scheduler just decided, then make sure one watches (lock held)."""
        for ticket in changed:
            if ticket is not own and isinstance(ticket, SyncSpend):
                self._post(ticket)
        scheduler = self._scheduler
        watcher = self._watcher
        if watcher is not None and watcher.state is not _WAITING:
            watcher = self._watcher = None
        deadline = scheduler.next_deadline()
        if deadline is None:
            return
        if watcher is None:
            watcher = self._watcher = self._first_in_line()
            self._watch_until = _INF
            if watcher is None:
                return
        if self._watch_until > deadline:
            self._watch_until = -_INF
            if watcher is not own:
                self._post(watcher)

    def _first_in_line(self) -> SyncSpend | None:
        """The waiter the next refill is for (the rules' choice), else any waiter."""
        scheduler = self._scheduler
        chosen = scheduler.candidate()
        for level in (chosen, *scheduler.levels) if chosen is not None else scheduler.levels:
            head = scheduler.head(level) if scheduler.waiting_at(level) else None
            if isinstance(head, SyncSpend):
                return head
        return None

    @staticmethod
    def _post(spend: SyncSpend) -> None:
        """Wake ``spend``'s thread to look at its ticket (lock held); at most once until taken."""
        if not spend._posted:
            spend._posted = True
            spend.park.release()

    @staticmethod
    def _take(spend: SyncSpend, woken: bool) -> None:
        """Take a posted wake-up (lock held), whether the park returned for it or timed out."""
        if spend._posted:
            if not woken:
                spend.park.acquire()  # posted after the park timed out: free, returns at once
            spend._posted = False

    def _exit(self, spend: SyncSpend) -> None:
        with self._lock:
            self._settle(spend.end(self._scheduler, self._clock()), None)

    def __repr__(self) -> str:
        s = self._scheduler
        return f"<SyncBudget {s.name}: {s.in_flight} in flight, {s.waiting} waiting>"


class SyncSpend(Settling):
    """Budget for one call of a `SyncBudget`, held with ``with``; use it once.

    Inside the block, `actual` reports the call's real token count and
    `refused` says the provider answered 429; leaving the block settles
    the call either way (with the estimate if neither was said).
    """

    __slots__ = ("_budget", "_posted", "park")

    def __init__(
        self,
        budget: SyncBudget,
        level: Level,
        flow: Hashable | None,
        tokens: float,
        timeout: float | None,
    ) -> None:
        super().__init__(level, flow, tokens, timeout)
        self._budget = budget
        #: held until a wake-up is posted; its thread parks on it
        self.park = threading.Lock()
        self.park.acquire()
        self._posted = False

    def __enter__(self) -> SyncSpend:
        self._budget._enter(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._budget._exit(self)
