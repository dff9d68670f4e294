"""Executor benchmark: `PriorityThreadPoolExecutor` beside `ThreadPoolExecutor`.

Run it with ``.venv/bin/python bench/executor.py``; ``--quick`` is a smoke run
of a few seconds, ``--json PATH`` also writes every figure.

What one run times: N ``submit`` calls of a trivial function (``return None``)
from one thread, then waiting for all N futures, divided by N: the per-task
overhead of the executor (submit, queueing, handing the call to a thread,
resolving the future), since the function itself costs nothing. Both
executors get the same ``max_workers`` (4 and 1), and their threads are
started before the clock runs (one call per worker, waited for), so thread
creation is not counted. Cases:

* ``ThreadPoolExecutor``, the baseline;
* ``PriorityThreadPoolExecutor`` with the default policy, every call at
  ``normal``;
* the same with each call at a random level of the five (fixed seed), so the
  scheduler serves five queues.

Method: every figure is the median (and min) of ``--repeat`` runs after one
discarded warm-up round; the cases run interleaved, one run of each per
round, and a ratio is the median over rounds of case/baseline within the same
round, so background load hits both sides alike. A fresh executor is built
for each run and shut down after the clock stops. The garbage collector runs
as in production (collected before each run, left on during it): the cycles
a queued call forms are part of its cost. Threads make these figures noisier
than the core benchmark's; compare ratios, not absolute ns, across machines.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter_ns, process_time_ns
from typing import Any

from harness import Figure, metadata, ns, table, verdict
from prioritize import DEFAULT_LEVELS
from prioritize.executor import PriorityThreadPoolExecutor

SEED = 20261123
TARGET = 1.5
AIM = 1.1
WORKERS = (4, 1)


@dataclass(frozen=True)
class Config:
    tasks: int
    repeat: int


FULL = Config(tasks=20_000, repeat=25)
QUICK = Config(tasks=4_000, repeat=3)


@dataclass(frozen=True)
class Run:
    """One timed run: wall-clock and process CPU time, in ns."""

    wall: int
    cpu: int


def noop() -> None:
    return None


def _warm(executor: Executor, workers: int) -> None:
    """Start every worker thread before the clock runs."""
    barrier = threading.Barrier(workers + 1)
    fs = [executor.submit(barrier.wait) for _ in range(workers)]
    barrier.wait()
    for f in fs:
        f.result()


def timed(executor: Executor, workers: int, submit_all: Callable[[], list[Future[None]]]) -> Run:
    """Wall and CPU ns of ``submit_all()`` plus waiting for its futures; shuts down after."""
    _warm(executor, workers)
    gc.collect()
    c0, t0 = process_time_ns(), perf_counter_ns()
    for f in submit_all():
        f.result()
    wall, cpu = perf_counter_ns() - t0, process_time_ns() - c0
    executor.shutdown()
    return Run(wall, cpu)


def run_stdlib(workers: int, tasks: int, _levels: list[str]) -> Run:
    executor = ThreadPoolExecutor(workers)
    submit = executor.submit
    return timed(executor, workers, lambda: [submit(noop) for _ in range(tasks)])


def run_priority(workers: int, tasks: int, levels: list[str]) -> Run:
    executor = PriorityThreadPoolExecutor(workers)
    submit = executor.submit
    if levels:
        return timed(executor, workers, lambda: [submit(noop, priority=lvl) for lvl in levels])
    return timed(executor, workers, lambda: [submit(noop) for _ in range(tasks)])


CASES: list[tuple[str, str, Callable[[int, int, list[str]], Run], bool]] = [
    ("stdlib", "ThreadPoolExecutor", run_stdlib, False),
    ("priority", "PriorityThreadPoolExecutor, all normal", run_priority, False),
    ("mixed", "PriorityThreadPoolExecutor, 5 levels mixed", run_priority, True),
]


def measure(config: Config) -> dict[str, Figure]:
    """Figures keyed ``{case}-{workers}-{wall|cpu}``, in ns per task."""
    rng = random.Random(SEED)
    mixed = [rng.choice(DEFAULT_LEVELS.names) for _ in range(config.tasks)]
    figures: dict[str, Figure] = {}
    for workers in WORKERS:
        for key, name, _, _ in CASES:
            for clock in ("wall", "cpu"):
                label = f"{name}, max_workers={workers} ({clock})"
                figures[f"{key}-{workers}-{clock}"] = Figure(label, config.tasks)
    for round_ in range(config.repeat + 1):
        for workers in WORKERS:
            for key, _, run, is_mixed in CASES:
                result = run(workers, config.tasks, mixed if is_mixed else [])
                if round_:  # round 0 warms up
                    figures[f"{key}-{workers}-wall"].runs.append(result.wall / config.tasks)
                    figures[f"{key}-{workers}-cpu"].runs.append(result.cpu / config.tasks)
    return figures


def ratio(figures: dict[str, Figure], case: str, base: str) -> float:
    pairs = zip(figures[case].runs, figures[base].runs, strict=True)
    return statistics.median(c / b for c, b in pairs)


def report(figures: dict[str, Figure], config: Config) -> dict[str, Any]:
    meta = metadata()
    print(f"# executor benchmark: {meta['source']}")
    print(f"# {meta['python']}, {meta['platform']}, {meta['cpus']} CPUs, load {meta['load']}")
    print(
        f"# {config.tasks:,} submits of a no-op, then waiting for all; "
        f"medians of {config.repeat} interleaved rounds; ns per task"
    )
    ratios: dict[str, float] = {}
    for workers in WORKERS:
        print(f"\nmax_workers={workers}")
        rows = []
        for key, name, _, _ in CASES:
            cells = [name]
            for clock in ("wall", "cpu"):
                fig = figures[f"{key}-{workers}-{clock}"]
                r = ratio(figures, f"{key}-{workers}-{clock}", f"stdlib-{workers}-{clock}")
                ratios[f"{key}-{workers}-{clock}"] = r
                cells += [ns(fig.median), ns(fig.min), f"{r:.2f}"]
            rows.append(cells)
        header = ["case", "wall", "min", "× stdlib", "CPU", "min", "× stdlib"]
        table(header, rows)
    print()
    for workers in WORKERS:
        r = ratios[f"priority-{workers}-wall"]
        print(
            f"max_workers={workers}: {r:.2f}× ThreadPoolExecutor (wall), target "
            f"{verdict(r, TARGET)}, aim {verdict(r, AIM)}"
        )
    return {
        "meta": meta,
        "config": {"tasks": config.tasks, "repeat": config.repeat},
        "figures": {key: fig.as_json() | {"name": fig.name} for key, fig in figures.items()},
        "ratios": {key: round(r, 3) for key, r in ratios.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--repeat", type=int, help="timed rounds (default 25, quick 3)")
    parser.add_argument("--tasks", type=int, help="calls per run (default 20,000)")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    config = Config(tasks=args.tasks or config.tasks, repeat=args.repeat or config.repeat)
    result = report(measure(config), config)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
