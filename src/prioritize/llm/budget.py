"""`Budget`: a provider's rate (requests and tokens per minute) shared by priority, for asyncio.

``async with budget.spend("high", tokens=estimate) as spend:`` waits until the
call fits the budget by its level's share, then ``spend.actual(n)`` reports
what the call really cost; leaving the block settles it (a refund or an
extra debit). ``await budget.call(fn, ..., usage=...)`` does the same around
one awaitable call.

Theory of operation: as `prioritize.aio.Gate`, the budget owns a sans-I/O
`RateScheduler` and resolves exactly the tickets each call returns; a
waiting ticket carries an ``asyncio.Future``. One ``loop.call_at`` timer,
re-armed for `RateScheduler.next_deadline` after every change, drives both
refills (a waiting request's turn to fit) and ``max_wait`` expiry.

Cancellation is safe at every instant: a waiter cancelled while queued
leaves the queue; a grant that lands after the cancellation was requested
is given back whole (the call was never made). The budget binds to the
event loop that first uses it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from types import TracebackType
from typing import TypeVar, final

from ..core.budget import RateScheduler
from ..core.budget_policy import BudgetPolicy
from ..core.budget_tickets import BudgetStats
from ..core.config import Policy
from ..core.levels import Level
from ..core.tickets import Reason, Ticket, TicketState
from ..errors import PrioritizeError, Rejected
from ._shared import Settling, check_policy, default_of, find_budget, level_of

__all__ = ["Budget", "Spend"]

_R = TypeVar("_R")
_GRANTED = TicketState.GRANTED
_WAITING = TicketState.WAITING


@final
class Budget:
    """A rate budget shared between priority levels, for asyncio code.

    Build it from a `BudgetPolicy` or a policy file's budget
    (`Budget.from_policy`). Every way of spending ends in one of two
    outcomes: the grant, or `Rejected` with ``level``, ``reason`` and
    ``retry_after``. A call's level is the one given, else
    `prioritize.current_level()`, else ``default_level`` (the policy's).
    """

    __slots__ = ("_default", "_loop", "_scheduler", "_timer", "_timer_at")

    def __init__(self, policy: BudgetPolicy, *, default_level: Level | str | None = None) -> None:
        self._scheduler = RateScheduler(check_policy("Budget", policy))
        self._default = default_of(policy.level_set, default_level)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    @classmethod
    def from_policy(cls, policy: Policy, name: str) -> Budget:
        """The budget called ``name`` in a policy (``load_policy()`` or ``parse_policy()``)."""
        return cls(find_budget(policy, name), default_level=policy.default_level.name)

    # -- spending ------------------------------------------------------------------------

    def spend(
        self,
        level: Level | str | None = None,
        *,
        tokens: float = 0,
        flow: Hashable | None = None,
        timeout: float | None = None,
    ) -> Spend:
        """Budget for one call, held by ``async with``; ``tokens`` is the call's estimate.

        Waits as the policy says (at most the level's ``max_wait``, and at
        most ``timeout`` seconds if given) and raises `Rejected` when shed.
        """
        return Spend(
            self, level_of(self._scheduler.levels, self._default, level), flow, tokens, timeout
        )

    async def call(
        self,
        fn: Callable[..., Awaitable[_R]],
        /,
        *args: object,
        level: Level | str | None = None,
        tokens: float = 0,
        flow: Hashable | None = None,
        usage: Callable[[_R], float | None] | None = None,
        **kwargs: object,
    ) -> _R:
        """``await fn(*args, **kwargs)`` within the budget; ``usage(result)`` gives the actual
        tokens (None: keep the estimate)."""
        async with self.spend(level, tokens=tokens, flow=flow) as spend:
            result = await fn(*args, **kwargs)
            if usage is not None:
                actual = usage(result)
                if actual is not None:
                    spend.actual(actual)
            return result

    def observe(self, remaining: Mapping[str, float]) -> None:
        """Lower the budget to what the provider says remains (``{"tokens": 1200}``)."""
        self._settle(self._scheduler.observe(self._now(), remaining))

    # -- managing it ---------------------------------------------------------------------

    @property
    def scheduler(self) -> RateScheduler:
        """The sans-I/O scheduler behind the budget (read it; change it through the budget)."""
        return self._scheduler

    @property
    def policy(self) -> BudgetPolicy:
        return self._scheduler.policy

    def stats(self) -> BudgetStats:
        return self._scheduler.stats()

    def close(self) -> None:
        """Shed every waiter with reason ``shutdown``, and every later call."""
        self._settle(self._scheduler.close(self._now()))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- the adapter -----------------------------------------------------------------------

    def _now(self) -> float:
        return self._bind().time()

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise PrioritizeError(
                f"budget {self._scheduler.name!r} is bound to another event loop; "
                "create one Budget per loop"
            )
        return loop

    def _settle(self, changed: list[Ticket]) -> None:
        """Deliver decisions to the waiters they concern, then re-arm the one timer."""
        for ticket in changed:
            future = ticket.data
            if isinstance(future, asyncio.Future) and not future.done():
                if ticket.state is _GRANTED:
                    future.set_result(None)
                else:
                    future.set_exception(Rejected.from_ticket(ticket))
        self._arm()

    def _arm(self) -> None:
        deadline = self._scheduler.next_deadline()
        if self._timer is not None:
            if deadline is not None and self._timer_at == deadline:
                return
            self._timer.cancel()
            self._timer = None
        if deadline is not None and self._loop is not None:
            self._timer_at = deadline
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        loop = self._bind()
        # asyncio may run a timer up to its clock resolution early: it is due all the same
        self._settle(self._scheduler.advance(max(loop.time(), self._timer_at)))

    def __repr__(self) -> str:
        s = self._scheduler
        return f"<Budget {s.name}: {s.in_flight} in flight, {s.waiting} waiting>"


class Spend(Settling):
    """Budget for one call of a `Budget`, held with ``async with``; use it once.

    Inside the block, `actual` reports the call's real token count and
    `refused` says the provider answered 429; leaving the block settles
    the call either way (with the estimate if neither was said).
    """

    __slots__ = ("_budget",)

    def __init__(
        self,
        budget: Budget,
        level: Level,
        flow: Hashable | None,
        tokens: float,
        timeout: float | None,
    ) -> None:
        super().__init__(level, flow, tokens, timeout)
        self._budget = budget

    async def __aenter__(self) -> Spend:
        budget = self._budget
        scheduler = budget._scheduler
        changed = scheduler.submit(self, budget._now())
        if self.state is _WAITING:
            future: asyncio.Future[None] = budget._bind().create_future()
            self.data = future
        budget._settle(changed)
        if self.state is _GRANTED:
            return self
        if self.state is not _WAITING:
            raise Rejected.from_ticket(self)
        try:
            async with asyncio.timeout(self._timeout):
                await future
        except (asyncio.CancelledError, TimeoutError) as stop:
            now = budget._now()
            budget._settle(scheduler.cancel(self, now))
            if isinstance(stop, TimeoutError):
                retry_after = scheduler.retry_after(self.level, now, self.tokens)
                raise Rejected(self.level.name, Reason.TIMEOUT, retry_after) from None
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        budget = self._budget
        budget._settle(self.end(budget._scheduler, budget._now()))
