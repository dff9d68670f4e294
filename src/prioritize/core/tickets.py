"""Tickets: one request for one seat, and the answers the scheduler gives it.

A ticket is the only object an adapter and the scheduler share. The adapter
creates it (``scheduler.ticket("high", flow=tenant)``), hangs whatever it
needs on ``data`` (a future, a job id), submits it, and later reads
``state``, ``reason`` and ``retry_after`` from the tickets a call returns.

Lifecycle (each ticket ends exactly once)::

    NEW ──submit──► GRANTED ──release──► RELEASED
     │                 ▲
     │ submit          │ a seat frees
     ▼                 │
    WAITING ───────────┘
     │   ├──cancel──► CANCELLED
     │   └──evicted / max_wait / close──► SHED (reason, retry_after)
     └──submit with no room──► SHED
"""

from __future__ import annotations

from collections.abc import Hashable
from enum import StrEnum

from .levels import Level

__all__ = ["Reason", "Ticket", "TicketState"]


class TicketState(StrEnum):
    """Where a ticket is in its lifecycle."""

    #: created, not yet submitted
    NEW = "new"
    #: queued for a seat
    WAITING = "waiting"
    #: holds a seat; must be released
    GRANTED = "granted"
    #: held a seat and gave it back
    RELEASED = "released"
    #: withdrawn by its owner before it got a seat
    CANCELLED = "cancelled"
    #: refused or dropped by the scheduler; see ``reason``
    SHED = "shed"


class Reason(StrEnum):
    """Why a ticket was shed."""

    #: every queue this request could wait in was full
    QUEUE_FULL = "queue_full"
    #: it was waiting, and a more important arrival took its place in a full queue
    EVICTED = "evicted"
    #: it waited ``max_wait`` seconds without getting a seat
    TIMEOUT = "timeout"
    #: no seat was free at once and the request may not wait (``max_wait = 0``,
    #: a try-only ticket, or a level whose ``max`` is 0)
    LIMIT = "limit"
    #: the gate was closed
    SHUTDOWN = "shutdown"
    #: refused at the client, before it was sent: the downstream has been rejecting
    #: calls recently (client-side throttling) or asked for a pause with Retry-After
    THROTTLED = "throttled"


_NEW = TicketState.NEW


class Ticket:
    """One request for one seat of one gate.

    Mutable on purpose: the scheduler moves it through its states in place,
    so an adapter needs no lookup table from tickets to its own objects.
    Read-only for adapters except ``data``. Adapters may subclass it to hang
    their own state on the same object (one allocation per request, not two);
    a subclass must not override anything the scheduler reads or writes.
    """

    __slots__ = (
        "data",
        "deadline",
        "flow",
        "granted_at",
        "level",
        "reason",
        "retry_after",
        "state",
        "submitted_at",
        "wait",
    )

    def __init__(
        self,
        level: Level,
        flow: Hashable | None = None,
        data: object = None,
        wait: bool = True,
    ) -> None:
        #: the level this request is served at
        self.level = level
        #: fairness key within the level (tenant, user, client); None is one shared flow
        self.flow = flow
        #: free for the adapter: a future, a job id, a callback
        self.data = data
        #: False: take a seat now or be shed with reason ``limit``, never queue
        self.wait = wait
        self.state = _NEW  # a global: an enum member read through the class costs ~90 ns
        #: set when shed
        self.reason: Reason | None = None
        #: set when shed: seconds until a retry could be served
        self.retry_after: float | None = None
        self.submitted_at = 0.0
        #: when a queued ticket is shed by ``max_wait``
        self.deadline = 0.0
        self.granted_at: float | None = None

    @property
    def waited(self) -> float | None:
        """Seconds between submit and grant, once granted."""
        return None if self.granted_at is None else self.granted_at - self.submitted_at

    def __repr__(self) -> str:
        flow = "" if self.flow is None else f" flow={self.flow!r}"
        why = f" {self.reason.value}" if self.reason is not None else ""
        return f"<Ticket {self.level.name}{flow} {self.state.value}{why}>"
