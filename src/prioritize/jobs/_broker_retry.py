"""How long a worker waits before calling a broker again that just failed.

A broker error (connection dropped, database locked) must neither stop the
worker nor turn its loop into a busy retry against a broker that is down:
the wait doubles from `BACKOFF_FIRST` up to `BACKOFF_MAX`. While serving,
the wait is jittered, so workers that lost the same broker do not all come
back in the same instant, and `stop` cuts it short. The final flush at
shutdown uses the same delays without jitter, bounded by its deadline
(see `_worker_shutdown`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

__all__ = ["BACKOFF_FIRST", "BACKOFF_MAX", "back_off", "backoff_delay"]

logger = logging.getLogger("prioritize.jobs.worker")

#: seconds between two retries of a failed broker call: first, and at most
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0


def backoff_delay(failures: int) -> float:
    """Seconds before the next call after ``failures`` failed calls in a row, unjittered."""
    delay: float = min(BACKOFF_MAX, BACKOFF_FIRST * 2.0 ** min(failures - 1, 30))  # no overflow
    return delay


async def back_off(
    what: str, failures: int, *, kept: int, worker: str, stopped: asyncio.Event
) -> None:
    """Log a failed broker call, wait before the next: bounded, jittered, cut by ``stopped``.

    ``kept`` is how many outcomes wait to be sent again, for the log line.
    Call it from the ``except`` block, so the log line has the traceback.
    """
    delay = backoff_delay(failures) * (0.5 + random.random() / 2)
    logger.warning(
        "broker %s failed (%d in a row); %d outcome(s) kept, retrying in %.2f s",
        what,
        failures,
        kept,
        delay,
        exc_info=True,
        extra={"worker": worker},
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopped.wait(), delay)
