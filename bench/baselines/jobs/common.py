"""What every driver of bench/jobs.py shares: worker processes, waiting for progress, output.

Standard library only: it runs under the baselines' virtual environment
(build/bench-venv, RQ and Celery) and under the project's (prioritize).

A driver measures one system and prints one JSON object on stdout. The
method is the same for every system:

* enqueue: wall time of N enqueues from one client, one call per job (or
  the system's bulk call), in one thread;
* drain: N jobs already queued; W worker processes are started and the
  count of finished jobs is polled every POLL seconds; the rate is the
  jobs finished after the first poll that saw progress, divided by the time
  from that poll to the one that saw all N finished (so interpreter start-up
  and imports are not counted, for any system);
* end to end: W workers started and seen running jobs first (warm-up jobs
  that return their worker's pid, until every worker has run one), then N
  enqueues one call per job, from one client or from P producer processes
  at once (each its own connections, a share of the N); from the first
  enqueue to the poll that saw all N finished;
* priority honesty: W workers started and warmed up, then L low jobs of
  a few ms each queued (bulk) and draining; one critical job at a time is
  enqueued while low jobs are still queued, and its task returns
  time.time() at its start; the wait is that minus the time just before
  the enqueue call.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: seconds between two polls of a finished-jobs count
POLL = 0.005
#: most seconds any single wait of a driver lasts before it gives up
TIMEOUT = 300.0
#: seconds without progress after which a drain is given up
STALL = 60.0
#: the levels jobs are spread over, most important first (job i gets LEVELS[i % 5])
LEVELS = ("critical", "high", "normal", "low", "bulk")


def level_of(i: int) -> str:
    return LEVELS[i % len(LEVELS)]


def low_sleeps(args: argparse.Namespace, seed: int = 7) -> list[float]:
    """Seconds of sleep of the priority-honesty test's low jobs, uniform over ``--low-ms``."""
    lo, hi = (float(x) / 1000 for x in args.low_ms.split(","))
    rng = random.Random(seed)
    return [round(rng.uniform(lo, hi), 6) for _ in range(args.low)]


class Workers:
    """Worker processes of one measurement, each in its own process group, logging to files."""

    def __init__(self, logs: Path, name: str) -> None:
        self.logs = logs
        self.name = name
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        index = len(self.procs)
        env = {**os.environ, **(env or {})}
        if os.environ.get("PYTHONPATH") and env["PYTHONPATH"] != os.environ["PYTHONPATH"]:
            env["PYTHONPATH"] += os.pathsep + os.environ["PYTHONPATH"]
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{self.name}-{index}.log", "wb")  # noqa: SIM115
        self.procs.append(
            subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        )
        log.close()

    def check(self) -> None:
        """Raise if a worker has exited: a driver waiting for it would wait forever."""
        for i, proc in enumerate(self.procs):
            if proc.poll() is not None:
                log = self.logs / f"{self.name}-{i}.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"worker {self.name}-{i} exited ({proc.returncode}):\n{tail}")

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM to each worker's group, SIGKILL to those still there after ``grace`` s."""
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_done(
    count: Callable[[], int], total: int, workers: Workers | None = None
) -> tuple[float, int, float]:
    """Poll ``count`` until it reaches ``total``; returns (first progress time, count then, end).

    Times are ``time.perf_counter()``.
    """
    first: float | None = None
    at_first = last = 0
    deadline = time.monotonic() + TIMEOUT
    moved = time.monotonic()
    i = 0
    while True:
        done = count()
        now = time.perf_counter()
        if first is None and done > 0:
            first, at_first = now, done
        if done != last:
            last, moved = done, time.monotonic()
        elif time.monotonic() - moved > STALL:
            raise TimeoutError(f"{done:,} of {total:,} jobs finished, none for {STALL:g} s")
        if done >= total:
            return (first if first is not None else now), at_first, now
        i += 1
        if workers is not None and i % 100 == 0:
            workers.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{done:,} of {total:,} jobs finished after {TIMEOUT:g} s")
        time.sleep(POLL)


def drain_rate(total: int, first: float, at_first: int, end: float) -> dict[str, float]:
    """A drain's figures from `wait_done`'s answer: jobs timed, seconds, jobs/s."""
    jobs = total - at_first
    seconds = max(end - first, 1e-9)
    return {"jobs": jobs, "seconds": seconds, "rate": jobs / seconds}


