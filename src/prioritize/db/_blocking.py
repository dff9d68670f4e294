"""`BlockingGate`: a gate for threads that block until they get a seat.

A synchronous connection pool is checked out by the thread that will use the
connection, so the seat must be waited for in that thread. The executor's
front-end (one lock around the sans-I/O `Scheduler`, decisions resolved
after every call, a waiter parked on a lock of its own, as
`prioritize.executor` parks its idle workers) is what this is, minus the
worker threads: here the caller's own thread is the one that waits.

Theory of operation
-------------------
One ``threading.Lock`` serialises every call into the scheduler. A request
(`request`) is submitted under it; granted at once, it returns; shed, it
raises `Rejected`; queued, its `Seat` carries a ``park`` lock, taken at
creation, that the caller then blocks on (`wait`). Whoever changes a queued
seat's state (a release granting it, an eviction, an expiry, `close`) does
so under the gate's lock and releases that seat's park exactly once, so a
waiter is woken exactly when it has its answer, never to poll.

``max_wait`` expiry needs no timer thread: every queued seat has a thread
blocked on it, and that thread parks with a timeout up to its own
deadline. The first waiter to wake past a deadline calls `expire`, which
sheds every overdue waiter (itself included) and wakes them. The executor
needs its timer thread only because its waiters are futures nobody blocks on.

A waiter interrupted while it waits (its own timeout, ``KeyboardInterrupt``,
any exception) withdraws under the lock: still queued, it leaves the
queue; granted meanwhile, the seat is given straight back. No seat leaks.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable
from typing import final

from ..core.levels import Level
from ..core.policy import GatePolicy
from ..core.scheduler import Scheduler
from ..core.stats import GateStats
from ..core.tickets import Reason, Ticket, TicketState
from ..errors import Rejected

__all__ = ["BlockingGate", "Seat"]

_WAITING = TicketState.WAITING
_GRANTED = TicketState.GRANTED
_INF = math.inf


@final
class Seat(Ticket):
    """A request for one seat of a `BlockingGate`; ``park`` is held until it is decided."""

    __slots__ = ("park",)

    def __init__(self, level: Level, flow: Hashable | None) -> None:
        super().__init__(level, flow)
        self.park = threading.Lock()
        self.park.acquire()


@final
class BlockingGate:
    """One resource's seats for threads: `acquire` blocks until granted or shed.

    Thread-safe. ``clock`` is the monotonic clock deadlines are read from.
    """

    __slots__ = ("_clock", "_lock", "_scheduler")

    def __init__(self, policy: GatePolicy, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._scheduler = Scheduler(policy)
        self._lock = threading.Lock()
        self._clock = clock

    @property
    def scheduler(self) -> Scheduler:
        """The sans-I/O scheduler behind the gate (read it; change it through the gate)."""
        return self._scheduler

    @property
    def capacity(self) -> int:
        return self._scheduler.capacity

    def stats(self) -> GateStats:
        with self._lock:
            return self._scheduler.stats()

    # -- taking and giving back seats ------------------------------------------------

    def acquire(
        self, level: Level, flow: Hashable | None = None, timeout: float | None = None
    ) -> Seat:
        """A granted seat, waiting as the policy says and at most ``timeout`` seconds.

        Raises `Rejected` (reason, retry_after) when the seat is shed or the
        timeout passes first. Give the seat back with `release`, once.
        """
        seat = self.request(level, flow)
        if seat.state is not _GRANTED:
            self.wait(seat, timeout)
        return seat

    def request(self, level: Level, flow: Hashable | None = None) -> Seat:
        """Submit without blocking: the seat is GRANTED or WAITING; shed raises `Rejected`."""
        seat = Seat(level, flow)
        with self._lock:
            changed = self._scheduler.submit(seat, self._clock())
            self._settle(changed, seat)
        if seat.state is not _GRANTED and seat.state is not _WAITING:
            raise Rejected.from_ticket(seat)
        return seat

    def wait(self, seat: Seat, timeout: float | None = None) -> None:
        """Block until a requested seat is granted; `Rejected` if it is shed or times out.

        Whatever interrupts the wait (the timeout, an exception raised in this
        thread) withdraws the request, and gives back a seat granted meanwhile.
        """
        stop = _INF if timeout is None else self._clock() + timeout
        try:
            while True:
                until = min(seat.deadline, stop)
                if until == _INF:
                    decided = seat.park.acquire()
                else:
                    decided = seat.park.acquire(timeout=max(0.0, until - self._clock()))
                if decided:
                    break
                self._overdue(seat, stop)
        except BaseException:
            self.withdraw(seat)
            raise
        if seat.state is not _GRANTED:
            raise Rejected.from_ticket(seat)

    def release(self, seat: Seat) -> None:
        """Give back a granted seat; the next waiter by the policy gets it."""
        with self._lock:
            changed = self._scheduler.release(seat, self._clock())
            if changed:
                self._settle(changed, None)

    def withdraw(self, seat: Seat) -> None:
        """Take back a request whatever its state: leave the queue, or give the seat back."""
        with self._lock:
            self._settle(self._scheduler.cancel(seat, self._clock()), seat)

    def expire(self) -> None:
        """Shed, with reason ``timeout``, every waiter that has waited its level's ``max_wait``.

        Waiters call it themselves when they wake at their deadline.
        """
        with self._lock:
            self._settle(self._scheduler.expire(self._clock()), None)

    def close(self) -> None:
        """Shed every waiter with reason ``shutdown``, and every later request.

        Holders keep their seats until they release them.
        """
        with self._lock:
            self._settle(self._scheduler.close(self._clock()), None)

    # -- internals -----------------------------------------------------------------------

    def _overdue(self, seat: Seat, stop: float) -> None:
        """A park timed out: give up at ``stop``, else shed whoever is past ``max_wait``.

        Either way a decided seat has its park released, so the waiter's next
        park returns at once; a seat decided just before the lock was taken too.
        """
        with self._lock:
            if seat.state is not _WAITING:
                return
            now = self._clock()
            if now >= stop:
                self._scheduler.cancel(seat, now)
                retry_after = self._scheduler.retry_after(seat.level, now)
                raise Rejected(seat.level.name, Reason.TIMEOUT, retry_after)
            self._settle(self._scheduler.expire(now), None)

    @staticmethod
    def _settle(changed: list[Ticket], own: Seat | None) -> None:
        """Wake the waiters whose seat the scheduler just decided (lock held)."""
        for ticket in changed:
            if ticket is not own and isinstance(ticket, Seat):
                ticket.park.release()

    def __repr__(self) -> str:
        s = self._scheduler
        return f"<BlockingGate {s.name} {s.in_use}/{s.capacity} seats, {s.waiting} waiting>"
