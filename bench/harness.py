"""Timing, figures and table printing for `bench/core.py`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter_ns
from typing import Any, TypeVar

import prioritize

_C = TypeVar("_C")


@dataclass(frozen=True)
class Config:
    """How much work one benchmark run does (`bench/core.py` defines FULL and QUICK)."""

    repeat: int
    uncontended_ops: int
    dispatch_ops: int
    dispatch_waiters: int
    evict_sizes: tuple[int, ...]
    evict_ops: int
    #: seed cycles per run for each N: its put is O(N), so fewer at large N
    seed_ops: dict[int, int]
    keep_gc: bool


@dataclass
class Figure:
    """ns per op of each timed run of one case."""

    name: str
    ops: int
    runs: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def min(self) -> float:
        return min(self.runs)

    def as_json(self) -> dict[str, Any]:
        return {
            "median_ns": round(self.median, 1),
            "min_ns": round(self.min, 1),
            "runs_ns": [round(r, 1) for r in self.runs],
            "ops_per_run": self.ops,
        }


class Bench:
    """Runs timed loops under one gc policy and collects figures."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.figures: dict[str, Figure] = {}
        self._pending: list[tuple[Figure, Callable[[int], float]]] = []
        self.loop = asyncio.new_event_loop()

    def call(self, fn: Callable[..., int], *args: object) -> int:
        """Call a loop that times itself, gc collected before and paused during it."""
        gc.collect()
        if not self.config.keep_gc:
            gc.disable()
        try:
            return fn(*args)
        finally:
            gc.enable()

    def time(self, fn: Callable[..., object], *args: object) -> int:
        """Wall time in ns of one call of an untimed loop, gc handled as in `call`."""

        def timed() -> int:
            t0 = perf_counter_ns()
            fn(*args)
            return perf_counter_ns() - t0

        return self.call(timed)

    def run_async(self, coro: Coroutine[Any, Any, int]) -> int:
        """Run a coroutine that times itself on the benchmark's event loop."""
        return self.call(self.loop.run_until_complete, coro)

    def measure(self, key: str, name: str, ops: int, run: Callable[[int], float]) -> Figure:
        """Register a case; ``run(i)`` times one run and returns ns/op. See `run_pending`."""
        figure = self.figures[key] = Figure(name, ops)
        self._pending.append((figure, run))
        return figure

    def run_pending(self) -> None:
        """Warm every registered case up once, then time them in ``repeat`` rounds.

        Interleaving the cases (A B C, A B C, ...) rather than running each one
        ``repeat`` times in a row exposes a case and its baseline to the same
        background load, which is what makes their per-round ratio meaningful on
        a shared machine.
        """
        pending, self._pending = self._pending, []
        for _, run in pending:
            run(0)
        for i in range(1, self.config.repeat + 1):
            for figure, run in pending:
                figure.runs.append(run(i))


def ns(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.1f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[c]) for row in [header, *rows]) for c in range(len(header))]
    for row in [header, *rows]:
        cells = [
            row[0].ljust(widths[0]),
            *(cell.rjust(w) for cell, w in zip(row[1:-1], widths[1:-1], strict=True)),
            row[-1],
        ]
        print("  " + "  ".join(cells).rstrip())


def verdict(value: float, target: float) -> str:
    return f"≤ {target:g}×: {'met' if value <= target else 'MISSED'}"


def source() -> str:
    """Where `prioritize` was imported from, and the git commit of the repo it sits in."""
    path = Path(prioritize.__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(path)
    return f"{path} @ {rev}{' + uncommitted changes' if dirty else ''}"


def metadata() -> dict[str, Any]:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {
        "source": source(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": f"Python {platform.python_version()} ({platform.python_implementation()})",
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": os.cpu_count(),
        "load": f"{load:.2f}",
    }


def parse_args(
    description: str, argv: Sequence[str] | None, flags: dict[str, str] | None = None
) -> argparse.Namespace:
    """The options every timed benchmark takes (``--quick``, ``--json``, ``--repeat``, ``--gc``).

    ``flags`` adds a benchmark's own on/off options: ``{"--skip-x": "help"}``.
    """
    parser = argparse.ArgumentParser(description=description)
    for flag, help_text in (flags or {}).items():
        parser.add_argument(flag, action="store_true", help=help_text)
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write figures as JSON")
    parser.add_argument("--repeat", type=int, help="timed runs per case (default 7, quick 3)")
    parser.add_argument("--gc", action="store_true", help="leave the garbage collector on")
    return parser.parse_args(argv)


def choose_config(args: argparse.Namespace, full: _C, quick: _C) -> _C:
    """FULL or QUICK, with ``--repeat`` and ``--gc`` applied."""
    config = quick if args.quick else full
    if args.repeat is not None:
        config = dataclasses.replace(config, repeat=max(1, args.repeat))
    if args.gc:
        config = dataclasses.replace(config, keep_gc=True)
    return config


def write_json(
    args: argparse.Namespace,
    meta: dict[str, Any],
    bench: Bench,
    overhead: float,
    ratios: dict[str, float],
) -> None:
    """With ``--json PATH``: every figure and ratio of the run, and how it was made."""
    if args.json is None:
        return
    config = bench.config
    doc = {
        "meta": {**meta, "quick": args.quick, "repeat": config.repeat, "gc": config.keep_gc},
        "clock_overhead_ns": round(overhead, 1),
        "figures": {k: {"name": v.name, **v.as_json()} for k, v in bench.figures.items()},
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
    }
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {args.json}")