def wait_until(condition: Callable[[], bool], what: str, workers: Workers | None = None) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if workers is not None:
            workers.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {TIMEOUT:g} s")
        time.sleep(POLL)


def emit(result: dict[str, object]) -> None:
    """The driver's answer: one JSON object on stdout."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def parse_args(description: str, variants: Sequence[str]) -> argparse.Namespace:
    """The command line every driver takes: ``OP --redis URL --n N --workers W ...``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("op", choices=["drain", "e2e", "honesty"])
    parser.add_argument("--redis", required=True, help="redis://127.0.0.1:PORT")
    parser.add_argument("--n", type=int, default=1000, help="jobs (drain, e2e)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--producers", type=int, default=1, help="e2e: producer processes")
    parser.add_argument("--fill", choices=["one", "bulk"], default="one", help="drain: enqueue by")
    parser.add_argument("--variant", choices=list(variants), default=variants[0])
    parser.add_argument("--low", type=int, default=10_000, help="honesty: low jobs queued")
    parser.add_argument("--low-ms", default="1,5", help="honesty: low jobs' sleep, ms: LO,HI")
    parser.add_argument("--critical", type=int, default=5, help="honesty: critical jobs")
    parser.add_argument("--logs", type=Path, default=Path("build/bench-jobs-logs"))
    parser.add_argument("--dir", type=Path, default=None, help="where SQLite files go")
    return parser.parse_args()


def warm_up(
    submit: Callable[[], object],
    result: Callable[[object], int | None],
    workers: Workers,
    count: int,
    per_round: int,
) -> set[int]:
    """Run warm-up jobs until each of ``count`` worker processes has run one; returns their pids.

    ``submit()`` enqueues one warm-up job and returns its handle; ``result(handle)``
    is the pid that ran it, or None while it has not finished.
    """
    pids: set[int] = set()
    deadline = time.monotonic() + TIMEOUT
    while len(pids) < count:
        handles = [submit() for _ in range(per_round)]
        for handle in handles:
            while (pid := result(handle)) is None:
                workers.check()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"warm-up: {len(pids)} of {count} workers seen")
                time.sleep(POLL)
            pids.add(pid)
    return pids


def critical_waits(
    submit: Callable[[], object],
    started: Callable[[object], float | None],
    backlog: Callable[[], int],
    workers: Workers,
    count: int,
) -> dict[str, object]:
    """Priority honesty: enqueue ``count`` critical jobs, one at a time, while low jobs wait.

    ``submit()`` enqueues one critical job; ``started(handle)`` is the
    time.time() its task read at its start, or None while it has not run;
    ``backlog()`` is the number of low jobs still queued. A critical job is
    only enqueued while that backlog is not empty.
    """
    waits: list[float] = []
    backlogs: list[int] = []
    for _ in range(count):
        queued = backlog()
        if queued == 0:
            break
        at = time.time()
        handle = submit()
        deadline = time.monotonic() + TIMEOUT
        while (start := started(handle)) is None:
            workers.check()
            if time.monotonic() > deadline:
                raise TimeoutError("a critical job did not start")
            time.sleep(POLL)
        waits.append(start - at)
        backlogs.append(queued)
        time.sleep(0.02)
    return {"waits": waits, "backlog": backlogs, "low_left": backlog()}


def produce(
    make: Callable[[], Callable[[int, int], object]], n: int, producers: int
) -> tuple[float, float]:
    """Enqueue jobs 0..n-1 from ``producers`` processes at once, one call per job.

    Each forked process calls ``make()`` (so it opens connections of its
    own), waits for the others, then calls what ``make`` returned with the
    first job number of its share and the share's size. Returns the
    perf_counter when they all started and the seconds until the last one
    returned.
    """
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Barrier(producers + 1)
    procs = []
    first = 0
    for k in range(producers):
        count = n // producers + (1 if k < n % producers else 0)
        proc = ctx.Process(target=_produce, args=(make, first, count, ready), daemon=True)
        proc.start()
        procs.append(proc)
        first += count
    ready.wait(TIMEOUT)
    started = time.perf_counter()
    for proc in procs:
        proc.join(TIMEOUT)
        if proc.exitcode != 0:
            raise RuntimeError(f"a producer process failed (exit code {proc.exitcode})")
    return started, time.perf_counter() - started


def _produce(
    make: Callable[[], Callable[[int, int], object]],
    first: int,
    count: int,
    ready: Any,  # a multiprocessing Barrier
) -> None:
    enqueue = make()
    ready.wait(TIMEOUT)
    enqueue(first, count)
