"""Every error `prioritize` raises.

One base class, so ``except PrioritizeError`` catches all of them; each
subclass also derives from the builtin it refines, so code that already
catches ``ValueError`` or ``LookupError`` keeps working::

    PrioritizeError
    ├── ConfigError (ValueError)        a policy, gate or rule is invalid
    ├── UnknownLevelError (KeyError)    a level name or rank is not in the level set
    ├── TicketStateError (RuntimeError) a ticket was used in a state that forbids it
    └── Rejected                        a request was shed; carries reason and retry_after

A message always names the bad value and what is accepted instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .core.tickets import Reason, Ticket

__all__ = [
    "ConfigError",
    "PrioritizeError",
    "Problem",
    "QueueClosed",
    "Rejected",
    "TicketStateError",
    "UnknownLevelError",
]


class PrioritizeError(Exception):
    """Base class of every error raised by `prioritize`."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a configuration: where, what was given, what is accepted."""

    #: dotted key path, e.g. ``gates.api.levels.low.max``
    path: str
    #: human-readable description naming the bad value and what is accepted
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def did_you_mean(name: object, valid: Iterable[str]) -> str:
    """``"did you mean 'x'? "`` for a close or abbreviated name of ``valid``, else ``""``."""
    if not isinstance(name, str):
        return ""
    options = list(valid)
    close = (
        difflib.get_close_matches(name, options, n=1)
        or [option for option in options if name and option.startswith(name)][:1]
    )
    return f"did you mean {close[0]!r}? " if close else ""


def unknown_key(key: object, valid: Sequence[str]) -> str:
    """The message for a configuration key not accepted where it stands."""
    listing = ", ".join(repr(k) for k in valid)
    return f"unknown key; {did_you_mean(key, valid)}accepted keys: {listing}"


def show(value: object) -> str:
    """A configuration value as the user wrote it: TOML spelling for booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


class ConfigError(PrioritizeError, ValueError):
    """A policy is invalid; ``problems`` lists every problem found, not just the first.

    ``source`` names the file (or other origin) the policy came from, when known.
    """

    def __init__(self, problems: Sequence[Problem] | str, source: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [Problem("", problems)]
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.source = source
        where = f" in {source}" if source else ""
        if len(self.problems) == 1:
            text = f"{self.problems[0]}{f' ({where[1:]})' if where else ''}"
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            text = f"{len(self.problems)} problems{where or ' in the policy'}:\n{lines}"
        super().__init__(text)


class UnknownLevelError(PrioritizeError, KeyError):
    """A level was looked up by a name or rank that the level set does not have."""

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the message and add quotes.
        return str(self.args[0]) if self.args else ""


class TicketStateError(PrioritizeError, RuntimeError):
    """A ticket was submitted twice, released without a seat, or used with the wrong gate."""


class QueueClosed(PrioritizeError):
    """A priority queue was closed and has nothing left to get."""


class Rejected(PrioritizeError):
    """A request was shed: it did not get a seat and will not get one.

    ``retry_after`` is the scheduler's estimate, in seconds, of when a retry
    could be served (from queue length and the recent completion rate).
    """

    def __init__(self, level: str, reason: Reason, retry_after: float) -> None:
        # The message is formatted only when read: sheds are frequent under
        # overload and most are answered from the fields, never printed.
        self.level = level
        self.reason = reason
        self.retry_after = retry_after

    def __str__(self) -> str:
        return (
            f"{self.level} request shed ({self.reason.value}); retry after {self.retry_after:.3g}s"
        )

    def __repr__(self) -> str:
        return f"Rejected({self.level!r}, {self.reason!r}, {self.retry_after!r})"

    @classmethod
    def from_ticket(cls, ticket: Ticket) -> Rejected:
        """The error for a ticket the scheduler shed (its state is SHED)."""
        if ticket.reason is None or ticket.retry_after is None:
            raise TicketStateError(f"{ticket!r} was not shed; only a shed ticket is rejected")
        return cls(ticket.level.name, ticket.reason, ticket.retry_after)

    def __reduce__(self) -> tuple[type[Rejected], tuple[str, Reason, float]]:
        # picklable, so it crosses process pools and job results intact
        return (type(self), (self.level, self.reason, self.retry_after))
