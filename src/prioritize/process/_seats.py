"""`SeatGate`: one gate's seats for threads and event loops at once.

Child processes are started from threads (`run`, `popen`) and from asyncio
code (`create_subprocess_exec`), and "at most N children at once" must count
them all, so both kinds of caller wait on one scheduler. This is the
front-end the thread pool uses — one lock around the sans-I/O `Scheduler`,
every decision resolved right after the call that made it, each waiter
woken exactly once by whoever decides its ticket — with the waiter's way of
being woken (a parked lock for a thread, a future resolved through
``call_soon_threadsafe`` for a coroutine) carried by the seat itself.

`PriorityThreadPoolExecutor` itself does not fit: its seat is a worker
thread running a function, given back after the function's future has
completed, so a caller could not know when its seat is free again, and a
child outliving the call would pin a thread.

Theory of operation
-------------------
`acquire` (a thread) and `acquire_async` (a coroutine) submit a `Seat`
under the lock. Granted at once, it returns; shed, it raises `Rejected`;
queued, the caller waits for its ``wake`` to be called. ``max_wait`` needs
no timer thread: a thread parks with a timeout up to its own deadline and a
coroutine arms one ``call_later`` for it; whichever wakes first past a
deadline calls `Scheduler.expire`, which sheds every overdue waiter and
wakes them. A waiter interrupted while it waits (``KeyboardInterrupt``, a
cancelled task) withdraws: still queued, it leaves the queue; granted
meanwhile, the seat goes straight back. A grant to a coroutine whose event
loop has closed is given back at once. `release` is idempotent, so the
several parties that may see a child exit can all give its seat back.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Hashable
from typing import final

from ..core.levels import Level
from ..core.policy import GatePolicy
from ..core.scheduler import Scheduler
from ..core.stats import GateStats
from ..core.tickets import Ticket, TicketState
from ..errors import Rejected

__all__ = ["Seat", "SeatGate"]

_WAITING = TicketState.WAITING
_GRANTED = TicketState.GRANTED


def _never() -> bool:
    return True


@final
class Seat(Ticket):
    """A request for one seat; ``wake`` tells its waiter it was decided (False: gone)."""

    __slots__ = ("wake",)

    def __init__(self, level: Level, flow: Hashable | None) -> None:
        super().__init__(level, flow)
        self.wake: Callable[[], bool] = _never


@final
class SeatGate:
    """The seats of one gate, for threads and coroutines of any event loop. Thread-safe."""

    __slots__ = ("_clock", "_lock", "_scheduler")

    def __init__(self, policy: GatePolicy, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._scheduler = Scheduler(policy)
        self._lock = threading.Lock()
        self._clock = clock

    @property
    def scheduler(self) -> Scheduler:
        """The scheduler behind the gate (read it; change it through the gate)."""
        return self._scheduler

    def stats(self) -> GateStats:
        with self._lock:
            return self._scheduler.stats()

    # -- threads -------------------------------------------------------------------------

    def acquire(self, level: Level, flow: Hashable | None = None) -> Seat:
        """A granted seat, after waiting as the policy says; `Rejected` if shed."""
        seat = Seat(level, flow)
        park = threading.Lock()
        park.acquire()

        def wake() -> bool:
            park.release()
            return True

        seat.wake = wake
        if self._submit(seat):
            return seat
        try:
            while True:
                if seat.deadline == math.inf:
                    park.acquire()
                    break
                if park.acquire(timeout=max(0.0, seat.deadline - self._clock())):
                    break
                self.expire()  # sheds this seat too, if it is overdue: the park is then free
        except BaseException:
            self.withdraw(seat)
            raise
        if seat.state is not _GRANTED:
            raise Rejected.from_ticket(seat)
        return seat

    # -- coroutines ------------------------------------------------------------------------

    async def acquire_async(self, level: Level, flow: Hashable | None = None) -> Seat:
        """`acquire` for a coroutine: waits without blocking the event loop."""
        loop = asyncio.get_running_loop()
        decided: asyncio.Future[None] = loop.create_future()

        def wake() -> bool:
            try:
                loop.call_soon_threadsafe(_resolve, decided)
            except RuntimeError:  # the loop is closed: nobody will take this seat
                return False
            return True

        seat = Seat(level, flow)
        seat.wake = wake
        if self._submit(seat):
            return seat
        timer = None
        if seat.deadline != math.inf:
            timer = loop.call_later(max(0.0, seat.deadline - self._clock()), self.expire)
        try:
            await decided
        except BaseException:
            self.withdraw(seat)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if seat.state is not _GRANTED:
            raise Rejected.from_ticket(seat)
        return seat

    # -- either ----------------------------------------------------------------------------

    def release(self, seat: Seat) -> bool:
        """Give a granted seat back; False if it was given back already."""
        with self._lock:
            if seat.state is not _GRANTED:
                return False
            self._settle(self._scheduler.release(seat, self._clock()), None)
            return True

    def withdraw(self, seat: Seat) -> None:
        """Take a request back whatever its state: leave the queue, or give the seat back."""
        with self._lock:
            self._settle(self._scheduler.cancel(seat, self._clock()), seat)

    def expire(self) -> None:
        """Shed, with reason ``timeout``, every waiter past its level's ``max_wait``."""
        with self._lock:
            self._settle(self._scheduler.expire(self._clock()), None)

    def _submit(self, seat: Seat) -> bool:
        """Submit; True if granted at once, False if queued; raises `Rejected` if shed."""
        with self._lock:
            self._settle(self._scheduler.submit(seat, self._clock()), seat)
        if seat.state is _GRANTED:
            return True
        if seat.state is _WAITING:
            return False
        raise Rejected.from_ticket(seat)

    def _settle(self, changed: list[Ticket], own: Seat | None) -> None:
        """Wake every waiter the scheduler just decided (lock held).

        A seat granted to a waiter that is gone (its event loop closed) is
        given back at once, which may grant the next one.
        """
        while changed:
            gone = [
                ticket
                for ticket in changed
                if ticket is not own and isinstance(ticket, Seat) and not ticket.wake()
            ]
            changed = []
            for ticket in gone:
                changed += self._scheduler.cancel(ticket, self._clock())

    def __repr__(self) -> str:
        s = self._scheduler
        return f"<SeatGate {s.name} {s.in_use}/{s.capacity} seats, {s.waiting} waiting>"


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
