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
work for this worker: the loop waits in `Broker.wait_for_work` (woken by
enqueues, and by other workers finishing, which may free a level's max) or
until one of its own jobs ends, since its outcome should reach the broker
at once: it frees a seat of the global WIP for every worker. A broker wait
cut short that way is cancelled and left to end by itself, never awaited:
a wait slow to honour its cancellation must not hold the acks back.

Each held lease is renewed every ``heartbeat`` seconds. A worker killed
mid-job loses nothing: its leases run out and the broker redelivers the
jobs. A broker error (connection dropped, database locked) is logged and
the call is retried with a bounded exponential backoff; outcomes that were
not acked are kept and sent again (the broker ignores an outcome it already
applied, as it does one whose lease was lost).

`stop` starts a graceful shutdown: no more reservations, up to ``grace``
seconds for the running jobs to end (their outcomes acked as they do),
then the jobs still running are cancelled and reported RELEASED (back to
the front of their flow, the run not counted), and every outcome is sent
before `run` returns; one the broker will not take within ``grace`` (at
least `BACKOFF_MAX`) seconds is logged, and its job runs again when its
lease runs out. A released sync job's thread runs on regardless, so such a
job may run twice: delivery is at least once.

Failures that no retry can mend go to the dead-letter set at once: a job
whose task is not registered here (its name is in the error, with the
names that are; `Broker.requeue_dead` runs it again once a worker knows
it), a payload that is not ``[args, kwargs]``, and a result the serializer
cannot write (running the task again would repeat its side effects to fail
the same way). Every other exception, and a timeout, follows the job's
`RetryPolicy`.

Timeouts: an async job is cancelled at its timeout. A thread cannot be
stopped, so a sync job is reported FAILED at its timeout, but its slot stays
busy until the thread returns: the worker never runs more threads than
slots, however many jobs hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import socket
import time
from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import final

from ..core.levels import Level
from ._job_call import (
    LATE,
    Permanent,
    TimedOut,
    call_async,
    call_sync,
    decode_arguments,
    describe,
    format_error,
)
from ._worker_stats import RunTimes, Tally, WorkerStats
from .model import Job, JobError, JobStats, Outcome, OutcomeKind
from .queue import JobQueue

__all__ = ["RunTimes", "UnknownTask", "Worker", "WorkerStats"]

logger = logging.getLogger("prioritize.jobs.worker")

#: seconds between two retries of a failed broker call: first, and at most
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0


class UnknownTask(JobError, LookupError):
    """A reserved job names a task this worker's queue does not have (it goes to dead letter)."""


@final
@dataclass(slots=True)
class _Run:
    """A job this worker holds: from reservation until its task (or thread) has ended."""

    job: Job
    level: Level | None
    started: float
    task: asyncio.Task[None] | None = None
    #: its outcome is collected (a sync job past its timeout may still be on its thread)
    is_reported: bool = False
    #: the broker said the lease is gone: the job is someone else's now
    is_lost: bool = False


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
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            raise ValueError(f"concurrency = {concurrency!r}: expected a whole number ≥ 1")
        _check_seconds("lease", lease)
        heartbeat = lease / 3 if heartbeat is None else heartbeat
        _check_seconds("heartbeat", heartbeat)
        if heartbeat >= lease:
            raise ValueError(
                f"heartbeat = {heartbeat!r}: expected fewer seconds than the lease ({lease!r}), "
                "or the lease runs out between two renewals"
            )
        _check_seconds("grace", grace, zero=True)
        _check_seconds("idle_wait", idle_wait)
        if stats_interval is not None:
            _check_seconds("stats_interval", stats_interval)
        self.queue = queue
        self.concurrency = concurrency
        self.levels = _check_levels(queue, levels)
        self.lease = float(lease)
        self.heartbeat = float(heartbeat)
        self.grace = float(grace)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{random.randbytes(3).hex()}"
        self.idle_wait = float(idle_wait)
        self.stats_interval = stats_interval
        self._tally = Tally()
        self._running: dict[str, _Run] = {}
        self._pending: list[Outcome] = []
        self._in_flight: list[Outcome] = []
        #: broker waits cancelled by our own wake-ups, not yet ended
        self._abandoned: set[asyncio.Future[None]] = set()
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
                for waiter in self._abandoned:
                    waiter.cancel()  # again, and not awaited: see _wait_for_work
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
            if not jobs and not self._running and not self._pending and until_idle:
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
        """One round trip: ack the collected outcomes and, with free slots, reserve up to that many.

        On a broker error the outcomes go back to be sent with the next call.
        """
        outcomes, self._pending = self._pending, []
        self._in_flight = outcomes
        try:
            if free > 0:
                return await self.queue.broker.reserve(
                    self.name, free, lease=self.lease, levels=self.levels, finished=outcomes
                )
            if outcomes:
                await self.queue.broker.finish(self.name, outcomes)
            return []
        except BaseException:
            self._pending[:0] = outcomes
            raise
        finally:
            self._in_flight = []

    async def _wait_for_work(self) -> None:
        """Until the broker may have work, one of our jobs ends, or stop(); ``idle_wait`` at most.

        Raises the broker's error, if waiting failed. A broker wait cut
        short by our own wake-up is cancelled but not awaited: a wait that
        is slow to honour its cancellation must not hold up the acks.
        """
        if self._wake.is_set():
            return
        broker = asyncio.ensure_future(self.queue.broker.wait_for_work(self.idle_wait))
        own = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((broker, own), return_when=asyncio.FIRST_COMPLETED)
        finally:
            own.cancel()
            if not broker.done():
                broker.cancel()
                self._abandoned.add(broker)
                broker.add_done_callback(self._forget_wait)
        error = broker.exception() if broker.done() and not broker.cancelled() else None
        if error is not None:
            raise error

    def _forget_wait(self, waiter: asyncio.Future[None]) -> None:
        self._abandoned.discard(waiter)
        if not waiter.cancelled():
            waiter.exception()  # retrieved: it was cancelled for our own wake-up, not needed

    async def _is_idle(self) -> bool | None:
        """True: nothing this worker could take now or later; None: some queued; False: later."""
        try:
            stats = await self.queue.broker.stats()
        except Exception:
            logger.warning("reading the broker's stats failed", exc_info=True)
            return False
        names = self.levels or list(stats.levels)
        rows = [stats.levels[name] for name in names if name in stats.levels]
        if any(row.queued for row in rows):
            return None
        return not any(row.scheduled or row.running for row in rows)

    async def _back_off(self, what: str, failures: int) -> None:
        """Log a failed broker call, wait before the next: bounded, jittered, cut by stop()."""
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (failures - 1)) * (0.5 + random.random() / 2)
        logger.warning(
            "broker %s failed (%d in a row); %d outcome(s) kept, retrying in %.2f s",
            what,
            failures,
            len(self._pending),
            delay,
            exc_info=True,
            extra={"worker": self.name},
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), delay)

    def _on_stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    # -- shutting down -------------------------------------------------------------

    async def _shut_down(self) -> None:
        """Wait up to ``grace`` for running jobs (acking as they end), release the rest, flush."""
        self._is_stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace
        if self._running:
            logger.info(
                "worker %s stopping: waiting up to %g s for %d running job(s)",
                self.name,
                0.0 if self._is_immediate else self.grace,
                len(self._running),
                extra={"worker": self.name},
            )
        while self._running and not self._is_immediate and loop.time() < deadline:
            self._wake.clear()
            if self._pending:
                try:
                    await self._exchange(0)
                except Exception:
                    logger.warning("broker finish failed while stopping", exc_info=True)
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                break
        runs = list(self._running.values())
        for run in runs:
            if run.task is not None:
                run.task.cancel()
        await asyncio.gather(*(run.task for run in runs if run.task), return_exceptions=True)
        await self._flush(deadline=loop.time() + max(self.grace, BACKOFF_MAX))
        logger.info(
            "worker %s stopped: %s",
            self.name,
            ", ".join(f"{n} {k}" for k, n in self.stats.processed.items()),
            extra={"worker": self.name},
        )

    async def _flush(self, deadline: float) -> None:
        """Send every collected outcome, retrying broker errors until ``deadline``."""
        loop = asyncio.get_running_loop()
        failures = 0
        while self._pending:
            try:
                await self._exchange(0)
            except Exception:
                failures += 1
                if loop.time() >= deadline:
                    ids = [outcome.job_id for outcome in self._pending]
                    logger.error(
                        "could not report %d outcome(s) to the broker: jobs %s run again "
                        "when their leases expire",
                        len(ids),
                        ", ".join(ids),
                        exc_info=True,
                        extra={"worker": self.name},
                    )
                    return
                delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (failures - 1))
                await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))

    # -- helpers beside the loop ---------------------------------------------------

    async def _renew_leases(self) -> None:
        """Every ``heartbeat`` s, extend the lease of every job held; log the ones lost."""
        while True:
            await asyncio.sleep(self.heartbeat)
            held = [job_id for job_id, run in self._running.items() if not run.is_reported]
            held += [o.job_id for o in (*self._in_flight, *self._pending)]
            if not held:
                continue
            try:
                lost = await self.queue.broker.heartbeat(self.name, held, self.lease)
            except Exception:
                logger.warning("heartbeat failed; leases renewed at the next one", exc_info=True)
                continue
            for job_id in lost:
                run = self._running.get(job_id)
                if run is None or run.is_reported or run.is_lost:
                    continue  # acked meanwhile
                run.is_lost = True
                logger.warning(
                    "job %s (%s): lease lost; it runs again elsewhere and this run's outcome "
                    "will be ignored",
                    job_id,
                    run.job.task,
                    extra=_extra(run.job),
                )

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
        run = _Run(job, level, loop.time())
        self._running[job.id] = run
        self._tally.started(job.level)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "job %s (%s) started, attempt %d", job.id, job.task, job.attempts, extra=_extra(job)
            )
        run.task = loop.create_task(self._execute(run), name=f"job {job.id} ({job.task})")

    async def _execute(self, run: _Run) -> None:
        try:
            await self._attempt(run)
        except asyncio.CancelledError:
            if not run.is_reported:  # cancelled by a shutdown past its grace
                job = run.job
                self._report(run, Outcome(job.id, job.attempts, OutcomeKind.RELEASED), "released")
                logger.info(
                    "job %s (%s) released: the worker stopped before it ended",
                    job.id,
                    job.task,
                    extra=_extra(job),
                )
            raise
        finally:
            del self._running[run.job.id]
            self._tally.ended(run.job.level)
            self._wake.set()

    async def _attempt(self, run: _Run) -> None:
        job = run.job
        task = self.queue.tasks.get(job.task)
        try:
            if task is None:
                raise Permanent(UnknownTask(_unknown_task(job.task, self.queue.tasks)))
            args, kwargs = decode_arguments(self.queue.serializer, job)
            timeout = job.timeout if job.timeout is not None else task.timeout
            if task.is_async:
                value = await call_async(task.function, args, kwargs, run.level, timeout)
            else:
                assert self._pool is not None
                value = await call_sync(
                    self._pool,
                    task.function,
                    args,
                    kwargs,
                    level=run.level,
                    timeout=timeout,
                    on_timeout=lambda timed_out: self._fail(run, str(timed_out), timed_out.stack),
                )
            if value is LATE:
                self._log_late(run)
                return
            try:
                result = self.queue.serializer.dumps(value)
            except Exception as exc:
                raise Permanent(exc) from exc
        except Permanent as exc:
            cause = exc.args[0]
            self._fail(run, describe(cause), format_error(cause), permanent=True)
        except TimedOut as exc:
            self._fail(run, str(exc), exc.stack)
        except Exception as exc:
            self._fail(run, describe(exc), format_error(exc))
        else:
            self._succeed(run, result)

    def _log_late(self, run: _Run) -> None:
        """A sync job reported at its timeout: its thread has returned, its slot is free."""
        logger.info(
            "job %s (%s): its thread returned %.1f s after the job timed out",
            run.job.id,
            run.job.task,
            asyncio.get_running_loop().time() - run.started,
            extra=_extra(run.job),
        )

    # -- outcomes ------------------------------------------------------------------

    def _report(
        self, run: _Run, outcome: Outcome, label: str, seconds: float | None = None
    ) -> None:
        run.is_reported = True
        self._pending.append(outcome)
        self._tally.outcome(run.job.task, run.job.level, label, seconds)
        self._wake.set()

    def _succeed(self, run: _Run, result: bytes) -> None:
        job = run.job
        seconds = asyncio.get_running_loop().time() - run.started
        self._report(
            run, Outcome(job.id, job.attempts, OutcomeKind.SUCCEEDED, result), "succeeded", seconds
        )
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "job %s (%s) succeeded in %.3f s",
                job.id,
                job.task,
                seconds,
                extra={**_extra(job), "duration": round(seconds, 6)},
            )

    def _fail(self, run: _Run, error: str, text: str | None, *, permanent: bool = False) -> None:
        job = run.job
        seconds = asyncio.get_running_loop().time() - run.started
        delay = None if permanent else job.retry.delay(max(1, job.attempts), random.random())
        retry_at = None if delay is None else time.time() + delay
        outcome = Outcome(job.id, job.attempts, OutcomeKind.FAILED, None, error, text, retry_at)
        self._report(run, outcome, "failed" if delay is not None else "dead", seconds)
        extra = {**_extra(job), "duration": round(seconds, 6), "error": error}
        if delay is not None:
            logger.warning(
                "job %s (%s) failed on attempt %d of %d, retrying in %.2f s: %s",
                job.id,
                job.task,
                job.attempts,
                job.max_attempts,
                delay,
                error,
                extra={**extra, "retry_in": round(delay, 3)},
            )
        else:
            why = "no retry can mend it" if permanent else "no retries left"
            logger.error(
                "job %s (%s) failed on attempt %d of %d, %s; moved to dead letter: %s",
                job.id,
                job.task,
                job.attempts,
                job.max_attempts,
                why,
                error,
                extra=extra,
            )

    def __repr__(self) -> str:
        state = "stopping" if self._is_stopping else "running" if self._loop else "idle"
        done = sum(self.stats.processed.values())
        return (
            f"<Worker {self.name} {state}, {len(self._running)}/{self.concurrency} slots busy, "
            f"{done} runs ended>"
        )


