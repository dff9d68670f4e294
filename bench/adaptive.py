"""Adaptive capacity benchmark: what a limit controller costs per completed request.

Run it with ``.venv/bin/python bench/adaptive.py``; ``--quick`` is a smoke
run of a few seconds, ``--json PATH`` also writes every figure.

Every case is one call per completed request, beside the trivial baseline
of updating an exponentially weighted moving average (one multiply-add on
an attribute, through a method call), timed in the same rounds:

1. **on_sample, 1,000 completions/s.** `AIMD` and `Gradient` with their
   defaults, samples 1 ms apart: a window (0.1 s, 10 samples) closes every
   100 samples, so this is the per-sample cost with the window update
   amortised, as in a service doing 1,000 requests a second. `Gradient`
   runs its probes too (every 60 s of virtual time).
2. **on_sample, a window per sample.** ``window = 0, window_samples = 1``:
   every sample moves the limit, the worst case.
3. **observe.** `AdaptiveCapacity.observe` on a gate of the five default
   levels with percentage mins (the example policy's shape) and 100 seats
   held: (a) mid-window, the limit holds and the scheduler is not touched;
   (b) the limit changes on *every* call (AIMD alternating a drop and a
   success, 100 -> 50 -> 100 seats), so each call also runs
   `Scheduler.resize`, which re-resolves the percentages; (c) that
   `Scheduler.resize` alone, for context. These two make a twentieth of the
   calls of the others: each costs about a hundred of theirs.

Method: inputs are built before each timed loop; every figure is the median
(and min) of ``--repeat`` runs after a discarded warm-up run, the cases
interleaved one run each per round; a ratio is the median over rounds of
case / baseline in the same round. The cyclic garbage collector is paused
inside timed loops.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from time import perf_counter_ns

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Figure, metadata, ns, table
from prioritize import GatePolicy, LevelPolicy, Scheduler
from prioritize.adaptive import AIMD, AdaptiveCapacity, Gradient

RTT = 0.05
STEP = 0.001  # seconds between completions: 1,000 a second


class Ewma:
    """The baseline: the least a per-sample estimator can do."""

    __slots__ = ("alpha", "value")

    def __init__(self, alpha: float = 0.2) -> None:
        self.alpha = alpha
        self.value = RTT

    def update(self, sample: float) -> float:
        self.value += self.alpha * (sample - self.value)
        return self.value


def clock(n: int, round_: int) -> list[float]:
    """Completion times for one run; each run carries on where the last one stopped."""
    base = round_ * n * STEP
    return [base + k * STEP for k in range(n)]


def loop_ewma(ewma: Ewma, times: list[float], rtts: list[float]) -> int:
    update = ewma.update
    start = perf_counter_ns()
    for _t, rtt in zip(times, rtts, strict=True):
        update(rtt)
    return perf_counter_ns() - start


def loop_on_sample(controller: AIMD | Gradient, times: list[float], rtts: list[float]) -> int:
    on_sample = controller.on_sample
    start = perf_counter_ns()
    for t, rtt in zip(times, rtts, strict=True):
        on_sample(t, rtt, 100)
    return perf_counter_ns() - start


def loop_observe(adaptive: AdaptiveCapacity, times: list[float], drops: list[bool]) -> int:
    observe = adaptive.observe
    start = perf_counter_ns()
    for t, dropped in zip(times, drops, strict=True):
        observe(t, RTT, dropped)
    return perf_counter_ns() - start


def loop_resize(sched: Scheduler, times: list[float], sizes: list[int]) -> int:
    resize = sched.resize
    start = perf_counter_ns()
    for t, size in zip(times, sizes, strict=True):
        resize(size, t)
    return perf_counter_ns() - start


def timed(fn: Callable[[], int]) -> int:
    gc.collect()
    gc.disable()
    try:
        return fn()
    finally:
        gc.enable()


def held_gate() -> Scheduler:
    """The example policy's shape at 100 seats, every seat held, nobody waiting."""
    mins = {"critical": "10%", "high": "20%", "normal": "20%", "low": "10%", "bulk": "5%"}
    policy = GatePolicy(
        capacity=100,
        name="api",
        levels={name: LevelPolicy(min=low, max="25%" if name == "bulk" else None)
                for name, low in mins.items()},
    )  # fmt: skip
    sched = Scheduler(policy)
    for name in ("critical", "high", "normal", "low", "bulk"):
        for _ in range(sched.limits(name).min):
            sched.submit(sched.ticket(name), 0.0)
    while sched.in_use < 100:
        sched.submit(sched.ticket("critical"), 0.0)
    return sched


