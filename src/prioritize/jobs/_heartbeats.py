"""One heartbeat of a worker: extend the lease of every job it holds, mark the ones lost.

A lease is what lets the broker redeliver the jobs of a worker that was
killed mid-job; the worker renews its leases every ``heartbeat`` seconds,
and this is one renewal. A job is held from reservation until its outcome
is acked, so the ids renewed are those of the runs not yet reported and
those of the outcomes collected but not yet acked (``unacked``): one whose
lease ran out before the ack would be run again.

A failed renewal is logged and left for the next one: by default a lease
lasts three heartbeats, so one missed renewal costs nothing. A lease the
broker says is gone is marked on its run: the job runs elsewhere now, and
the broker will ignore this run's outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from ._job_run import Run, log_lease_lost
from .broker import Broker
from .model import Outcome

__all__ = ["renew_leases"]

logger = logging.getLogger("prioritize.jobs.worker")


async def renew_leases(
    broker: Broker,
    worker: str,
    lease: float,
    running: Mapping[str, Run],
    unacked: Iterable[Outcome],
) -> None:
    """Extend ``worker``'s leases by ``lease`` seconds; log and mark every run whose lease is lost.

    Never raises for a broker error: that is logged, and the next heartbeat tries again.
    """
    held = [job_id for job_id, run in running.items() if not run.is_reported]
    held += [outcome.job_id for outcome in unacked]
    if not held:
        return
    try:
        lost = await broker.heartbeat(worker, held, lease)
    except Exception:
        logger.warning("heartbeat failed; leases renewed at the next one", exc_info=True)
        return
    for job_id in lost:
        run = running.get(job_id)
        if run is None or run.is_reported or run.is_lost:
            continue  # acked meanwhile
        run.is_lost = True
        log_lease_lost(run.job)
