"""The state behind a `PriorityThreadPoolExecutor`: one lock, one scheduler, its threads.

Theory of operation
-------------------
A seat is a worker thread. The scheduler's capacity is ``max_workers``; a
call holds a seat from its grant until it returns. Every call is a `Ticket`
whose ``data`` is ``(future, fn, args, kwargs)``:

* `_Pool.submit` hands the ticket to the scheduler under the lock. A ticket
  granted at once goes to ``ready``; a waiting one stays in the scheduler;
  a shed one gets `Rejected` on its future.
* A worker pops a ticket from ``ready``, runs the call outside the lock,
  and releases the seat under the lock in a ``finally``: no exception,
  ``BaseException`` included, can leak a seat. The tickets that release
  grants go to ``ready`` too, and the releasing worker runs the first of
  them itself, so under a backlog no thread is woken per call.
* A worker with nothing to run waits on the condition ``_work``. ``_idle``
  counts the waiting workers and ``_wakeups`` the notifies not yet taken
  up, so a grant notifies exactly one idle worker, or starts a thread
  (lazily, up to ``max_workers``) when none is idle. A seat held means a
  thread that will run it: ``in_use <= max_workers = threads``.
* ``max_wait`` expiry is driven by ONE timer thread per pool, started on the
  first waiting ticket with a finite deadline and waiting on its own
  condition until `Scheduler.next_deadline`. A submit whose ticket waits
  with an earlier deadline than the one armed re-arms it. A pool whose
  levels never time out (the default policy) has no timer thread.
  Rejected alternative: idle workers waiting with a timeout; under load no
  worker is idle, which is exactly when waiters must be shed on time.

Futures are resolved outside the lock (their callbacks may submit again).
A cancelled future withdraws its waiting ticket (`_Call.cancel`); a
cancelled future whose ticket was already granted is skipped by the worker
that pops it, which gives the seat back.

Closing (``shutdown``, interpreter exit, the executor being garbage
collected) lets queued calls run, as the standard library does; workers
and the timer exit once nothing waits. Waiters that can never run (every
seat free, yet kept out by reservations that no later call can use) are
shed with reason ``shutdown`` rather than left hanging.

Workers hold the pool, never the executor, so an executor dropped without
``shutdown`` is collected, and its pool then closes (stdlib semantics).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Future, InvalidStateError
from concurrent.futures.thread import BrokenThreadPool
from time import monotonic
from typing import Any, Generic, TypeVar, final

from ..core.levels import Level
from ..core.scheduler import Scheduler
from ..core.tickets import Ticket, TicketState
from ..errors import Rejected

__all__: list[str] = []

_T = TypeVar("_T")

_WAITING = TicketState.WAITING
_GRANTED = TicketState.GRANTED
_INF = math.inf

_logger = logging.getLogger("prioritize.executor")

#: ``(future, fn, args, kwargs)``: what a ticket carries in ``data``
_Work = tuple["_Call[Any]", Callable[..., Any], tuple[Any, ...], Mapping[str, Any]]


class _Call(Future[_T], Generic[_T]):
    """The future of one call; cancelling it while queued withdraws its ticket."""

    _pool: _Pool
    _ticket: Ticket

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        self._pool.withdraw(self._ticket)
        return True


@final
class _Pool:
    """Everything the worker threads share; the executor is a facade over it."""

    def __init__(
        self,
        scheduler: Scheduler,
        max_workers: int,
        thread_name_prefix: str,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
    ) -> None:
        self.scheduler = scheduler
        self.max_workers = max_workers
        self.lock = threading.Lock()
        self._work = threading.Condition(self.lock)
        self._timer_wake = threading.Condition(self.lock)
        #: granted tickets no worker has picked up yet
        self.ready: deque[Ticket] = deque()
        self.threads: list[threading.Thread] = []
        self.timer: threading.Thread | None = None
        #: the deadline the timer is armed for (inf: not armed)
        self.armed = _INF
        self._idle = 0
        self._wakeups = 0
        #: no new calls: shutdown, interpreter exit, a broken pool or a lost executor
        self.closing = False
        #: why submit refuses, once closing: an exception to raise
        self.refusal: Callable[[], BaseException] | None = None
        self._prefix = thread_name_prefix
        self._initializer = initializer
        self._initargs = initargs

    # -- submitting --------------------------------------------------------------

    def submit(self, level: Level, flow: Hashable | None, work: tuple[Any, ...]) -> None:
        """Queue or start a call; ``work[0]`` is its `_Call`, already returned to nobody."""
        call: _Call[Any] = work[0]
        ticket = Ticket(level, flow, work)
        call._ticket = ticket
        call._pool = self
        with self.lock:
            if self.closing or _registry.exiting:
                raise self._refuse()
            changed = self.scheduler.submit(ticket, monotonic())
            if not changed:  # waiting: the common case under load
                if ticket.deadline < self.armed:
                    self._arm(ticket.deadline)
                return
            if ticket.state is _GRANTED and len(changed) == 1:  # a seat was free
                self.ready.append(ticket)
                if self._idle > self._wakeups:
                    self._wakeups += 1
                    self._work.notify()
                elif len(self.threads) < self.max_workers:
                    self._spawn()
                return
            shed = self._route(changed, 0)
            if ticket.state is _WAITING and ticket.deadline < self.armed:
                self._arm(ticket.deadline)
        _reject(shed)

    def _refuse(self) -> BaseException:
        return (self.refusal or _interpreter_refusal)()

    def _route(self, changed: list[Ticket], takers: int) -> list[Ticket]:
        """Queue the granted tickets to run, staff them, return the shed ones (lock held).

        ``takers`` workers are already on their way to ``ready`` (the caller).
        """
        shed: list[Ticket] = []
        granted = 0
        for ticket in changed:
            if ticket.state is _GRANTED:
                self.ready.append(ticket)
                granted += 1
            else:
                shed.append(ticket)
        for _ in range(granted - takers):
            if self._idle > self._wakeups:
                self._wakeups += 1
                self._work.notify()
            elif len(self.threads) < self.max_workers:
                self._spawn()
            else:
                break
        return shed

    def _spawn(self) -> None:
        _register(self)
        thread = threading.Thread(
            name=f"{self._prefix}_{len(self.threads)}", target=self._run_worker
        )
        thread.start()
        self.threads.append(thread)

    def _arm(self, deadline: float) -> None:
        """Bring the one timer forward to ``deadline`` (lock held)."""
        self.armed = deadline
        if self.timer is None:
            _register(self)
            self.timer = threading.Thread(name=f"{self._prefix}_timer", target=self._run_timer)
            self.timer.start()
        else:
            self._timer_wake.notify()

    # -- cancelling and closing --------------------------------------------------

    def withdraw(self, ticket: Ticket) -> None:
        """Take a cancelled call's ticket out of the queue, if it still waits there.

        A ticket granted meanwhile is left to the worker that pops it: its
        future is cancelled, so the worker gives the seat straight back.
        """
        if ticket.state is not _WAITING:
            return  # a ticket never goes back to waiting: safe to read unlocked
        shed: list[Ticket] = []
        with self.lock:
            if ticket.state is _WAITING:
                self.scheduler.cancel(ticket, monotonic())
                ticket.data = None
                if self.closing:
                    shed = self._settle_closing()
        _reject(shed)

    def close(self, refusal: Callable[[], BaseException], cancel_futures: bool) -> None:
        """Refuse new calls; with ``cancel_futures``, cancel every call not yet started."""
        cancelled: list[_Call[Any]] = []
        with self.lock:
            if not self.closing:
                self.closing = True
                self.refusal = refusal
            if cancel_futures:
                cancelled = self._take_unstarted()
            shed = self._settle_closing()
        for call in cancelled:
            Future.cancel(call)  # its ticket is already out of the scheduler
        _reject(shed)

    def _take_unstarted(self) -> list[_Call[Any]]:
        """Withdraw every waiting ticket and every granted one not yet picked up (lock held)."""
        s, now = self.scheduler, monotonic()
        taken: list[_Call[Any]] = []
        for level in s.levels:
            for ticket in s.waiting_tickets(level):
                s.cancel(ticket, now)
                taken.append(_call_of(ticket))
        while self.ready:  # waiters are gone, so these releases grant nothing
            ticket = self.ready.popleft()
            s.release(ticket, now)
            taken.append(_call_of(ticket))
        return taken

    def _settle_closing(self) -> list[Ticket]:
        """Shed waiters nothing can ever grant; wake threads once nothing waits (lock held)."""
        s = self.scheduler
        shed: list[Ticket] = []
        if s.waiting and not s.in_use:
            # Every seat is free and they still wait: only reservations for
            # calls that will never come keep them out.
            shed = s.close(monotonic())
        if not s.waiting:
            self._work.notify_all()
            self._timer_wake.notify_all()
        return shed

    def join(self) -> None:
        """Wait for every thread of the pool to exit (after `close`)."""
        joined: set[threading.Thread] = set()
        while True:
            with self.lock:
                threads = [t for t in (*self.threads, self.timer) if t and t not in joined]
            if not threads:
                return
            for thread in threads:
                thread.join()
                joined.add(thread)

    def _break(self, message: str) -> None:
        """An initializer failed: fail every queued call and refuse new ones."""
        with self.lock:
            self.closing = True
            self.refusal = lambda: BrokenThreadPool(message)
            failed = self._take_unstarted()
            self._settle_closing()
        for call in failed:
            with contextlib.suppress(InvalidStateError):  # cancelled meanwhile
                call.set_exception(BrokenThreadPool(message))

    # -- the threads -------------------------------------------------------------

    def _run_worker(self) -> None:
        if self._initializer is not None:
            try:
                self._initializer(*self._initargs)
            except BaseException:
                _logger.critical("Exception in initializer:", exc_info=True)
                self._break("A thread initializer failed, the thread pool is not usable anymore")
                return
        try:
            self._serve()
        except BaseException:  # a bug of ours; the seats the thread held are released
            _logger.critical("Exception in worker", exc_info=True)

    def _serve(self) -> None:
        lock, ready, s, wait = self.lock, self.ready, self.scheduler, self._work.wait
        lock.acquire()
        try:
            while True:
                if not ready:
                    if self.closing and not s.waiting:
                        return
                    self._idle += 1
                    wait()
                    self._idle -= 1
                    if self._wakeups:
                        self._wakeups -= 1
                    continue
                ticket = ready.popleft()
                work: _Work = ticket.data  # type: ignore[assignment]
                ticket.data = None
                lock.release()
                try:
                    _run(*work)
                finally:
                    del work
                    lock.acquire()
                    changed = s.release(ticket, monotonic())
                    if changed:
                        shed = self._route(changed, 1)
                        if self.closing:
                            shed += self._settle_closing()
                        if shed:
                            lock.release()
                            _reject(shed)
                            lock.acquire()
                    elif self.closing:
                        shed = self._settle_closing()
                        if shed:
                            lock.release()
                            _reject(shed)
                            lock.acquire()
        finally:
            lock.release()

    def _run_timer(self) -> None:
        s, wake = self.scheduler, self._timer_wake
        with self.lock:
            while not (self.closing and not s.waiting):
                deadline = s.next_deadline()
                now = monotonic()
                if deadline is None or deadline > now:
                    self.armed = _INF if deadline is None else deadline
                    wake.wait(None if deadline is None else deadline - now)
                    continue
                shed = s.expire(now)
                if self.closing:
                    shed += self._settle_closing()
                self.lock.release()
                try:
                    _reject(shed)
                finally:
                    self.lock.acquire()
            self.armed = _INF


def _run(call: _Call[Any], fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Any) -> None:
    """Run one call into its future, as the standard library's worker does."""
    try:
        if not call.set_running_or_notify_cancel():
            return
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            call.set_exception(exc)
            del exc  # break the cycle through the traceback
        else:
            call.set_result(result)
    except BaseException:
        # Only a done callback raising a BaseException gets here (Future logs
        # the Exceptions). The thread keeps serving; the seat is released.
        _logger.critical("BaseException in a done callback of %r", call, exc_info=True)