def cases(n: int) -> list[tuple[str, str, int, Callable[[int], int]]]:
    """(key, label, calls, run) for every case; ``run(round)`` returns the ns of one timed run.

    The resizing cases make a twentieth of the calls: each costs about 100 of the others.
    """
    rtts = [RTT] * n
    ewma = Ewma()
    aimd, gradient = AIMD(initial=100, max_limit=1000), Gradient(initial=100, max_limit=1000)
    aimd_each = AIMD(initial=100, max_limit=1000, window=0.0, window_samples=1)
    gradient_each = Gradient(initial=100, max_limit=1000, window=0.0, window_samples=1)

    mid = AdaptiveCapacity(held_gate(), AIMD(initial=100, window=1e12, window_samples=1))
    mid.observe(0.0, RTT)  # the first window closes on its count; the next never does
    flipping = AdaptiveCapacity(
        held_gate(),
        AIMD(initial=100, min_limit=50, backoff=0.5, increase=50.0, window=0.0, window_samples=1),
    )
    alone = held_gate()
    few = max(n // 20, 2)
    drops = [k % 2 == 0 for k in range(few)]  # drop: 100 -> 50; success: 50 -> 100
    never = [False] * n
    sizes = [50 if k % 2 == 0 else 100 for k in range(few)]

    def run(
        loop: Callable[..., int], target: object, inputs: Sequence[object]
    ) -> Callable[[int], int]:
        calls = len(inputs)
        return lambda r: timed(lambda: loop(target, clock(calls, r), inputs))

    return [
        ("ewma", "EWMA update (baseline)", n, run(loop_ewma, ewma, rtts)),
        ("aimd", "AIMD.on_sample, 1,000/s", n, run(loop_on_sample, aimd, rtts)),
        ("gradient", "Gradient.on_sample, 1,000/s", n, run(loop_on_sample, gradient, rtts)),
        (
            "aimd_each",
            "AIMD.on_sample, a window per sample",
            n,
            run(loop_on_sample, aimd_each, rtts),
        ),
        (
            "gradient_each",
            "Gradient.on_sample, a window per sample",
            n,
            run(loop_on_sample, gradient_each, rtts),
        ),
        ("observe", "observe, limit holds", n, run(loop_observe, mid, never)),
        (
            "observe_resize",
            "observe + resize every call",
            few,
            run(loop_observe, flipping, drops),
        ),
        ("resize", "Scheduler.resize alone", few, run(loop_resize, alone, sizes)),
    ]


def measure(n: int, repeat: int) -> dict[str, Figure]:
    todo = cases(n)
    figures = {key: Figure(label, calls) for key, label, calls, _ in todo}
    for *_, run in todo:
        run(0)  # warm-up, discarded
    for r in range(1, repeat + 1):
        for key, _, calls, run in todo:
            figures[key].runs.append(run(r) / calls)
    return figures


def ratio(figures: dict[str, Figure], key: str) -> float:
    rounds = zip(figures[key].runs, figures["ewma"].runs, strict=True)
    return statistics.median(a / b for a, b in rounds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write figures as JSON")
    parser.add_argument("--repeat", type=int, help="timed rounds (default 9; quick: 3)")
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else 200_000
    repeat = args.repeat or (3 if args.quick else 9)
    meta = metadata()
    print(f"adaptive capacity · {meta['python']} · {meta['platform']} · load {meta['load']}")
    print(f"{meta['source']}\n{repeat} rounds of {n:,} calls per case ({n // 20:,} resizing)\n")
    figures = measure(n, repeat)
    rows = [
        [fig.name, ns(fig.median), ns(fig.min), f"{ratio(figures, key):.1f}×"]
        for key, fig in figures.items()
    ]
    table(["case", "ns/op median", "min", "vs EWMA"], rows)
    if args.json:
        out = {
            "meta": meta,
            "figures": {key: fig.as_json() for key, fig in figures.items()},
            "ratios_vs_ewma": {key: round(ratio(figures, key), 2) for key in figures},
        }
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
