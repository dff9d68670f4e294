"""`ThreadPriorityQueue`: the thread-safe twin of `PriorityQueue`, shaped like `queue.Queue`.

Same policy, same order, same shedding, same ``on_shed`` contract; ``put``
never blocks, ``get(block=True, timeout=None)`` blocks like
`queue.Queue.get` and raises `queue.Empty` when it gives up, and ``serve``
runs a pool of worker threads.

Theory of operation: one lock guards the sans-I/O `QueueState`. Blocked
consumers and idle workers wait on one `threading.Condition` of that lock
and are notified once per grant. Expiry runs on one timer thread per queue,
started when a deadline is armed and gone when none is left (never a thread
or a timer per item); every ``put`` and ``get`` also sheds what is overdue,
so expiry never waits on the timer thread being scheduled. ``on_shed`` is
always called with the lock released, so it may use the queue.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar, cast, final

from ..core.config import Policy
from ..core.levels import Level
from ..core.policy import GatePolicy
from ..core.stats import GateStats
from ..core.tickets import Ticket, TicketState
from ..errors import QueueClosed, Rejected
from ._state import QueueState

__all__ = ["ThreadPriorityQueue"]

T = TypeVar("T")

_WAITING = TicketState.WAITING
_GRANTED = TicketState.GRANTED
_SHED = TicketState.SHED
_NO_SHED: list[Ticket] = []


@final
class ThreadPriorityQueue(Generic[T]):
    """A bounded, thread-safe priority queue whose order and shedding follow a `GatePolicy`.

    ``clock`` is the monotonic clock deadlines are read from (``time.monotonic``;
    tests may pass a `prioritize.testing.VirtualClock`).
    """

    __slots__ = (
        "_all_done",
        "_clock",
        "_lock",
        "_on_shed",
        "_state",
        "_stopping",
        "_timer",
        "_timer_at",
        "_timer_thread",
        "_wakeup",
    )

    def __init__(
        self,
        policy: GatePolicy,
        *,
        on_shed: Callable[[T, Rejected], object],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not callable(on_shed):
            raise TypeError(f"on_shed must be callable(item, rejected), not {on_shed!r}")
        self._state = QueueState(policy)
        self._on_shed = on_shed
        self._clock = clock
        self._lock = threading.Lock()
        #: consumers blocked in get() and idle serve() workers; notified once per grant
        self._wakeup = threading.Condition(self._lock)
        self._all_done = threading.Condition(self._lock)
        self._timer = threading.Condition(self._lock)
        self._timer_at = math.inf
        self._timer_thread: threading.Thread | None = None
        self._stopping = False
        self._state.start(clock())

    @classmethod
    def from_policy(
        cls, policy: Policy, name: str, *, on_shed: Callable[[T, Rejected], object]
    ) -> ThreadPriorityQueue[T]:
        """The queue for gate ``name`` of a policy (``load_policy()`` or ``parse_policy()``)."""
        return cls(policy.gate(name), on_shed=on_shed)

    # -- producers ----------------------------------------------------------------

    def put(
        self, item: T, level: Level | str | int = "normal", flow: Hashable | None = None
    ) -> bool:
        """File ``item`` without ever blocking; False if it was refused (see ``on_shed``).

        True means it is queued or was handed to a waiting consumer. A put into
        a full queue may evict a less important item, which goes to ``on_shed``.
        """
        state = self._state
        with self._lock:  # the ticket too: serve() starting or stopping changes the levels
            found = state.by_name.get(level) if type(level) is str else None
            ticket = Ticket(found or state.level(level), flow, item)
            now = self._clock()
            if now >= self._timer_at:
                self._expire(now)
            changed = state.scheduler.submit(ticket, now)
            if ticket.state is _WAITING and not state.shed:  # QueueState.filed, inlined
                state.unfinished += 1 - len(changed)  # queued, and waiters evicted for it
                if ticket.deadline < self._timer_at:
                    self._arm(ticket.deadline)
                if not changed:
                    return True
                shed = changed
            else:
                state.filed(ticket, changed, now)
                shed = self._settle()
        self._deliver(shed)
        return ticket.state is not _SHED

    put_nowait = put

    # -- consumers ----------------------------------------------------------------

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """The next item by the policy, as `queue.Queue.get`.

        Blocks until an item arrives (at most ``timeout`` seconds if given),
        then raises `queue.Empty`; with ``block=False`` raises it at once.
        Raises `QueueClosed` once the queue is closed and has nothing left.
        """
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        state = self._state
        with self._lock:
            now = self._clock()
            if now >= self._timer_at:
                self._expire(now)
            self._check_not_serving()
            found = state.take(now)
            if found is not None and not state.shed and not state.wake:
                return found.data  # type: ignore[return-value]  # data is the T put; no cast() call
            if found is None and block and not state.closed:
                found = self._wait_for_item(timeout)
            shed = self._settle()
        self._deliver(shed)
        if found is None:
            if state.closed:
                raise QueueClosed(f"{self!r} is closed and empty")
            raise queue.Empty
        return found.data  # type: ignore[return-value]  # data is the T put; no cast() call

    def get_nowait(self) -> T:
        """`get` without blocking: `queue.Empty` if nothing is queued now."""
        return self.get(block=False)

    def task_done(self) -> None:
        """Mark one item got earlier as processed, for `join` (as `queue.Queue.task_done`)."""
        with self._lock:
            self._state.task_done()
            if not self._state.unfinished:
                self._all_done.notify_all()

    def join(self) -> None:
        """Block until every item put has been marked done or shed."""
        with self._lock:
            while self._state.unfinished:
                self._all_done.wait()

    def serve(self, handler: Callable[[T], object], concurrency: int | None = None) -> None:
        """Run ``concurrency`` worker threads (default: the policy's capacity) until closed.

        A worker takes an item only when it is free, calls ``handler(item)``
        and marks it done; seats are workers, so the policy's per-level
        ``min`` and ``max`` hold across them. Blocks the calling thread until
        the queue is closed and the handlers running then have finished. If a
        handler raises, the workers stop taking items, the running handlers
        finish, and the first exception propagates; the items still queued
        stay queued, with their deadlines.
        """
        state = self._state
        workers = _check_concurrency(concurrency, state.policy.capacity)
        with self._lock:
            if state.serving:
                raise RuntimeError(f"{self!r} is already being served; call serve() once")
            if state.closed:
                return
            state.start_serving(workers, self._clock())
            self._stopping = False
            self._rearm()
            shed = self._settle()
        self._deliver(shed)
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=self._work, args=(handler, errors), name=f"{self!r} worker {i}")
            for i in range(workers)
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        finally:
            with self._lock:
                self._stopping = True  # e.g. KeyboardInterrupt here: let the handlers finish
                self._wakeup.notify_all()
            for thread in threads:
                thread.join()
            with self._lock:
                state.stop_serving(self._clock())
                self._rearm()
                shed = self._settle()
            self._deliver(shed)
        if errors:
            raise errors[0]

    # -- the queue ----------------------------------------------------------------

    def qsize(self, level: Level | str | int | None = None) -> int:
        """Items queued, all levels or one."""
        with self._lock:
            return self._state.qsize(level)

    def empty(self) -> bool:
        return not self.qsize()

    def stats(self) -> GateStats:
        """A snapshot of items per level: handed out, shed (by reason), queued, waits.

        ``capacity`` and ``in_use`` count `serve` workers (0 while consumed
        with `get`). Thread-safe: taken under the queue's lock.
        """
        with self._lock:
            return self._state.stats()

    @property
    def is_closed(self) -> bool:
        return self._state.closed

    def close(self) -> None:
        """Refuse later puts and shed the queued items, with reason ``shutdown``.

        Blocked `get` calls raise `QueueClosed`; `serve` returns once its running
        handlers finish. To finish the queued work first, `join` before closing.
        """
        with self._lock:
            self._state.close(self._clock())
            self._timer_at = math.inf
            self._timer.notify()
            self._wakeup.notify_all()
            shed = self._settle()
        self._deliver(shed)

    # -- the adapter (methods named _*_locked or called under the lock) ----------------

    def _check_not_serving(self) -> None:
        if self._state.serving:
            raise RuntimeError(
                f"{self!r} is being served by serve(); get() would compete with its workers"
            )

    def _wait_for_item(self, timeout: float | None) -> Ticket | None:
        state = self._state
        state.register(self._clock())  # the seat is now free: a put goes straight to a consumer
        end = None if timeout is None else time.monotonic() + timeout
        waiting = True
        try:
            while True:
                if end is None:
                    self._wakeup.wait()
                else:
                    remaining = end - time.monotonic()
                    if remaining <= 0.0:
                        return None
                    self._wakeup.wait(remaining)
                ticket = state.take(self._clock(), waiting=True)
                if ticket is not None:
                    waiting = False  # take() counted it out of the waiting consumers
                    return ticket
                if state.closed:
                    return None
        finally:
            if waiting:
                state.unregister(self._clock())
                if state.ready:
                    state.wake += 1  # notified but leaving empty-handed: pass it on

    def _work(self, handler: Callable[[T], object], errors: list[BaseException]) -> None:
        """One worker thread of `serve`."""
        state = self._state
        with self._lock:
            ticket = state.claim(self._clock())
            shed = self._settle()
        self._deliver(shed)
        while True:
            with self._lock:
                while ticket is None:
                    if self._stopping:
                        return
                    # Claim before waiting: a put may have granted this worker's freed
                    # seat while the lock was released, its notification sent to no one.
                    ticket = state.claim(self._clock())
                    if ticket is not None:
                        break
                    if state.closed:
                        return
                    self._wakeup.wait()
            try:
                handler(cast(T, ticket.data))
            except BaseException as exc:
                errors.append(exc)
                self._stop(ticket)
                return
            with self._lock:
                ticket = state.finish(ticket, self._clock())
                state.task_done()
                if self._stopping and ticket is not None:
                    state.ready.appendleft(ticket)  # serving stops: queued again, not lost
                    ticket = None
                shed = self._settle()
            self._deliver(shed)

    def _stop(self, ticket: Ticket) -> None:
        """A handler raised: stop taking items; its seat's next item is queued again."""
        state = self._state
        with self._lock:
            self._stopping = True
            following = state.finish(ticket, self._clock())
            if following is not None:
                state.ready.appendleft(following)
            state.task_done()
            self._wakeup.notify_all()
            shed = self._settle()
        self._deliver(shed)

    def _settle(self) -> list[Ticket]:
        """Notify a consumer per grant and ``join`` if all is done; returns the shed tickets.

        Called under the lock; the caller hands the result to `_deliver` once
        the lock is released.
        """
        state = self._state
        if state.wake:
            self._wakeup.notify(state.wake)
            state.wake = 0
        if not state.unfinished:
            self._all_done.notify_all()
        shed = state.shed
        if not shed:
            return _NO_SHED
        state.shed = []
        return shed

    def _deliver(self, shed: list[Ticket]) -> None:
        """Hand each shed item to ``on_shed`` (lock released); one raising stops none."""
        error: Exception | None = None
        for ticket in shed:
            try:
                self._on_shed(cast(T, ticket.data), Rejected.from_ticket(ticket))
            except Exception as exc:
                error = error or exc
        if error is not None:
            raise error

    def _expire(self, now: float) -> None:
        self._timer_at = math.inf
        self._state.expire(now)
        self._rearm()

    def _arm(self, deadline: float) -> None:
        if deadline == math.inf:
            return
        self._timer_at = deadline
        if self._timer_thread is None:
            self._timer_thread = threading.Thread(
                target=self._run_timer, name=f"{self!r} expiry", daemon=True
            )
            self._timer_thread.start()
        else:
            self._timer.notify()

    def _rearm(self) -> None:
        deadline = self._state.scheduler.next_deadline()
        if deadline is not None and deadline < self._timer_at:
            self._arm(deadline)

    def _run_timer(self) -> None:
        """The timer thread: sheds items at their deadline; exits when none is armed."""
        with self._lock:
            while True:
                due = self._timer_at
                if due == math.inf or self._state.closed:
                    self._timer_thread = None
                    return
                now = self._clock()
                if now < due:
                    self._timer.wait(due - now)
                    continue
                self._expire(now)
                shed = self._settle()
                if shed:
                    self._lock.release()
                    try:
                        self._deliver(shed)
                    except Exception as exc:
                        _report(exc)
                    finally:
                        self._lock.acquire()

    def __repr__(self) -> str:
        state = self._state
        mode = ", serving" if state.serving else ", closed" if state.closed else ""
        return f"<ThreadPriorityQueue {state.policy.name} {state.qsize()} queued{mode}>"


def _check_concurrency(concurrency: int | None, default: int) -> int:
    if concurrency is None:
        return default
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ValueError(f"concurrency = {concurrency!r}: expected a whole number ≥ 1")
    return concurrency


def _report(exc: Exception) -> None:
    """An ``on_shed`` error on the timer thread: reported as an uncaught thread error."""
    threading.excepthook(
        threading.ExceptHookArgs((type(exc), exc, exc.__traceback__, threading.current_thread()))
    )
