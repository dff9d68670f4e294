"""One call of a `PriorityThreadPoolExecutor`: its future, its ticket, its worker's parking spot."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future, InvalidStateError
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

from ..core.tickets import Ticket
from ..errors import Rejected

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ["Call", "Worker", "reject"]

_T = TypeVar("_T")


class Call(Future[_T], Ticket, Generic[_T]):
    """One call: the `Future` handed to the caller and the scheduler's `Ticket`.

    One object, not two, per submit. ``data`` is ``(fn, args, kwargs)``
    until a worker takes the call. Cancelling it while queued withdraws its
    ticket. The `Ticket` attributes (``level``, ``waited``...) are the
    scheduler's; callers use it as a `Future` only.
    """

    _pool: Pool

    if TYPE_CHECKING:  # typeshed's Future declares no __init__; Ticket's is not this one

        def __init__(self) -> None: ...

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        self._pool.withdraw(self)
        return True


@final
class Worker:
    """One worker thread's parking spot: a lock it blocks on while idle, and its next call."""

    __slots__ = ("call", "park")

    def __init__(self) -> None:
        self.call: Call[Any] | None = None
        self.park = threading.Lock()
        self.park.acquire()  # held: the thread blocks on it until handed a call


def reject(shed: list[Call[Any]]) -> None:
    """Fail the futures of shed calls with `Rejected` (outside the lock)."""
    for call in shed:
        call.data = None
        with contextlib.suppress(InvalidStateError):  # cancelled between the shed and now
            call.set_exception(Rejected.from_ticket(call))
