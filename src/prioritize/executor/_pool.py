"""The state behind a `PriorityThreadPoolExecutor`: one lock, one scheduler, its threads.

Theory of operation
-------------------
A seat is a worker thread. The scheduler's capacity is ``max_workers``; a
call holds a seat from its grant until it returns. Each call is one object,
`Call`: the caller's `Future` and the scheduler's `Ticket` at once.

* `Pool.submit` hands the call to the scheduler under the one lock. A call
  granted at once goes straight to an idle worker, or to ``ready`` for a
  new thread (created lazily, up to ``max_workers``); a waiting one stays in the
  scheduler; a shed one gets `Rejected` on its future.
* A worker runs its call outside the lock and releases the seat under the
  lock in a ``finally``: no exception, ``BaseException`` included, leaks a
  seat. When the release grants one call, the releasing worker runs it
  itself: under a backlog no thread is woken per call.
* An idle worker parks on its own lock (`Worker.park`), pushed on the
  ``_idle`` stack; a grant pops the most recently idle worker, puts the
  call in its hand and releases its lock. This is what a `Condition` does
  inside (a lock per waiter), without allocating a lock per wait, without
  the woken thread taking the shared lock again to find its work, and with
  no count of pending notifies to keep: popping a worker claims it. Seats
  held never outnumber threads (``in_use <= max_workers``), so a grant
  always finds a worker. ``ready`` holds a call for a thread being
  started, which takes it once its ``initializer`` has run.
* ``max_wait`` expiry is driven by ONE timer thread per pool, started with
  the first waiting call that has a finite deadline, waiting on a
  `Condition` of the lock until `Scheduler.next_deadline`; a submit with an
  earlier deadline than the one armed wakes it to re-arm. A pool whose
  levels never time out (the default policy) has no timer thread.
  Rejected alternative: idle workers waiting with a timeout; under load no
  worker is idle, which is exactly when waiters must be shed on time.

Futures are resolved outside the lock (their callbacks may submit again).
A cancelled future withdraws its waiting call (`Call.cancel`); a cancelled
call that was already granted is skipped by its worker, which gives the
seat back.

Closing (``shutdown``, interpreter exit, the executor being garbage
collected) lets queued calls run, as the standard library does; workers
and the timer exit once nothing waits. Waiters that can never run (every
seat free, yet kept out by reservations that no later call can use) are
shed with reason ``shutdown`` rather than left hanging.

Workers hold the pool, never the executor, so an executor dropped without
``shutdown`` is collected, and its pool then closes (stdlib semantics).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from concurrent.futures.thread import BrokenThreadPool
from time import monotonic
from typing import Any, final

from ..core.scheduler import Scheduler
from ..core.tickets import Ticket, TicketState
from ._call import Call, Worker, reject
from ._exit import interpreter_refusal, register, registry

__all__ = ["Pool"]

_WAITING = TicketState.WAITING
_GRANTED = TicketState.GRANTED
_INF = math.inf

_logger = logging.getLogger("prioritize.executor")


def _lost_refusal() -> BaseException:
    return RuntimeError("cannot schedule new futures after shutdown")


@final
class Pool:
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
        #: idle workers, the most recently idle last (it is handed the next call)
        self._idle: list[Worker] = []
        #: granted calls no worker was free to take (a worker lost to a bug of ours)
        self.ready: deque[Call[Any]] = deque()
        self.threads: list[threading.Thread] = []
        self.timer: threading.Thread | None = None
        self._timer_wake = threading.Condition(self.lock)
        #: the deadline the timer is armed for (inf: not armed)
        self.armed = _INF
        #: no new calls: shutdown, interpreter exit, a broken pool or a lost executor
        self.closing = False
        #: why submit refuses, once closing: an exception to raise
        self.refusal: Callable[[], BaseException] | None = None
        self._prefix = thread_name_prefix
        self._initializer = initializer
        self._initargs = initargs

    # -- submitting --------------------------------------------------------------

    def submit(self, call: Call[Any]) -> None:
        """Queue or start a new call (its ticket fields set, returned to nobody yet)."""
        call._pool = self
        now = monotonic()
        with self.lock:
            if self.closing or registry.exiting:
                raise self._refuse()
            changed = self.scheduler.submit(call, now)
            if not changed:  # waiting: the common case under load
                if call.deadline < self.armed:
                    self._arm(call.deadline)
                return
            if call.state is _GRANTED and len(changed) == 1:  # a seat was free
                idle = self._idle
                if idle:
                    worker = idle.pop()
                    worker.call = call
                    worker.park.release()
                else:
                    self._staff(call)
                return
            shed = self._route(changed, None)
            if call.state is _WAITING and call.deadline < self.armed:
                self._arm(call.deadline)
        reject(shed)

    def _refuse(self) -> BaseException:
        return (self.refusal or interpreter_refusal)()

    def _staff(self, call: Call[Any]) -> None:
        """Hand a granted call to an idle worker, or a new thread (lock held)."""
        if self._idle:
            worker = self._idle.pop()
            worker.call = call
            worker.park.release()
        else:
            # A new thread takes it from ``ready`` once initialised, unless a
            # thread that frees up first does. With every thread started, a
            # free seat means one has just released it and is on its way to
            # ``ready``, which it reads before parking.
            self.ready.append(call)
            if len(self.threads) < self.max_workers:
                register(self)
                name = f"{self._prefix}_{len(self.threads)}"
                thread = threading.Thread(name=name, target=self._run_worker)
                thread.start()
                self.threads.append(thread)

    def _route(self, changed: list[Ticket], own: Worker | None) -> list[Call[Any]]:
        """Staff the granted calls, return the shed ones (lock held).

        With ``own``, the first granted call is that worker's next (``own.call``).
        """
        shed: list[Call[Any]] = []
        for ticket in changed:
            if ticket.state is not _GRANTED:
                shed.append(ticket)  # type: ignore[arg-type]
            elif own is not None and own.call is None:
                own.call = ticket  # type: ignore[assignment]
            else:
                self._staff(ticket)  # type: ignore[arg-type]
        return shed

    def _arm(self, deadline: float) -> None:
        """Bring the one timer forward to ``deadline`` (lock held)."""
        self.armed = deadline
        if self.timer is None:
            register(self)
            self.timer = threading.Thread(name=f"{self._prefix}_timer", target=self._run_timer)
            self.timer.start()
        else:
            self._timer_wake.notify()

    # -- cancelling and closing --------------------------------------------------

    def withdraw(self, call: Call[Any]) -> None:
        """Take a cancelled call out of the queue, if it still waits there.

        A call granted meanwhile is left to its worker: its future is
        cancelled, so the worker gives the seat straight back.
        """
        if call.state is not _WAITING:
            return  # a call never goes back to waiting: safe to read unlocked
        shed: list[Call[Any]] = []
        with self.lock:
            if call.state is not _WAITING:
                return
            self.scheduler.cancel(call, monotonic())
            if self.closing:
                shed = self._settle_closing()
        call.data = None  # outside the lock: dropping arguments may run any __del__
        reject(shed)

    def close(self, refusal: Callable[[], BaseException], cancel_futures: bool) -> None:
        """Refuse new calls; with ``cancel_futures``, cancel every call not yet started."""
        cancelled: list[Call[Any]] = []
        with self.lock:
            if not self.closing:
                self.closing = True
                self.refusal = refusal
            if cancel_futures:
                cancelled = self._take_unstarted()
            shed = self._settle_closing()
        for call in cancelled:
            call.data = None
            Future.cancel(call)  # its ticket is already out of the scheduler
        reject(shed)

    def abandon(self) -> None:
        """The executor was garbage collected without shutdown: close as ``shutdown(False)``.

        The collector may run this in one of our own threads while it holds
        the lock, so the closing is done by a short-lived thread of its own.
        """
        refusal = _lost_refusal
        # RuntimeError: the interpreter is exiting, and its exit hook closes every pool
        with contextlib.suppress(RuntimeError):
            threading.Thread(target=self.close, args=(refusal, False), daemon=True).start()

    def _take_unstarted(self) -> list[Call[Any]]:
        """Withdraw every waiting call and every granted one no thread took (lock held).

        A call handed to a parked worker is not among them: it is as good as
        started, like an item the standard library's worker has dequeued.
        """
        s, now = self.scheduler, monotonic()
        taken: list[Call[Any]] = []
        for level in s.levels:
            for ticket in s.waiting_tickets(level):
                s.cancel(ticket, now)
                taken.append(ticket)  # type: ignore[arg-type]
        while self.ready:  # waiters are gone, so these releases grant nothing
            call = self.ready.popleft()
            s.release(call, now)
            taken.append(call)
        return taken

    def _settle_closing(self) -> list[Call[Any]]:
        """Shed waiters nothing can ever grant; wake threads once nothing waits (lock held)."""
        s = self.scheduler
        shed: list[Call[Any]] = []
        if s.waiting and not s.in_use:
            # Every seat is free and they still wait: only reservations for
            # calls that will never come keep them out.
            shed = s.close(monotonic())  # type: ignore[assignment]
        if not s.waiting:
            while self._idle:  # woken with no call: they exit
                self._idle.pop().park.release()
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
        """An initializer failed: fail every call not started, refuse new ones."""
        with self.lock:
            self.closing = True
            self.refusal = lambda: BrokenThreadPool(message)
            failed = self._take_unstarted()
            self._settle_closing()
        for call in failed:
            call.data = None
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
        except BaseException:  # a bug of ours
            _logger.critical("Exception in worker", exc_info=True)

    def _serve(self) -> None:
        """Run granted calls until the pool closes and nothing waits.

        The hot loop of the executor. A call's own release usually grants the
        next queued call, which this thread then runs itself: under a backlog
        no thread is woken per call.
        """
        me = Worker()
        lock, release = self.lock, self.scheduler.release
        call: Call[Any] | None = None
        fn: Callable[..., Any]
        args: tuple[Any, ...]
        kwargs: dict[str, Any]
        while True:
            if call is None:
                call = self._next_call(me)
                if call is None:
                    return
            # the call is this thread's alone: read unlocked
            fn, args, kwargs = call.data  # type: ignore[misc]
            call.data = None  # the future keeps no argument alive
            try:  # as the standard library's _WorkItem.run
                if call.set_running_or_notify_cancel():
                    try:
                        result = fn(*args, **kwargs)
                    except BaseException as exc:
                        call.set_exception(exc)
                    else:
                        call.set_result(result)
                        del result
            except BaseException:
                # Only a done callback raising a BaseException gets here (Future
                # logs Exceptions). The thread keeps serving; the seat is released.
                _logger.critical("BaseException in a done callback of %r", call, exc_info=True)
            finally:
                del fn, args, kwargs
                now = monotonic()
                lock.acquire()
                changed = release(call, now)
                call = None  # an idle thread keeps no call alive
                if (
                    changed
                    and len(changed) == 1
                    and changed[0].state is _GRANTED
                    and not self.closing
                ):
                    call = changed[0]  # type: ignore[assignment]  # this thread's next
                    lock.release()
                else:
                    call = self._after_release(changed, me)

    def _next_call(self, me: Worker) -> Call[Any] | None:
        """Park until handed a call; None when the thread should exit (lock not held)."""
        lock = self.lock
        call: Call[Any] | None
        lock.acquire()
        while True:
            if self.ready:
                call = self.ready.popleft()
                lock.release()
                return call
            if self.closing and not self.scheduler.waiting:
                lock.release()
                return None
            self._idle.append(me)
            lock.release()
            me.park.acquire()
            call, me.call = me.call, None
            if call is not None:
                return call
            lock.acquire()  # woken with nothing: see whether to exit

    def _after_release(self, changed: list[Ticket], me: Worker) -> Call[Any] | None:
        """Everything a release changed but one plain grant; returns the lock, and the next call."""
        shed = self._route(changed, me) if changed else []
        if self.closing:
            shed += self._settle_closing()
        call, me.call = me.call, None
        self.lock.release()
        reject(shed)
        return call

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
                shed: list[Call[Any]] = s.expire(now)  # type: ignore[assignment]
                if self.closing:
                    shed += self._settle_closing()
                self.lock.release()
                try:
                    reject(shed)
                finally:
                    self.lock.acquire()
            self.armed = _INF
