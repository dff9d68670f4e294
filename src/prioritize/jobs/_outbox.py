"""The outcomes a worker has collected and the broker has not acked yet.

Outcomes ride on the worker's next broker call, so under load one round
trip both acks finished jobs and takes new ones (`Outbox.exchange`). A
call that fails must lose none of them: they go back ahead of the outcomes
collected meanwhile, to be sent again with the next call (the broker
ignores an outcome it already applied). Until acked, an outcome's job is
still held, so its lease is renewed like a running job's (`unacked`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import final

from .broker import Broker
from .model import Job, Outcome

__all__ = ["Outbox"]


@final
class Outbox:
    """Outcomes collected, waiting for the next broker call, and those it is sending."""

    def __init__(self) -> None:
        #: collected, not yet sent
        self.pending: list[Outcome] = []
        #: sent by the call under way, not yet acked
        self.in_flight: list[Outcome] = []

    def unacked(self) -> tuple[Outcome, ...]:
        """Every outcome the broker has not acked, sent or not."""
        return (*self.in_flight, *self.pending)

    async def exchange(
        self,
        broker: Broker,
        worker: str,
        free: int,
        *,
        lease: float,
        levels: Collection[str] | None,
    ) -> list[Job]:
        """One round trip: ack the pending outcomes and, with free slots, reserve up to that many.

        On a broker error (or a cancellation) the outcomes go back to be
        sent with the next call, and the error is raised.
        """
        outcomes, self.pending = self.pending, []
        self.in_flight = outcomes
        try:
            if free > 0:
                return await broker.reserve(
                    worker, free, lease=lease, levels=levels, finished=outcomes
                )
            if outcomes:
                await broker.finish(worker, outcomes)
            return []
        except BaseException:
            self.pending[:0] = outcomes
            raise
        finally:
            self.in_flight = []
