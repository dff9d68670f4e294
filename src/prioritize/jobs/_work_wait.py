"""How a worker with free slots waits for work, and how it tells that none is left.

The worker waits in `Broker.wait_for_work` (woken by enqueues, and by other
workers finishing, which may free a level's max) or until one of its own
jobs ends, whichever comes first: an outcome should reach the broker at
once, since it frees a seat of the global WIP for every worker. A broker
wait cut short that way is cancelled and left to end by itself, never
awaited, since a wait slow to honour its cancellation must not hold the
acks back. `Waits` keeps such waits until they end, so the worker can
cancel them again when it stops, and retrieves their errors, which nobody
needs once the wait was given up.

`idleness` is how `Worker.run_until_idle` knows it is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import final

from .model import JobStats

__all__ = ["Waits", "idleness"]


@final
class Waits:
    """Waits for work raced against the worker's wake-ups; the ones given up, until they end."""

    def __init__(self) -> None:
        #: broker waits cancelled by the worker's own wake-ups, not yet ended
        self.abandoned: set[asyncio.Future[None]] = set()

    async def wait(self, broker_wait: Awaitable[None], wake: asyncio.Event) -> None:
        """Until ``broker_wait`` ends or ``wake`` is set; raises the broker's error, if any.

        On a wake-up, ``broker_wait`` is cancelled but not awaited.
        """
        broker = asyncio.ensure_future(broker_wait)
        own = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait((broker, own), return_when=asyncio.FIRST_COMPLETED)
        finally:
            own.cancel()
            if not broker.done():
                broker.cancel()
                self.abandoned.add(broker)
                broker.add_done_callback(self._forget)
        error = broker.exception() if broker.done() and not broker.cancelled() else None
        if error is not None:
            raise error

    def cancel(self) -> None:
        """Cancel the abandoned waits again (and still not await them): the worker stops."""
        for waiter in self.abandoned:
            waiter.cancel()

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        self.abandoned.discard(waiter)
        if not waiter.cancelled():
            waiter.exception()  # retrieved: it was cancelled for our own wake-up, not needed


def idleness(stats: JobStats, levels: list[str] | None) -> bool | None:
    """True: nothing of ``levels`` (None: all) to take, now or later; None: some queued now.

    False: none queued, but some scheduled or running on a worker (they may fail and come back).
    """
    names = levels or list(stats.levels)
    rows = [stats.levels[name] for name in names if name in stats.levels]
    if any(row.queued for row in rows):
        return None
    return not any(row.scheduled or row.running for row in rows)
