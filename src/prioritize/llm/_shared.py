"""What the asyncio `Budget` and the thread `SyncBudget` share: levels, the policy, a spend.

Both front-ends own a `RateScheduler` and differ only in how a waiter waits
(a future on one event loop, a parked lock per thread). Everything that is
not waiting lives here, once: which level a call is at (the one given, else
`prioritize.current_level()`, else the policy's default), finding a budget
in a policy file, and `Settling`, the ticket a call holds, with what its
caller says about the call (`Settling.actual`, `Settling.refused`) and how
that ends it in the scheduler.
"""

from __future__ import annotations

import math
from collections.abc import Hashable

from ..context import current_level
from ..core.budget import RateScheduler
from ..core.budget_policy import BudgetPolicy
from ..core.budget_tickets import RateTicket, is_amount
from ..core.config import Policy
from ..core.levels import Level, LevelSet
from ..core.tickets import Ticket, TicketState
from ..errors import ConfigError, Problem, TicketStateError, did_you_mean

__all__ = ["Settling", "check_policy", "check_timeout", "default_of", "find_budget", "level_of"]

_GRANTED = TicketState.GRANTED


def check_policy(front: str, policy: object) -> BudgetPolicy:
    """``policy`` if it is a `BudgetPolicy`; else a `TypeError` naming ``front`` (the class)."""
    if not isinstance(policy, BudgetPolicy):
        raise TypeError(f"{front}() takes a BudgetPolicy, not {type(policy).__name__}")
    return policy


def default_of(levels: LevelSet, given: Level | str | None) -> Level:
    """The level of a call that names none and runs at no current level: ``given``,
    else the middle level of the set (a policy file's ``default_level`` is passed)."""
    return levels[len(levels) // 2] if given is None else levels.resolve(given)


def level_of(levels: LevelSet, default: Level, level: Level | str | None) -> Level:
    """A call's level: ``level`` if given, else the current one if the budget has it, else
    ``default``."""
    if level is None:
        current = current_level()
        if current is not None and current.name in levels:
            return levels[current.name]
        return default
    return levels.resolve(level)


def find_budget(policy: Policy, name: str) -> BudgetPolicy:
    """The budget called ``name`` in a policy; `ConfigError` naming the ones defined."""
    budget = policy.budgets.get(name)
    if budget is None:
        defined = ", ".join(repr(b) for b in policy.budgets) or "none"
        hint = did_you_mean(name, policy.budgets)
        message = f"no such budget in {policy.source}; {hint}budgets defined: {defined}"
        raise ConfigError([Problem(f"budgets.{name}", message)])
    return budget


def check_timeout(timeout: float | None) -> float | None:
    """``timeout`` if it is None or seconds ≥ 0; else a `ValueError` saying so."""
    if timeout is None:
        return None
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not timeout >= 0:
        raise ValueError(f"timeout = {timeout!r}: expected seconds ≥ 0, or None to wait as long")
    return float(timeout)


class Settling(RateTicket):
    """Budget for one call: its estimate, then what the call really cost or that it was refused.

    Inside the block, `actual` reports the call's real token count and
    `refused` says the provider answered 429; leaving the block settles
    the call either way (with the estimate if neither was said).
    """

    __slots__ = ("_actual", "_refused", "_retry_after", "_timeout")

    def __init__(
        self, level: Level, flow: Hashable | None, tokens: float, timeout: float | None
    ) -> None:
        if not is_amount(tokens):
            raise ValueError(f"tokens = {tokens!r}: expected an estimate, a number ≥ 0")
        super().__init__(level, flow, None, True, float(tokens))
        self._timeout = check_timeout(timeout)
        self._actual: float | None = None
        self._refused = False
        self._retry_after: float | None = None

    def actual(self, tokens: float) -> None:
        """The call's real token count, as the provider reported it (``usage``)."""
        if self.state is not _GRANTED:
            raise TicketStateError(f"{self!r} holds no budget: report usage inside the block")
        if not isinstance(tokens, int | float) or isinstance(tokens, bool) or not tokens >= 0:
            raise ValueError(f"tokens = {tokens!r}: expected the actual count, a number ≥ 0")
        self._actual = float(tokens)

    @property
    def is_refused(self) -> bool:
        """`refused` was called: the call ends as a provider's refusal."""
        return self._refused

    def refused(self, retry_after: float | None = None) -> None:
        """The provider refused the call (429): the budget backs off when the block ends,
        and grants nothing for ``retry_after`` seconds (its ``Retry-After``)."""
        if retry_after is not None and (
            not isinstance(retry_after, int | float)
            or isinstance(retry_after, bool)
            or not 0 <= retry_after < math.inf
        ):
            raise ValueError(f"retry_after = {retry_after!r}: expected seconds ≥ 0 or None")
        self._refused = True
        self._retry_after = retry_after

    def end(self, scheduler: RateScheduler, now: float) -> list[Ticket]:
        """Settle the call in ``scheduler``: refused, or with its actual count (or estimate)."""
        if self._refused:
            return scheduler.refused(self, now, self._retry_after)
        return scheduler.settle(self, now, self._actual)
