"""`PriorityQueue`: an asyncio queue that hands out items by a gate's policy.

``put`` files an item at a level (and a flow); ``get`` returns the next item
by the policy: strict or weighted between levels, flows taking turns within
a level, FIFO within a flow. The queue is bounded by the policy's ``queue``
knobs and never blocks a producer: a full queue evicts its least important
newest item for a more important one, or refuses the new one. ``max_wait``
bounds how long an item may wait. Every item put ends exactly once: taken by
a consumer, or handed to ``on_shed(item, Rejected)`` with the reason
(``queue_full``, ``evicted``, ``timeout``, ``limit``, ``shutdown``).
``on_shed`` is required, so a shed item can never go unnoticed.

``serve(handler, concurrency=N)`` runs N workers that pull an item only when
one is free, so the policy's ``min`` and ``max`` act on work in progress.

Theory of operation: the sans-I/O `QueueState` (see its module) owns the
scheduler and decides; this adapter reads the loop's clock, parks consumers
on futures, wakes one per grant, arms one ``loop.call_at`` timer for the
earliest ``max_wait`` deadline and delivers shed items. It binds to the event
loop that first uses it and is not thread-safe (threads have
`ThreadPriorityQueue`).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar, cast, final

from ..aio import _clock_of
from ..core.config import Policy
from ..core.levels import Level
from ..core.policy import GatePolicy
from ..core.stats import GateStats
from ..core.tickets import Ticket, TicketState
from ..errors import PrioritizeError, QueueClosed, Rejected
from ._state import QueueState

__all__ = ["PriorityQueue"]

T = TypeVar("T")

_WAITING = TicketState.WAITING
_GRANTED = TicketState.GRANTED
_SHED = TicketState.SHED


@final
class PriorityQueue(Generic[T]):
    """A bounded asyncio priority queue whose order, bounds and shedding follow a `GatePolicy`.

    The policy's ``capacity`` is the default number of `serve` workers.
    ``on_shed(item, rejected)`` receives every item the queue drops, once.
    """

    __slots__ = (
        "_clock",
        "_finished",
        "_late",
        "_loop",
        "_on_shed",
        "_state",
        "_timer",
        "_timer_at",
        "_waiters",
    )

    def __init__(self, policy: GatePolicy, *, on_shed: Callable[[T, Rejected], object]) -> None:
        if not callable(on_shed):
            raise TypeError(f"on_shed must be callable(item, rejected), not {on_shed!r}")
        self._state = QueueState(policy)
        self._on_shed = on_shed
        self._loop: asyncio.AbstractEventLoop | None = None
        #: the bound loop's ``time``; until the queue meets its loop, a method that binds
        self._clock: Callable[[], float] = self._first_clock
        #: consumers parked in get() or workers idle in serve(), woken one per grant
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._finished = asyncio.Event()
        self._finished.set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        #: scratch list for `Scheduler.take`, empty between calls
        self._late: list[Ticket] = []

    @classmethod
    def from_policy(
        cls, policy: Policy, name: str, *, on_shed: Callable[[T, Rejected], object]
    ) -> PriorityQueue[T]:
        """The queue for gate ``name`` of a policy (``load_policy()`` or ``parse_policy()``)."""
        return cls(policy.gate(name), on_shed=on_shed)

    # -- producers ----------------------------------------------------------------

    async def put(
        self, item: T, level: Level | str | int = "normal", flow: Hashable | None = None
    ) -> bool:
        """As `put_nowait`: a put never waits, since a full queue sheds instead."""
        return self.put_nowait(item, level, flow)

    def put_nowait(
        self, item: T, level: Level | str | int = "normal", flow: Hashable | None = None
    ) -> bool:
        """File ``item``; False if it was refused (and so already handed to ``on_shed``).

        True means it is queued or was handed to a waiting consumer. A put into
        a full queue may evict a less important item, which goes to ``on_shed``.
        """
        state = self._state
        found = state.by_name.get(level) if type(level) is str else None
        ticket = Ticket(found or state.level(level), flow, item)
        now = self._clock()
        changed = state.scheduler.submit(ticket, now)
        if ticket.state is _WAITING:  # QueueState.filed, inlined: the hot paths
            if ticket.deadline < self._timer_at:
                self._arm(ticket.deadline)
            if not changed:
                state.unfinished += 1
                if state.unfinished == 1:
                    self._finished.clear()
                return True
            state.unfinished += 1 - len(changed)  # queued, and waiters evicted for it
            _deliver(self._on_shed, changed)
            return True
        state.filed(ticket, changed, now)
        if ticket.state is _SHED:
            self._flush()
            return False
        self._finished.clear()  # granted to a waiting consumer
        self._flush()
        return True

    # -- consumers ----------------------------------------------------------------

    async def get(self) -> T:
        """The next item by the policy, waiting for one if the queue is empty.

        Raises `QueueClosed` once the queue is closed and has nothing left.
        """
        ticket = self._next()
        if ticket is None:
            ticket = await self._wait_for_item()
        return ticket.data  # type: ignore[return-value]  # data is the T put; no cast() call

    def get_nowait(self) -> T:
        """The next item by the policy; `asyncio.QueueEmpty` if there is none now.

        Raises `QueueClosed` once the queue is closed and has nothing left.
        """
        state = self._state
        if state.holder is not None and not state.ready:
            # QueueState.take, inlined: the hot path of a consumer that keeps up
            # (the holder is None while serving, so serve() is never competed with)
            late = self._late
            ticket = state.scheduler.take(self._clock(), late)
            if late:
                state.unfinished -= len(late)  # past max_wait: the timer was late
                state.shed += late
                late.clear()
                self._flush()
            if ticket is not None:
                return ticket.data  # type: ignore[return-value]  # data is the T put
        found = self._next()
        if found is None:
            if state.closed:
                raise QueueClosed(f"{self!r} is closed and empty")
            raise asyncio.QueueEmpty
        return found.data  # type: ignore[return-value]  # data is the T put; no cast() call

    def task_done(self) -> None:
        """Mark one item got earlier as processed, for `join` (as `asyncio.Queue.task_done`)."""
        self._state.task_done()
        if not self._state.unfinished:
            self._finished.set()

    async def join(self) -> None:
        """Wait until every item put has been marked done or shed."""
        if self._state.unfinished:
            await self._finished.wait()

    async def serve(
        self, handler: Callable[[T], Awaitable[object]], concurrency: int | None = None
    ) -> None:
        """Run ``concurrency`` workers (default: the policy's capacity) until the queue closes.

        A worker takes an item only when it is free, awaits ``handler(item)``
        and marks it done; seats are workers, so the policy's per-level ``min``
        and ``max`` hold across them. Returns once the queue is closed and the
        handlers running then have finished. If a handler raises, the other
        handlers are cancelled and the exception propagates (catch inside the
        handler to keep serving); cancelling `serve` cancels the handlers. In
        both cases the items still queued stay queued, with their deadlines.
        """
        state = self._state
        workers = _check_concurrency(concurrency, state.policy.capacity)
        if state.serving:
            raise RuntimeError(f"{self!r} is already being served; call serve() once")
        loop = self._bind()
        if state.closed:
            return
        state.start_serving(workers, loop.time())
        self._rearm()
        self._flush()
        tasks = [loop.create_task(self._work(handler)) for _ in range(workers)]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            failed = next(
                (t.exception() for t in done if not t.cancelled() and t.exception()), None
            )
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            state.stop_serving(loop.time())
            self._rearm()
            self._flush()
        if failed is not None:
            raise failed

    # -- the queue ----------------------------------------------------------------

    def qsize(self, level: Level | str | int | None = None) -> int:
        """Items queued, all levels or one."""
        return self._state.qsize(level)

    def empty(self) -> bool:
        return not self._state.qsize()

    def stats(self) -> GateStats:
        """A snapshot of items per level: handed out, shed (by reason), queued, waits.

        ``capacity`` and ``in_use`` count `serve` workers (0 while consumed
        with `get`). Read it from the queue's event loop, as every method.
        """
        return self._state.stats()

    @property
    def is_closed(self) -> bool:
        return self._state.closed

    def close(self) -> None:
        """Refuse later puts and shed the queued items, with reason ``shutdown``.

        Consumers waiting in `get` raise `QueueClosed`; `serve` returns once its
        running handlers finish. To finish the queued work first, ``await
        join()`` before closing. Closing twice is harmless.
        """
        state = self._state
        state.close(self._clock())
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf
        state.wake += len(self._waiters)  # everyone re-checks, and finds the queue closed
        self._flush()

    # -- the adapter ----------------------------------------------------------------

    def _next(self) -> Ticket | None:
        """The next item for a consumer that is not waiting, or None."""
        state = self._state
        if state.serving:
            raise RuntimeError(
                f"{self!r} is being served by serve(); get() would compete with its workers"
            )
        found = state.take(self._clock())
        if state.shed or state.wake:
            self._flush()
        return found

    async def _wait_for_item(self) -> Ticket:
        state = self._state
        loop = self._bind()
        if state.closed:
            raise QueueClosed(f"{self!r} is closed and empty")
        state.register(loop.time())  # the seat is now free: a put goes straight to a consumer
        waiting = True
        try:
            while True:
                await self._park(loop)
                ticket = state.take(loop.time(), waiting=True)
                if ticket is not None:
                    waiting = False
                    return ticket
                if state.closed:
                    raise QueueClosed(f"{self!r} is closed and empty")
        finally:
            if waiting:
                state.unregister(loop.time())
                if state.ready:
                    state.wake += 1  # woken but leaving empty-handed: pass the wake on
            self._flush()

    async def _park(self, loop: asyncio.AbstractEventLoop) -> None:
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.append(future)
        try:
            await future
        except BaseException:
            if not future.done():
                future.cancel()
            if future in self._waiters:
                self._waiters.remove(future)
            raise

    async def _work(self, handler: Callable[[T], Awaitable[object]]) -> None:
        """One worker of `serve`: claim an item, run the handler, give the seat on."""
        state = self._state
        loop = self._bind()
        ticket = state.claim(loop.time())
        self._flush()  # unplugging this worker's seat may have shed overdue items
        while True:
            while ticket is None:
                ticket = state.claim(loop.time())  # a ready item first, whoever it woke
                if ticket is not None:
                    break
                if state.closed:
                    return
                await self._park(loop)
            try:
                await handler(cast(T, ticket.data))
            except BaseException:
                following = state.finish(ticket, loop.time())
                if following is not None:  # serving stops: it is queued again, not lost
                    state.ready.appendleft(following)
                self.task_done()
                self._flush()
                raise
            ticket = state.finish(ticket, loop.time())
            self.task_done()
            if state.shed or state.wake:
                self._flush()

    def _flush(self) -> None:
        """Wake a consumer per grant, then hand every shed item to ``on_shed``."""
        state = self._state
        wake = state.wake
        if wake:
            state.wake = 0
            waiters = self._waiters
            while wake and waiters:
                future = waiters.popleft()
                if not future.done():
                    future.set_result(None)
                    wake -= 1
        shed = state.shed
        if shed:
            state.shed = []
            if not state.unfinished:
                self._finished.set()
            _deliver(self._on_shed, shed)

    def _arm(self, deadline: float) -> None:
        loop = self._loop
        if loop is None or deadline == math.inf:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = loop.call_at(deadline, self._on_timer)

    def _rearm(self) -> None:
        deadline = self._state.scheduler.next_deadline()
        if deadline is not None and deadline < self._timer_at:
            self._arm(deadline)

    def _on_timer(self) -> None:
        due, self._timer, self._timer_at = self._timer_at, None, math.inf
        loop = self._bind()
        # asyncio may run a timer up to its clock resolution early: it is due all the same
        self._state.expire(max(loop.time(), due))
        self._rearm()
        self._flush()

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        running = asyncio.get_running_loop()
        if loop is None:
            loop = self._loop = running
            self._clock = clock = _clock_of(loop)
            self._state.start(clock())
        elif loop is not running:
            raise PrioritizeError(
                f"{self!r} is bound to another event loop; create one queue per loop"
            )
        return loop

    def _first_clock(self) -> float:
        return self._bind().time()

    def __repr__(self) -> str:
        state = self._state
        mode = ", serving" if state.serving else ", closed" if state.closed else ""
        return f"<PriorityQueue {state.policy.name} {state.qsize()} queued{mode}>"


def _failed(task: asyncio.Task[None]) -> bool:
    return not task.cancelled() and task.exception() is not None


def _check_concurrency(concurrency: int | None, default: int) -> int:
    if concurrency is None:
        return default
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ValueError(f"concurrency = {concurrency!r}: expected a whole number ≥ 1")
    return concurrency


def _deliver(on_shed: Callable[[T, Rejected], object], shed: list[Ticket]) -> None:
    """Hand each shed item to ``on_shed``; if one call raises, the others still run."""
    error: Exception | None = None
    for ticket in shed:
        try:
            on_shed(cast(T, ticket.data), Rejected.from_ticket(ticket))
        except Exception as exc:
            error = error or exc
    if error is not None:
        raise error
