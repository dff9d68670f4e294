"""asyncio benchmark: `Gate.slot` beside `asyncio.Semaphore`, the hand-written baseline.

Run it with ``.venv/bin/python bench/aio.py`` (``make bench`` runs it after
the core benchmark); ``--quick`` is a smoke run, ``--json PATH`` also writes
every figure.

1. **Uncontended.** One coroutine enters and leaves the block N times:
   ``async with gate.slot("high"):`` against ``async with semaphore:``, both
   with free seats. This is the cost every request pays when the service is
   not overloaded.
2. **Contended.** 10,000 coroutines contend for 50 seats; each enters the
   block, yields once (``await asyncio.sleep(0)``) and leaves. Measured from
   the first task's creation to the last task's end, per task. The gate
   also keeps its levels (uniform over the five), a bounded queue and a
   deadline per waiter; the semaphore keeps one FIFO.

Each case runs in interleaved rounds on a fresh event loop per run; a ratio
is the median over rounds of gate / semaphore timed in the same round.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import statistics
import sys
from pathlib import Path
from time import perf_counter_ns

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import metadata, ns, table
from prioritize import GatePolicy
from prioritize.aio import Gate

LEVELS = ["critical", "high", "normal", "low", "bulk"]


async def uncontended_gate(n: int) -> int:
    gate = Gate(64)
    slot = gate.slot
    start = perf_counter_ns()
    for _ in range(n):
        async with slot("high"):
            pass
    return perf_counter_ns() - start


async def uncontended_semaphore(n: int) -> int:
    semaphore = asyncio.Semaphore(64)
    start = perf_counter_ns()
    for _ in range(n):
        async with semaphore:
            pass
    return perf_counter_ns() - start


async def contended_gate(n: int, seats: int) -> int:
    gate = Gate(GatePolicy(capacity=seats, queue=n))
    rng = random.Random(1)
    levels = [rng.choice(LEVELS) for _ in range(n)]
    slot, pause = gate.slot, asyncio.sleep

    async def one(level: str) -> None:
        async with slot(level):
            await pause(0)

    start = perf_counter_ns()
    await asyncio.gather(*(one(level) for level in levels))
    elapsed = perf_counter_ns() - start
    stats = gate.stats()
    assert sum(s.granted for s in stats.levels) == n, "every task must have had its seat"
    return elapsed


async def contended_semaphore(n: int, seats: int) -> int:
    semaphore = asyncio.Semaphore(seats)
    pause = asyncio.sleep

    async def one() -> None:
        async with semaphore:
            await pause(0)

    start = perf_counter_ns()
    await asyncio.gather(*(one() for _ in range(n)))
    return perf_counter_ns() - start


def timed(coro_fn: object, *args: int) -> float:
    gc.collect()
    elapsed = asyncio.run(coro_fn(*args))  # type: ignore[operator]
    return float(elapsed)


def measure(
    rounds: int, cases: dict[str, tuple[object, tuple[int, ...]]], ops: int
) -> dict[str, list[float]]:
    """ns per op of every case, interleaved: one run of each case per round."""
    runs: dict[str, list[float]] = {name: [] for name in cases}
    for fn, args in cases.values():  # warm-up, discarded
        timed(fn, *args)
    for _ in range(rounds):
        for name, (fn, args) in cases.items():
            runs[name].append(timed(fn, *args) / ops)
    return runs


def ratio(runs: dict[str, list[float]], case: str, base: str) -> float:
    return statistics.median(c / b for c, b in zip(runs[case], runs[base], strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    rounds, n_uncontended, n_contended = (3, 20_000, 2_000) if args.quick else (9, 100_000, 10_000)
    seats = 50

    meta = metadata()
    print(f"prioritize asyncio benchmark, {meta['date']}")
    print(f"{meta['python']} on {meta['platform']}, {meta['cpus']} CPUs, load {meta['load']}")
    print(f"prioritize from {meta['source']}")
    print(f"{rounds} interleaved rounds; ns per op, median and min; ratio = median of round ratios")

    unc = measure(
        rounds,
        {"gate": (uncontended_gate, (n_uncontended,)),
         "semaphore": (uncontended_semaphore, (n_uncontended,))},
        n_uncontended,
    )  # fmt: skip
    con = measure(
        rounds,
        {"gate": (contended_gate, (n_contended, seats)),
         "semaphore": (contended_semaphore, (n_contended, seats))},
        n_contended,
    )  # fmt: skip
    figures = {"uncontended": unc, "contended": con}
    ratios = {
        "uncontended": ratio(unc, "gate", "semaphore"),
        "contended": ratio(con, "gate", "semaphore"),
    }
    print()
    rows = []
    for section, runs in figures.items():
        label = (
            "enter + leave, free seats"
            if section == "uncontended"
            else f"{n_contended:,} tasks for {seats} seats"
        )
        for case in ("semaphore", "gate"):
            name = "asyncio.Semaphore" if case == "semaphore" else "Gate.slot"
            shown = "1.00" if case == "semaphore" else f"{ratios[section]:.2f}×"
            verdict = "" if case == "semaphore" else (
                "≤ 2×: met" if ratios[section] <= 2 else "≤ 2×: MISSED"
            )  # fmt: skip
            rows.append([
                label, name, ns(statistics.median(runs[case])), ns(min(runs[case])), shown, verdict
            ])  # fmt: skip
    table(["case", "", "median", "min", "ratio", "target (aim 1.3×)"], rows)
    if args.json:
        args.json.write_text(
            json.dumps({"meta": meta, "runs_ns": figures, "ratios": ratios}, indent=2)
        )
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
