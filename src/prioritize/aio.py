"""`Gate`: the scheduler of one resource, for asyncio code.

``async with gate.slot("high", flow=tenant):`` waits for a seat by the gate's
policy and gives it back on exit, whatever happens inside. It replaces the
per-level ``asyncio.Semaphore`` pattern, which idles reserved capacity while
other levels are shed and waits forever when nothing times it out.

Theory of operation: the gate owns a sans-I/O `Scheduler` and resolves
exactly the tickets each call returns. A waiting ticket carries an
``asyncio.Future`` in ``ticket.data``; a grant completes it, a shed sets
`Rejected` on it. One ``loop.call_at`` timer per gate, armed for
`Scheduler.next_deadline`, drives ``max_wait`` expiry — never a task or a
timer per waiter.

Cancellation is safe at every instant. A waiter cancelled while queued
leaves the queue (``Scheduler.cancel``). If its grant lands after the
cancellation was requested but before the waiter ran again, the grant is
not delivered (its future is already done) and the waiter's cleanup, which
always runs, gives the seat straight back. No seat leaks.

The gate binds to the event loop that first uses it and is not thread-safe:
use it from that loop only (threads have `PriorityThreadPoolExecutor`).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Hashable
from types import TracebackType
from typing import ParamSpec, TypeVar, final

from .adaptive.capacity import AdaptiveCapacity, LimitController
from .core.config import Policy
from .core.levels import Level
from .core.policy import GatePolicy
from .core.scheduler import Scheduler
from .core.stats import GateStats
from .core.tickets import Reason, Ticket, TicketState
from .errors import PrioritizeError, Rejected, TicketStateError

__all__ = ["Gate", "Slot"]

_P = ParamSpec("_P")
_R = TypeVar("_R")

_GRANTED = TicketState.GRANTED
_STOCK_TIME = asyncio.BaseEventLoop.time


def _clock_of(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """The loop's clock, as cheap to read as possible.

    asyncio's stock ``loop.time()`` is a Python method around
    ``time.monotonic()``; reading the latter directly saves a call per read.
    Any other clock (uvloop's, a test's virtual one) is used as it is.
    """
    clock = loop.time
    if getattr(clock, "__func__", None) is _STOCK_TIME:
        return time.monotonic
    return clock


_NEW = TicketState.NEW

_WAITING = TicketState.WAITING


@final
class Gate:
    """One resource with ``capacity`` seats shared between priority levels, for asyncio.

    Build it from a `GatePolicy`, a plain capacity, or a policy file's gate
    (`Gate.from_policy`). Every way of taking a seat ends in one of two
    outcomes: the seat, or `Rejected` with ``level``, ``reason`` and
    ``retry_after``.
    """

    __slots__ = (
        "_adaptive",
        "_by_name",
        "_clock",
        "_loop",
        "_scheduler",
        "_timer",
        "_timer_at",
    )

    def __init__(
        self, policy: GatePolicy | int, *, adaptive: LimitController | None = None
    ) -> None:
        if isinstance(policy, int) and not isinstance(policy, bool):
            policy = GatePolicy(capacity=policy)
        if not isinstance(policy, GatePolicy):
            raise TypeError(
                f"Gate() takes a GatePolicy or a capacity (int), not {type(policy).__name__}"
            )
        self._scheduler = Scheduler(policy)
        self._by_name = {level.name: level for level in policy.level_set}
        self._loop: asyncio.AbstractEventLoop | None = None
        #: the bound loop's ``time``, read twice per seat: cached, not looked up
        self._clock: Callable[[], float] = self._first_clock
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        #: sets the capacity from how long seats are held; None for a fixed capacity
        self._adaptive = None if adaptive is None else AdaptiveCapacity(self._scheduler, adaptive)

    @classmethod
    def from_policy(cls, policy: Policy, name: str) -> Gate:
        """The gate called ``name`` in a policy (``load_policy()`` or ``parse_policy()``).

        A gate whose capacity is adaptive in the policy (``capacity = {
        adaptive = "gradient", ... }``) gets its controller: every seat given
        back reports how long it was held, and the capacity follows.
        """
        spec = policy.adaptive.get(name)
        return cls(policy.gate(name), adaptive=None if spec is None else spec.build())

    # -- taking seats ------------------------------------------------------------

    def slot(
        self,
        level: Level | str = "normal",
        flow: Hashable | None = None,
        *,
        timeout: float | None = None,
    ) -> Slot:
        """A seat to hold for the ``async with`` block: ``async with gate.slot("high"):``.

        Waits as the policy says (at most the level's ``max_wait``, and at
        most ``timeout`` seconds if given) and raises `Rejected` when shed.
        The block's value is the granted `Ticket` (``ticket.waited``).
        """
        if type(level) is str:
            found = self._by_name.get(level)
        elif type(level) is Level and self._by_name.get(level.name) is level:
            found = level  # a Level of this gate's set (a classifier's answer): no resolving
        else:
            found = None
        return Slot(self, found or self._level(level), flow, timeout, True)

    def try_slot(self, level: Level | str = "normal", flow: Hashable | None = None) -> Slot:
        """A seat only if one can be had at once; else `Rejected` with reason ``limit``.

        Usable as ``with`` or ``async with``: it never waits.
        """
        return Slot(self, self._level(level), flow, None, False)

    def guard(
        self,
        level: Level | str = "normal",
        *,
        flow: Callable[..., Hashable] | None = None,
        timeout: float | None = None,
    ) -> Callable[[Callable[_P, Awaitable[_R]]], Callable[_P, Awaitable[_R]]]:
        """Decorate a coroutine function so each call runs holding a seat.

        ``flow``, if given, is called with the function's arguments to pick
        the flow key (``flow=lambda user, *_: user.tenant``).
        """
        resolved = self._level(level)

        def decorate(fn: Callable[_P, Awaitable[_R]]) -> Callable[_P, Awaitable[_R]]:
            @functools.wraps(fn)
            async def guarded(*args: _P.args, **kwargs: _P.kwargs) -> _R:
                key = flow(*args, **kwargs) if flow is not None else None
                async with Slot(self, resolved, key, timeout, True):
                    return await fn(*args, **kwargs)

            return guarded

        return decorate

    # -- managing the gate ------------------------------------------------------

    @property
    def scheduler(self) -> Scheduler:
        """The sans-I/O scheduler behind the gate (read it; change it through the gate)."""
        return self._scheduler

    @property
    def capacity(self) -> int:
        return self._scheduler.capacity

    def stats(self) -> GateStats:
        return self._scheduler.stats()

    def resize(self, capacity: int) -> None:
        """Change the number of seats; waiters are granted at once if it grew."""
        self._settle(self._scheduler.resize(capacity, self._now()))

    def close(self) -> None:
        """Shed every waiter with reason ``shutdown``, and every later request.

        Holders keep their seats until their blocks exit.
        """
        self._settle(self._scheduler.close(self._now()))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- the adapter --------------------------------------------------------------

    async def _wait(self, ticket: Ticket, changed: list[Ticket], timeout: float | None) -> None:
        """Everything after `Scheduler.submit` but the plain immediate grant."""
        future = self._queue(ticket, changed)
        if future is not None:
            await self._await_grant(ticket, future, timeout)

    def _queue(self, ticket: Ticket, changed: list[Ticket]) -> asyncio.Future[None] | None:
        """Settle a submit: None if granted, the future to await if it waits; raises if shed."""
        scheduler = self._scheduler
        try:
            loop = self._bind()
        except PrioritizeError:  # used from a foreign loop: withdraw before refusing
            changed += scheduler.cancel(ticket, self._clock())
            self._settle(changed)
            raise
        state = ticket.state
        if state is _GRANTED:
            self._settle(changed)
            return None
        if state is not _WAITING:
            self._settle(changed)
            raise Rejected.from_ticket(ticket)
        future: asyncio.Future[None] = loop.create_future()
        ticket.data = future
        if changed:
            self._settle(changed)  # waiters evicted to make room for this one
        self._arm_timer(loop)
        return future

    async def _await_grant(
        self, ticket: Ticket, future: asyncio.Future[None], timeout: float | None
    ) -> None:
        try:
            if timeout is None:
                await future
            else:
                async with asyncio.timeout(timeout):
                    await future
        except (asyncio.CancelledError, TimeoutError) as stop:
            # Waiting: leave the queue. Granted meanwhile: give the seat back.
            now = self._clock()
            self._settle(self._scheduler.cancel(ticket, now))
            if isinstance(stop, TimeoutError):
                raise self._timed_out(ticket, now) from None
            raise

    def _release(self, ticket: Ticket, dropped: bool = False) -> None:
        if self._adaptive is not None:
            changed = self._adaptive.release(ticket, self._clock(), dropped)
        else:
            changed = self._scheduler.release(ticket, self._clock())
        if changed:
            self._settle(changed)

    def _settle(self, changed: list[Ticket]) -> None:
        """Deliver the scheduler's decisions to the waiters they concern."""
        for ticket in changed:
            future = ticket.data
            if not isinstance(future, asyncio.Future) or future.done():
                continue  # the submitter itself, or a waiter already cancelled: it cleans up
            if ticket.state is _GRANTED:
                future.set_result(None)
            else:
                future.set_exception(Rejected.from_ticket(ticket))

    def _arm_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        deadline = self._scheduler.next_deadline()
        if deadline is None or (self._timer is not None and self._timer_at <= deadline):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        loop = self._bind()
        # asyncio may run a timer up to its clock resolution early: it is due all the same
        self._settle(self._scheduler.expire(max(loop.time(), self._timer_at)))
        self._arm_timer(loop)

    def _timed_out(self, ticket: Ticket, now: float) -> Rejected:
        # the same Little's-law estimate the scheduler gives the tickets it sheds
        retry_after = self._scheduler.retry_after(ticket.level, now)
        return Rejected(ticket.level.name, Reason.TIMEOUT, retry_after)

    def _level(self, level: Level | str) -> Level:
        if type(level) is str:
            found = self._by_name.get(level)
            if found is not None:
                return found
        return self._scheduler.levels.resolve(level)

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
            self._clock = _clock_of(loop)
        elif loop is not asyncio.get_running_loop():
            raise PrioritizeError(
                f"gate {self._scheduler.name!r} is bound to another event loop; "
                "create one Gate per loop"
            )
        return loop

    def _now(self) -> float:
        return self._clock()

    def _first_clock(self) -> float:
        # The clock until the gate meets its loop: bind, then read the loop's own.
        return self._bind().time()

    def __repr__(self) -> str:
        s = self._scheduler
        return f"<Gate {s.name} {s.in_use}/{s.capacity} seats, {s.waiting} waiting>"