def _extra(job: Job) -> dict[str, object]:
    """The structured fields of every log line about a job."""
    return {"job_id": job.id, "task": job.task, "level": job.level, "attempt": job.attempts}


def _unknown_task(name: str, tasks: Mapping[str, object]) -> str:
    known = ", ".join(sorted(tasks)) or "none"
    return (
        f"no task named {name!r} is registered on this worker's queue (registered: {known}); "
        "deploy the code that defines it, then requeue the job from the dead-letter set"
    )


def _check_seconds(name: str, value: object, *, zero: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value < 0 if zero else value <= 0):  # type: ignore[operator]
        bound = "≥ 0" if zero else "> 0"
        raise ValueError(f"{name} = {value!r}: expected a finite number of seconds {bound}")


def _check_levels(queue: JobQueue, levels: Collection[str] | None) -> list[str] | None:
    if levels is None:
        return None
    if isinstance(levels, str):
        levels = [levels]
    names = list(dict.fromkeys(levels))
    unknown = [name for name in names if name not in queue.levels]
    if unknown or not names:
        what = f"unknown level(s) {', '.join(map(repr, unknown))}" if unknown else "no level"
        raise ValueError(
            f"levels = {list(levels)!r}: {what}; the queue's levels are "
            f"{', '.join(queue.levels.names)}"
        )
    return names
