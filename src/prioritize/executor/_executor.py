"""`PriorityThreadPoolExecutor`: the standard thread pool, with a priority scheduler as queue."""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import sys
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import Executor, Future
from time import monotonic
from typing import Any, TypeVar, final

from ..core.config import Policy
from ..core.levels import DEFAULT_LEVELS, Level
from ..core.policy import GatePolicy, LevelPolicy
from ..core.scheduler import Scheduler
from ..core.stats import GateStats
from ..core.tickets import Ticket
from ._call import Call
from ._pool import Pool

__all__ = ["PriorityThreadPoolExecutor"]

_T = TypeVar("_T")
_ticket_init = Ticket.__init__


def _shutdown_refusal() -> BaseException:
    return RuntimeError("cannot schedule new futures after shutdown")


def _default_policy(max_workers: int) -> GatePolicy:
    """The policy of an executor given none: strict order, no bound, no timeout.

    Like `ThreadPoolExecutor`, it queues every call and never drops one; the
    levels only decide which queued call runs next.
    """
    forever = LevelPolicy(max_wait=math.inf)
    return GatePolicy(
        capacity=max_workers,
        levels={level.name: forever for level in DEFAULT_LEVELS},
        queue=sys.maxsize,
        name="executor",
    )


@final
class PriorityThreadPoolExecutor(Executor):
    """A `concurrent.futures.ThreadPoolExecutor` that runs the most important queued call next.

    A plain thread pool runs queued calls first come, first served: a burst
    of bulk work delays every critical call behind it, and a full backlog
    grows without bound. Here each free worker thread is a seat of a
    `Scheduler` with ``capacity = max_workers``, and ``policy`` decides which
    queued call a free thread runs next (``min``, ``max``, ``weight`` and
    ``order`` of each level) and which calls are shed: a shed call's future
    raises `Rejected` (``reason``, ``retry_after``), it is never dropped
    silently.

    ``max_workers`` defaults to ``policy.capacity`` when a policy is given,
    else to the standard library's ``min(32, os.cpu_count() + 4)``. Given
    both, ``max_workers`` wins and the policy is resolved for it (percentages
    keep their meaning). Without a policy every level queues without bound
    and without timeout, like `ThreadPoolExecutor`, in strict order.

    Everything else is the standard library's: futures, ``map``,
    ``shutdown(wait, cancel_futures=...)``, the context manager, lazily
    started threads, ``initializer`` and `BrokenThreadPool`, and queued calls
    running to the end at interpreter exit. Thread-safe.
    """

    _counter = itertools.count().__next__

    def __init__(
        self,
        max_workers: int | None = None,
        policy: GatePolicy | None = None,
        *,
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        if policy is not None and not isinstance(policy, GatePolicy):
            raise TypeError(
                f"policy must be a GatePolicy or None, not {type(policy).__name__}; "
                "for a gate of a policy file use PriorityThreadPoolExecutor.from_policy()"
            )
        if max_workers is None:
            max_workers = policy.capacity if policy else min(32, (os.cpu_count() or 1) + 4)
        if not isinstance(max_workers, int) or isinstance(max_workers, bool):
            raise TypeError(f"max_workers must be an int or None, not {max_workers!r}")
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if policy is None:
            policy = _default_policy(max_workers)
        elif policy.capacity != max_workers:
            policy = dataclasses.replace(policy, capacity=max_workers)
        scheduler = Scheduler(policy)
        self._scheduler = scheduler
        self._levels = policy.level_set
        self._by_level: dict[object, Level] = {}
        for level in policy.level_set:
            self._by_level[level.name] = self._by_level[level] = level
        prefix = thread_name_prefix or f"PriorityThreadPoolExecutor-{self._counter()}"
        self._pool = pool = Pool(scheduler, max_workers, prefix, initializer, initargs)
        # Dropped without shutdown: queued calls still run, then the threads exit.
        weakref.finalize(self, pool.abandon).atexit = False

    @classmethod
    def from_policy(
        cls,
        policy: Policy,
        gate: str,
        *,
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> PriorityThreadPoolExecutor:
        """An executor for the gate called ``gate`` of a policy file: ``max_workers = capacity``.

        ``policy`` comes from `prioritize.load_policy` or `prioritize.parse_policy`;
        an unknown gate raises `ConfigError` naming the defined ones.
        """
        return cls(
            policy=policy.gate(gate),
            thread_name_prefix=thread_name_prefix,
            initializer=initializer,
            initargs=initargs,
        )

    def submit(  # type: ignore[override]
        self,
        fn: Callable[..., _T],
        /,
        *args: Any,
        priority: Level | str | int = "normal",
        flow: Hashable | None = None,
        **kwargs: Any,
    ) -> Future[_T]:
        """Schedule ``fn(*args, **kwargs)`` at level ``priority``; return its future.

        ``priority`` (a level name, rank or `Level`) and ``flow`` (a fairness
        key within the level, e.g. a tenant) are keyword-only and reserved:
        to pass a keyword argument of one of these names to ``fn`` itself,
        wrap it, ``submit(functools.partial(fn, priority=3), priority="high")``.

        The future raises `Rejected` if the call is shed (at once, or later
        by eviction or ``max_wait``), and is cancelled by ``future.cancel()``
        while queued. Raises `UnknownLevelError` for a level not in the
        policy, ``RuntimeError`` after `shutdown`, `BrokenThreadPool` after
        an initializer failed.
        """
        try:
            level = self._by_level[priority]
        except (KeyError, TypeError):
            level = self._levels.resolve(priority)
        if flow is not None and not isinstance(flow, Hashable):
            raise TypeError(f"flow must be hashable (a tenant, a user id), not {flow!r}")
        call: Call[_T] = Call()
        _ticket_init(call, level, flow, (fn, args, kwargs))
        self._pool.submit(call)
        return call

    def map(
        self,
        fn: Callable[..., _T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        priority: Level | str | int = "normal",
    ) -> Iterator[_T]:
        """`Executor.map`, every call at level ``priority`` (``chunksize`` is ignored).

        All calls are submitted before the first result is asked for; a shed
        call raises `Rejected` when its result is reached. ``timeout`` counts
        from this call and raises ``TimeoutError``; the calls not yet reached
        are then cancelled, as by the standard library.
        """
        end_time = None if timeout is None else timeout + monotonic()
        level = self._levels.resolve(priority)
        fs = [self.submit(fn, *args, priority=level) for args in zip(*iterables, strict=False)]

        def result_iterator() -> Iterator[_T]:
            try:
                fs.reverse()  # pop() from the end: the submission order
                while fs:
                    if end_time is None:
                        yield _result_or_cancel(fs.pop())
                    else:
                        yield _result_or_cancel(fs.pop(), end_time - monotonic())
            finally:
                for future in fs:
                    future.cancel()

        return result_iterator()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new calls; with ``wait``, return once every thread has exited.

        Queued calls still run, unless ``cancel_futures``: then every call not
        yet started is cancelled. Running calls always finish. Queued calls
        that could never run (kept out by reservations for levels that can no
        longer arrive) are shed with reason ``shutdown``.
        """
        self._pool.close(_shutdown_refusal, cancel_futures)
        if wait:
            self._pool.join()

    @property
    def max_workers(self) -> int:
        return self._pool.max_workers

    @property
    def policy(self) -> GatePolicy:
        """The policy in force, resolved for ``max_workers`` seats."""
        return self._scheduler.policy

    def stats(self) -> GateStats:
        """A snapshot of the scheduler: seats (running calls) and queued calls per level."""
        with self._pool.lock:
            return self._scheduler.stats()

    def __repr__(self) -> str:
        s, pool = self._scheduler, self._pool
        return (
            f"<PriorityThreadPoolExecutor {s.name} {s.in_use}/{s.capacity} seats, "
            f"{s.waiting} waiting, {len(pool.threads)} threads"
            f"{', shut down' if pool.closing else ''}>"
        )


def _result_or_cancel(future: Future[_T], timeout: float | None = None) -> _T:
    try:
        try:
            return future.result(timeout)
        finally:
            future.cancel()
    finally:
        del future  # no cycle through the exception's traceback