class Slot(Ticket):
    """A request for a seat of a `Gate`, held with ``async with`` (``with`` if non-waiting).

    It is the scheduler's `Ticket` itself, so the block's value carries the
    level, ``waited`` and, after a shed, ``reason``. Use it once.
    """

    __slots__ = ("_gate", "_timeout")

    def __init__(
        self,
        gate: Gate,
        level: Level,
        flow: Hashable | None,
        timeout: float | None,
        wait: bool,
    ) -> None:
        # Ticket.__init__, inlined (one call less per request); test_slot_is_a_fresh_ticket
        # keeps the two in step.
        self.level = level
        self.flow = flow
        self.data = None
        self.wait = wait
        self.state = _NEW
        self.reason = None
        self.retry_after = None
        self.submitted_at = 0.0
        self.deadline = 0.0
        self.granted_at = None
        self._gate = gate
        self._timeout = timeout

    async def __aenter__(self) -> Slot:
        gate = self._gate
        changed = gate._scheduler.submit(self, gate._clock())
        # A seat free at once is the common case: no future, no second coroutine. Like
        # asyncio's own primitives, the gate checks its loop only when it must wait.
        if self.state is not _GRANTED or len(changed) != 1:
            await gate._wait(self, changed, self._timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        gate = self._gate
        if gate._adaptive is not None:
            # a block that timed out is the overload signal controllers back off on
            dropped = exc_type is not None and issubclass(exc_type, TimeoutError)
            gate._release(self, dropped)
            return
        changed = gate._scheduler.release(self, gate._clock())
        if changed:
            gate._settle(changed)

    # -- in two steps, for adapters that watch something else while they wait ------

    def request(self) -> bool:
        """Ask for the seat without waiting: True if it was granted at once.

        False means the slot is queued: ``await slot.granted()`` for it (and
        cancel that to withdraw). Raises `Rejected` if it was shed at once.
        Once granted, `release` gives the seat back. The ASGI middleware uses
        this to watch for a client's disconnect only when it has to wait.
        """
        gate = self._gate
        changed = gate._scheduler.submit(self, gate._clock())
        if self.state is _GRANTED and len(changed) == 1:
            return True
        return gate._queue(self, changed) is None

    async def granted(self) -> None:
        """Wait until a slot queued by `request` is granted; raises `Rejected` if it is shed.

        Cancelling this withdraws the request (a grant that raced with the
        cancellation is given back), so no seat leaks.
        """
        future = self.data
        if not isinstance(future, asyncio.Future):
            raise TicketStateError(f"{self!r} is not waiting: call request() first, once")
        await self._gate._await_grant(self, future, self._timeout)

    def release(self) -> None:
        """Give back the seat of a slot granted through `request` / `granted`."""
        self._gate._release(self)

    def __enter__(self) -> Slot:
        if self.wait:
            raise TypeError("a waiting slot needs 'async with'; use gate.try_slot() with 'with'")
        gate = self._gate
        changed = gate.scheduler.submit(self, gate._now())
        if self.state is not _GRANTED:
            gate._settle(changed)
            raise Rejected.from_ticket(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._gate._release(self)