def _reject(shed: list[Ticket]) -> None:
    """Fail the futures of shed tickets with `Rejected` (outside the lock)."""
    for ticket in shed:
        call = _call_of(ticket)
        with contextlib.suppress(InvalidStateError):  # cancelled between the shed and now
            call.set_exception(Rejected.from_ticket(ticket))


def _call_of(ticket: Ticket) -> _Call[Any]:
    """The future a finished ticket carried, dropping the ticket's hold on the call."""
    work: _Work = ticket.data  # type: ignore[assignment]
    ticket.data = None  # the call's future holds the ticket: no cycle left
    return work[0]


# -- interpreter exit -------------------------------------------------------------
# As concurrent.futures.thread: just before the interpreter joins non-daemon
# threads, every pool closes (queued calls still run) and is joined.


@final
class _Registry:
    """The pools that have started a thread, for the interpreter-exit hook."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pools: weakref.WeakSet[_Pool] = weakref.WeakSet()
        self.exiting = False


_registry = _Registry()


def _register(pool: _Pool) -> None:
    with _registry.lock:
        _registry.pools.add(pool)


def _interpreter_refusal() -> BaseException:
    return RuntimeError("cannot schedule new futures after interpreter shutdown")


def _python_exit() -> None:
    with _registry.lock:
        _registry.exiting = True
        pools = list(_registry.pools)
    for pool in pools:
        pool.close(_interpreter_refusal, cancel_futures=False)
    for pool in pools:
        pool.join()


def _reinit_after_fork() -> None:
    _registry.lock = threading.Lock()


_register_atexit: Callable[[Callable[[], None]], object] | None = getattr(
    threading, "_register_atexit", None
)
(_register_atexit or atexit.register)(_python_exit)  # atexit: joins later than the stdlib does
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)
