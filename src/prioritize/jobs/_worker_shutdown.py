"""A worker's graceful shutdown: wait out the grace, release what still runs, send every outcome.

Kept apart from the worker's loop because its rules differ from serving.
Nothing is reserved any more. The running jobs get up to ``grace`` seconds
to end, their outcomes acked as they do, so a deploy that waits for them
loses no work and every seat they held frees at once. Jobs still running
then are cancelled: each reports itself RELEASED, which puts the job back
at the front of its flow without counting the run. Last, every outcome
collected is sent, retried on broker errors for ``grace`` seconds (at
least `BACKOFF_MAX`); one that never gets through is logged, and its job
runs again when its lease runs out, as it would had the process died.

The worker's state comes in as arguments and callables (``is_immediate``,
``pending``, ``send``), read anew at each step, since jobs end, outcomes
are acked and `Worker.stop` may be called again while these wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence

from ._broker_retry import BACKOFF_MAX, backoff_delay
from ._job_run import Run
from .model import Outcome

__all__ = ["shut_down"]

logger = logging.getLogger("prioritize.jobs.worker")


async def shut_down(
    worker: str,
    grace: float,
    running: Mapping[str, Run],
    wake: asyncio.Event,
    *,
    is_immediate: Callable[[], bool],
    pending: Callable[[], Sequence[Outcome]],
    send: Callable[[], Awaitable[object]],
) -> None:
    """Wait up to ``grace`` for the ``running`` jobs (acking as they end), release the rest, flush.

    ``wake`` is set whenever a job ends (and on a stop); ``send`` sends the
    ``pending`` outcomes, raising the broker's error. Returns once every
    outcome is sent, or once the broker refused them past the deadline.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    if running:
        logger.info(
            "worker %s stopping: waiting up to %g s for %d running job(s)",
            worker,
            0.0 if is_immediate() else grace,
            len(running),
            extra={"worker": worker},
        )
    await _wait_for_running(
        running, wake, deadline, is_immediate=is_immediate, pending=pending, send=send
    )
    await _release(running.values())
    await _flush(worker, pending, send, loop.time() + max(grace, BACKOFF_MAX))


async def _wait_for_running(
    running: Collection[object],
    wake: asyncio.Event,
    deadline: float,
    *,
    is_immediate: Callable[[], bool],
    pending: Callable[[], Sequence[Outcome]],
    send: Callable[[], Awaitable[object]],
) -> None:
    """Until nothing runs, an immediate stop, or ``deadline`` (loop time); ack as jobs end.

    Broker errors are logged, not raised: their outcomes stay pending for `_flush`.
    """
    loop = asyncio.get_running_loop()
    while running and not is_immediate() and loop.time() < deadline:
        wake.clear()
        if pending():
            try:
                await send()
            except Exception:
                logger.warning("broker finish failed while stopping", exc_info=True)
        try:
            await asyncio.wait_for(wake.wait(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            break


async def _release(runs: Iterable[Run]) -> None:
    """Cancel the runs' tasks and wait for them: each reports its job RELEASED as it ends."""
    runs = list(runs)
    for run in runs:
        if run.task is not None:
            run.task.cancel()
    await asyncio.gather(*(run.task for run in runs if run.task), return_exceptions=True)


async def _flush(
    worker: str,
    pending: Callable[[], Sequence[Outcome]],
    send: Callable[[], Awaitable[object]],
    deadline: float,
) -> None:
    """Send every ``pending`` outcome, retrying broker errors until ``deadline`` (loop time).

    Past the deadline, logs the jobs whose outcomes were not sent and returns.
    """
    loop = asyncio.get_running_loop()
    failures = 0
    while pending():
        try:
            await send()
        except Exception:
            failures += 1
            if loop.time() >= deadline:
                ids = [outcome.job_id for outcome in pending()]
                logger.error(
                    "could not report %d outcome(s) to the broker: jobs %s run again "
                    "when their leases expire",
                    len(ids),
                    ", ".join(ids),
                    exc_info=True,
                    extra={"worker": worker},
                )
                return
            delay = backoff_delay(failures)
            await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
