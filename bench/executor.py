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
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter_ns
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


FULL = Config(tasks=40_000, repeat=9)
QUICK = Config(tasks=4_000, repeat=3)


def noop() -> None:
    return None


def _warm(executor: Executor, workers: int) -> None:
    """Start every worker thread before the clock runs."""
    import threading

    barrier = threading.Barrier(workers + 1)
    fs = [executor.submit(barrier.wait) for _ in range(workers)]
    barrier.wait()
    for f in fs:
        f.result()


def run_stdlib(workers: int, tasks: int, _levels: list[str]) -> float:
    executor = ThreadPoolExecutor(workers)
    _warm(executor, workers)
    submit = executor.submit
    gc.collect()
    t0 = perf_counter_ns()
    fs = [submit(noop) for _ in range(tasks)]
    for f in fs:
        f.result()
    elapsed = perf_counter_ns() - t0
    executor.shutdown()
    return elapsed / tasks


def run_priority(workers: int, tasks: int, levels: list[str]) -> float:
    executor = PriorityThreadPoolExecutor(workers)
    _warm(executor, workers)
    submit = executor.submit
    gc.collect()
    t0 = perf_counter_ns()
    fs: list[Future[None]]
    if levels:
        fs = [submit(noop, priority=level) for level in levels]
    else:
        fs = [submit(noop) for _ in range(tasks)]
    for f in fs:
        f.result()
    elapsed = perf_counter_ns() - t0
    executor.shutdown()
    return elapsed / tasks


CASES: list[tuple[str, str, Callable[[int, int, list[str]], float], bool]] = [
    ("stdlib", "ThreadPoolExecutor", run_stdlib, False),
    ("priority", "PriorityThreadPoolExecutor, all normal", run_priority, False),
    ("mixed", "PriorityThreadPoolExecutor, 5 levels mixed", run_priority, True),
]


def measure(config: Config) -> dict[str, Figure]:
    rng = random.Random(SEED)
    names = DEFAULT_LEVELS.names
    mixed = [rng.choice(names) for _ in range(config.tasks)]
    figures: dict[str, Figure] = {}
    for workers in WORKERS:
        for key, name, _, _ in CASES:
            figures[f"{key}-{workers}"] = Figure(f"{name}, max_workers={workers}", config.tasks)
    for round_ in range(config.repeat + 1):
        for workers in WORKERS:
            for key, _, run, is_mixed in CASES:
                value = run(workers, config.tasks, mixed if is_mixed else [])
                if round_:  # round 0 warms up
                    figures[f"{key}-{workers}"].runs.append(value)
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
        f"median of {config.repeat} interleaved rounds"
    )
    ratios: dict[str, float] = {}
    for workers in WORKERS:
        print(f"\nmax_workers={workers}")
        rows = []
        base = f"stdlib-{workers}"
        for key, name, _, _ in CASES:
            fig = figures[f"{key}-{workers}"]
            if key == "stdlib":
                cell = "1.00"
            else:
                ratios[f"{key}-{workers}"] = r = ratio(figures, f"{key}-{workers}", base)
                cell = f"{r:.2f}"
            rows.append([name, ns(fig.median), ns(fig.min), cell])
        table(["case", "ns/task median", "min", "× stdlib"], rows)
    print()
    for workers in WORKERS:
        r = ratios[f"priority-{workers}"]
        print(
            f"max_workers={workers}: {r:.2f}× ThreadPoolExecutor, target {verdict(r, TARGET)}, "
            f"aim {verdict(r, AIM)}"
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
    parser.add_argument("--repeat", type=int, help="timed rounds (default 9, quick 3)")
    parser.add_argument("--tasks", type=int, help="calls per run (default 40,000)")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    config = Config(tasks=args.tasks or config.tasks, repeat=args.repeat or config.repeat)
    result = report(measure(config), config)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
