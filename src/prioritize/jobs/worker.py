"""The job worker: take a job when a slot is free, run it, report what became of it.

Theory of operation
-------------------
One loop task talks to the broker; every job runs in an asyncio task of its
own (a sync task's function runs on a thread of the worker's pool, which
has one thread per slot). The loop calls `Broker.reserve` only when it has
free slots, and asks for at most that many: a job reserved but not started
would hold a seat of the global WIP and keep its place ahead of every more
important job enqueued after it, which is how prefetching queues lose
their priority order. The same call carries the outcomes collected since
the last one, so under load one round trip both acks finished jobs and
takes new ones. Completions coalesce by themselves: a job that ends wakes
the loop, and by the time the loop runs, every job that ended in the same
turn of the event loop has reported too.

When `reserve` returns fewer jobs than were asked for, the gate has no more
work for this worker: the loop waits for the broker to signal work, or
until one of its own jobs ends, since its outcome should reach the broker
at once: it frees a seat of the global WIP for every worker (`_work_wait`).

Each held lease is renewed every ``heartbeat`` seconds (`_heartbeats`). A
worker killed mid-job loses nothing: its leases run out and the broker
redelivers the jobs. A broker error (connection dropped, database locked)
is logged and the call is retried with a bounded exponential backoff
(`_broker_retry`); outcomes that were not acked are kept and sent again
(`_outbox`; the broker ignores an outcome it already applied, as it does
one whose lease was lost).

`stop` starts a graceful shutdown (`_worker_shutdown`): no more
reservations, up to ``grace`` seconds for the running jobs to end, then
the jobs still running are released (back to the front of their flow),
and every outcome is sent before `run` returns. A released sync job's
thread runs on regardless, so such a job may run twice: delivery is at
least once.

Failures that no retry can mend go to the dead-letter set at once
(`_job_attempt`): a job whose task is not registered here (its name is in
the error, with the names that are; `Broker.requeue_dead` runs it again
once a worker knows it), a payload that is not ``[args, kwargs]``, and a
result the serializer cannot write. Every other exception, and a timeout,
follows the job's `RetryPolicy`.

Timeouts: an async job is cancelled at its timeout. A thread cannot be
stopped, so a sync job is reported FAILED at its timeout, but its slot stays
busy until the thread returns: the worker never runs more threads than
slots, however many jobs hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from typing import final

from ._broker_retry import back_off
from ._heartbeats import renew_leases
from ._job_attempt import attempt, unknown_task
from ._job_call import describe, format_error
from ._job_run import Run, log_failed, log_released, log_started, log_succeeded
from ._outbox import Outbox
from ._work_wait import Waits, idleness
from ._worker_settings import check_concurrency, check_heartbeat, check_levels, check_seconds
from ._worker_shutdown import shut_down
from ._worker_stats import RunTimes, Tally, WorkerStats
from .model import Job, JobError, JobStats, Outcome, OutcomeKind
from .queue import JobQueue

__all__ = ["RunTimes", "UnknownTask", "Worker", "WorkerStats"]

logger = logging.getLogger("prioritize.jobs.worker")


class UnknownTask(JobError, LookupError):
    """A reserved job names a task this worker's queue does not have (it goes to dead letter)."""


@final
class Worker:
    """Runs a `JobQueue`'s jobs, at most ``concurrency`` at once, in priority order.

    ``levels`` restricts it to jobs of those levels (a dedicated worker);
    the queue's gate still counts every level's running jobs. ``lease`` is
    how long a job stays reserved without a heartbeat; leases are renewed
    every ``heartbeat`` seconds (a third of the lease by default).
    ``grace`` bounds how long `stop` waits for running jobs. ``idle_wait``
    bounds one wait for work: the broker wakes waiting workers, and this is
    the longest a missed wake-up can delay a job. ``stats_interval`` is how
    often the broker's counts are sampled for `stats` and the metrics
    (None: never). Raises ValueError naming a bad setting.
    """

    def __init__(
        self,
        queue: JobQueue,
        *,
        concurrency: int = 10,
        levels: Collection[str] | None = None,
        lease: float = 30.0,
        heartbeat: float | None = None,
        grace: float = 30.0,
        name: str | None = None,
        idle_wait: float = 5.0,
        stats_interval: float | None = 5.0,
    ) -> None:
        if not isinstance(queue, JobQueue):
            raise TypeError(f"queue = {queue!r}: expected a JobQueue")
        check_concurrency(concurrency)
        check_seconds("lease", lease)
        heartbeat = check_heartbeat(lease, heartbeat)
        check_seconds("grace", grace, zero=True)
        check_seconds("idle_wait", idle_wait)
        if stats_interval is not None:
            check_seconds("stats_interval", stats_interval)
        self.queue = queue
        self.concurrency = concurrency
        self.levels = check_levels(queue.levels, levels)
        self.lease = float(lease)
        self.heartbeat = float(heartbeat)
        self.grace = float(grace)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{random.randbytes(3).hex()}"
        self.idle_wait = float(idle_wait)
        self.stats_interval = stats_interval
        self._tally = Tally()
        self._running: dict[str, Run] = {}
        self._outbox = Outbox()
        self._waits = Waits()
        self._queue_stats: JobStats | None = None
        self._sampled_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._is_stopping = False
        self._is_immediate = False

    # -- public --------------------------------------------------------------------

    async def run(self) -> None:
        """Run jobs until `stop`, then shut down gracefully; returns once every outcome is sent."""
        await self._run(until_idle=False)

    async def run_until_idle(self) -> None:
        """Run jobs until nothing is queued, scheduled or running that this worker could take.

        For tests, scripts and benchmarks. Jobs running on other workers
        count (they may fail and come back), and so do scheduled ones: a job
        delayed by an hour keeps this waiting an hour.
        """
        await self._run(until_idle=True)

    def stop(self, *, immediate: bool = False) -> None:
        """Begin a graceful shutdown; ``immediate``: release the running jobs without waiting.

        Safe from any thread and from a signal handler; a no-op on a worker
        that has stopped (one stopped before it runs returns at once).
        """
        self._is_stopping = True
        self._is_immediate = self._is_immediate or immediate
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nothing runs to stop
                loop.call_soon_threadsafe(self._on_stop)

    @property
    def stats(self) -> WorkerStats:
        """Counters now: busy slots, runs ended by outcome, run times, the last broker sample."""
        return self._tally.snapshot(
            self.name, self.concurrency, self._queue_stats, self._sampled_at
        )

    # -- the loop ------------------------------------------------------------------

    async def _run(self, *, until_idle: bool) -> None:
        if self._loop is not None:
            raise RuntimeError(f"worker {self.name} is running already")
        self._loop = asyncio.get_running_loop()
        self._wake, self._stopped = asyncio.Event(), asyncio.Event()
        if self._is_stopping:
            self._stopped.set()
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="prioritize-job")
        helpers = [asyncio.create_task(self._renew_leases())]
        logger.info(
            "worker %s started: %d slots, levels %s, lease %g s, %r",
            self.name,
            self.concurrency,
            ",".join(self.levels) if self.levels else "all",
            self.lease,
            self.queue.broker,
            extra={"worker": self.name},
        )
        try:
            if self.stats_interval is not None:
                await self._sample_once()  # the first sample: the queue as this worker found it
                helpers.append(asyncio.create_task(self._sample_stats(self.stats_interval)))
            await self._serve(until_idle=until_idle)
        finally:
            try:
                await self._shut_down()
            finally:
                self._waits.cancel()
                for helper in helpers:
                    helper.cancel()
                await asyncio.gather(*helpers, return_exceptions=True)
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._loop, self._pool = None, None
                self._is_stopping = self._is_immediate = False

    async def _serve(self, *, until_idle: bool) -> None:
        """Reserve while slots are free, ack outcomes as jobs end, wait when there is no work."""
        failures = 0
        may_recheck = True
        while not self._is_stopping:
            self._wake.clear()
            free = self.concurrency - len(self._running)
            try:
                jobs = await self._exchange(free)
            except Exception:
                failures += 1
                await self._back_off("reserve" if free > 0 else "finish", failures)
                continue
            failures = 0
            for job in jobs:
                self._start(job)
            if len(self._running) >= self.concurrency:
                await self._wake.wait()  # woken by a job ending, or by stop()
                continue
            if not jobs and not self._running and not self._outbox.pending and until_idle:
                idle = await self._is_idle()
                if idle is True:
                    return
                if idle is None and may_recheck:  # work arrived while we looked: take it
                    may_recheck = False
                    continue
            may_recheck = True
            try:
                await self._wait_for_work()
            except Exception:
                failures += 1
                await self._back_off("wait_for_work", failures)

    async def _exchange(self, free: int) -> list[Job]:
        """Ack the collected outcomes and, with free slots, reserve up to that many (`Outbox`)."""
        return await self._outbox.exchange(
            self.queue.broker, self.name, free, lease=self.lease, levels=self.levels
        )

    async def _wait_for_work(self) -> None:
        """Until the broker may have work, one of our jobs ends, or stop(); ``idle_wait`` at most.

        Raises the broker's error, if waiting failed (see `Waits`).
        """
        if self._wake.is_set():
            return
        await self._waits.wait(self.queue.broker.wait_for_work(self.idle_wait), self._wake)

    async def _is_idle(self) -> bool | None:
        """True: nothing this worker could take now or later; None: some queued; False: later."""
        try:
            stats = await self.queue.broker.stats()
        except Exception:
            logger.warning("reading the broker's stats failed", exc_info=True)
            return False
        return idleness(stats, self.levels)

    async def _back_off(self, what: str, failures: int) -> None:
        """Log a failed broker call, wait before the next: bounded, jittered, cut by stop()."""
        await back_off(
            what, failures, kept=len(self._outbox.pending), worker=self.name, stopped=self._stopped
        )

    def _on_stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    # -- shutting down -------------------------------------------------------------

    async def _shut_down(self) -> None:
        """Wait up to ``grace`` for running jobs (acking as they end), release the rest, flush."""
        self._is_stopping = True
        await shut_down(
            self.name,
            self.grace,
            self._running,
            self._wake,
            is_immediate=lambda: self._is_immediate,
            pending=lambda: self._outbox.pending,
            send=lambda: self._exchange(0),
        )
        logger.info(
            "worker %s stopped: %s",
            self.name,
            ", ".join(f"{n} {k}" for k, n in self.stats.processed.items()),
            extra={"worker": self.name},
        )

    # -- helpers beside the loop ---------------------------------------------------

    async def _renew_leases(self) -> None:
        """Every ``heartbeat`` s, extend the lease of every job held; log the ones lost."""
        while True:
            await asyncio.sleep(self.heartbeat)
            unacked = self._outbox.unacked()
            await renew_leases(self.queue.broker, self.name, self.lease, self._running, unacked)

    async def _sample_stats(self, interval: float) -> None:
        """Keep a recent copy of the broker's counts, so a metrics scrape never calls the broker."""
        while True:
            await asyncio.sleep(interval)
            await self._sample_once()

    async def _sample_once(self) -> None:
        try:
            self._queue_stats = await self.queue.broker.stats()
            self._sampled_at = time.time()
        except Exception:
            logger.warning("sampling the broker's stats failed", exc_info=True)

    # -- running one job -----------------------------------------------------------

    def _start(self, job: Job) -> None:
        loop = asyncio.get_running_loop()
        level = self.queue.levels[job.level] if job.level in self.queue.levels else None  # noqa: SIM401
        run = Run(job, level, loop.time())
        self._running[job.id] = run
        self._tally.started(job.level)
        log_started(job)
        run.task = loop.create_task(self._execute(run), name=f"job {job.id} ({job.task})")

    async def _execute(self, run: Run) -> None:
        try:
            await self._attempt(run)
        except asyncio.CancelledError:
            if not run.is_reported:  # cancelled by a shutdown past its grace
                job = run.job
                self._report(run, Outcome(job.id, job.attempts, OutcomeKind.RELEASED), "released")
                log_released(job)
            raise
        finally:
            del self._running[run.job.id]
            self._tally.ended(run.job.level)
            self._wake.set()

    async def _attempt(self, run: Run) -> None:
        job = run.job
        task = self.queue.tasks.get(job.task)
        if task is None:  # no retry can mend it: to dead letter at once
            unknown = UnknownTask(unknown_task(job.task, self.queue.tasks))
            self._fail(run, describe(unknown), format_error(unknown), permanent=True)
            return
        await attempt(
            run,
            task,
            self.queue.serializer,
            self._pool,
            succeed=lambda result: self._succeed(run, result),
            fail=lambda error, text, permanent: self._fail(run, error, text, permanent=permanent),
        )

    # -- outcomes ------------------------------------------------------------------

    def _report(self, run: Run, outcome: Outcome, label: str, seconds: float | None = None) -> None:
        run.is_reported = True
        self._outbox.pending.append(outcome)
        self._tally.outcome(run.job.task, run.job.level, label, seconds)
        self._wake.set()

    def _succeed(self, run: Run, result: bytes) -> None:
        job = run.job
        seconds = asyncio.get_running_loop().time() - run.started
        self._report(
            run, Outcome(job.id, job.attempts, OutcomeKind.SUCCEEDED, result), "succeeded", seconds
        )
        log_succeeded(job, seconds)

    def _fail(self, run: Run, error: str, text: str | None, *, permanent: bool = False) -> None:
        job = run.job
        seconds = asyncio.get_running_loop().time() - run.started
        retry = job.retry
        task = self.queue.tasks.get(job.task)
        if not job.retry_chosen and task is not None:  # enqueued by name: the task's own policy
            retry = task.retry
        delay = None if permanent else retry.delay(max(1, job.attempts), random.random())
        retry_at = None if delay is None else time.time() + delay
        outcome = Outcome(job.id, job.attempts, OutcomeKind.FAILED, None, error, text, retry_at)
        self._report(run, outcome, "failed" if delay is not None else "dead", seconds)
        log_failed(job, seconds, error, delay, permanent=permanent)

    def __repr__(self) -> str:
        state = "stopping" if self._is_stopping else "running" if self._loop else "idle"
        done = sum(self.stats.processed.values())
        return (
            f"<Worker {self.name} {state}, {len(self._running)}/{self.concurrency} slots busy, "
            f"{done} runs ended>"
        )
