"""Core benchmark: the sans-I/O `Scheduler` beside a bare heapq and the seed's queue.

Run it with ``make bench`` (``.venv/bin/python bench/core.py``); ``--quick`` is
a smoke run of a few seconds, ``--json PATH`` also writes every figure.

Three measurements, each printed with its baseline and the ratio between them:

1. **Uncontended.** ``submit`` + ``release`` of one ticket when seats are free
   and nothing waits (the fast path every request takes when the service is
   not overloaded), beside one ``heappush`` + ``heappop`` on a heap of four.
   The cost of creating a `Ticket` is shown for context; tickets are created
   before the timed loop.
2. **Dispatch.** Capacity 64, all seats held, 10,000 tickets waiting over five
   levels and 100 flows. One op releases the oldest held ticket (the scheduler
   grants the next waiter by policy; the granted ticket joins the holders) and
   submits one pre-built ticket of a random level and flow, which waits, so
   the gate stays full and the queue stays at 10,000. Measured for strict
   order, weighted order (8/4/2/1/1) and strict order with ``min`` reserves
   of 20/15/10/5 % (the 40/30/20/10 % shape at half size: reserves adding up
   to 100 % leave the min-0 bulk level no seat it may ever take, so under
   this load the gate drains to a handful of busy seats and there is no
   steady state to time). Levels are uniform over the five and flows over
   the 100. Baseline: one ``heappop`` + one ``heappush`` per op on a heap of
   10,000 ``(rank, seq, item)`` tuples fed the same kind of level sequence.
3. **Put when full.** A gate whose total ``queue`` bound is N, N waiting
   (90 % bulk, 5 % low, 5 % normal; 100 flows) and all 64 seats held. One
   cycle: submit a ``high`` ticket (the queue is full, so the newest bulk
   waiter is evicted), release the oldest holder (which grants that ``high``
   ticket), submit a fresh bulk ticket (N-1 waiting, so it queues): back to
   the starting state. The seed document's ``PriorityTaskQueue`` (kept
   verbatim in ``baselines/seed_priority_task_queue.py``) runs the same
   cycle: ``put(HIGH)`` into the full queue (its O(n) scan and re-heapify),
   ``get()`` (returns that HIGH item), ``put(BULK)``. The evicting put is
   timed on its own (per-op clock reads, their measured cost subtracted) and
   the whole cycle is timed separately without per-op clock reads. N = 1,000,
   10,000 and 100,000 run interleaved; flatness is Scheduler(100k)/(1k).

Method: every figure is the median (and min) of ``--repeat`` runs after one
discarded warm-up run, each run timing one loop with `time.perf_counter_ns`.
The cases of a section run interleaved, one run of each per round, and a
ratio is the median over rounds of case/baseline within the same round, so
background load on a shared machine hits both sides alike. State carries over
from run to run, so the warm-up also brings the queues to their steady state.
Inputs (tickets, tuples) are built before each timed loop from a fixed random
seed. ``now`` advances by `STEP` per op, so granted tickets have really waited
(the wait histogram takes its full path) and the completion-rate window rolls.
The cyclic garbage collector is off inside timed loops (as `timeit` does)
unless ``--gc`` is given; it is collected before each run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import gc
import heapq
import json
import os
import platform
import random
import statistics
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import prioritize
from baselines import heapq_queue
from baselines.seed_priority_task_queue import Priority, PriorityTaskQueue
from prioritize.core import DEFAULT_LEVELS, GatePolicy, LevelPolicy, Scheduler, Ticket, TicketState

LEVELS = ("critical", "high", "normal", "low", "bulk")
INF = float("inf")
CAPACITY = 64
FLOWS = 100
SEED = 20240601
#: simulated seconds between two ops: ``now`` advances by this in every timed loop, so
#: waits are real (the wait histogram's full path) and the completion-rate window rolls
STEP = 50e-6
#: level ranks of the waiters that fill the put-when-full queue: 90 % bulk, 5 % low, 5 % normal
EVICT_MIX = (4,) * 18 + (3, 2)


@dataclass(frozen=True)
class Config:
    repeat: int
    uncontended_ops: int
    dispatch_ops: int
    dispatch_waiters: int
    evict_sizes: tuple[int, ...]
    evict_ops: int
    #: seed cycles per run for each N: its put is O(N), so fewer at large N
    seed_ops: dict[int, int]
    keep_gc: bool


FULL = Config(
    repeat=7,
    uncontended_ops=200_000,
    dispatch_ops=150_000,
    dispatch_waiters=10_000,
    evict_sizes=(1_000, 10_000, 100_000),
    evict_ops=60_000,
    seed_ops={1_000: 200, 10_000: 30, 100_000: 5},
    keep_gc=False,
)
QUICK = Config(
    repeat=3,
    uncontended_ops=20_000,
    dispatch_ops=20_000,
    dispatch_waiters=10_000,
    evict_sizes=(1_000, 10_000, 100_000),
    evict_ops=10_000,
    seed_ops={1_000: 30, 10_000: 5, 100_000: 2},
    keep_gc=False,
)


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


# -- shared helpers -------------------------------------------------------------------


def gate(
    order: str, queue: int, weights: Sequence[float] = (), mins: Sequence[str] = ()
) -> Scheduler:
    levels = {
        name: LevelPolicy(
            min=mins[i] if mins else 0,
            weight=weights[i] if weights else 1.0,
            max_wait=INF,
        )
        for i, name in enumerate(LEVELS)
    }
    return Scheduler(GatePolicy(capacity=CAPACITY, levels=levels, order=order, queue=queue))


def start(run: int, ops: int) -> float:
    """``now`` at the start of timed run ``run`` of ``ops`` ops (0 is the warm-up)."""
    return 1.0 + run * ops * STEP


def flow_names() -> list[str]:
    return [f"tenant-{i}" for i in range(FLOWS)]


def clock_overhead(n: int = 200_000) -> float:
    """ns that a pair of back-to-back perf_counter_ns reads adds to each per-op sample."""
    samples = []
    for _ in range(5):
        clock = perf_counter_ns
        total = 0
        for _ in range(n):
            t0 = clock()
            total += clock() - t0
        samples.append(total / n)
    return statistics.median(samples)


# -- 1. uncontended -------------------------------------------------------------------


def loop_submit_release(s: Scheduler, tickets: list[Ticket], now: float) -> None:
    step = STEP
    submit = s.submit
    release = s.release
    for t in tickets:
        now += step
        submit(t, now)
        release(t, now)


def loop_new_ticket(level: Any, flows: list[str]) -> None:
    for f in flows:
        Ticket(level, f)


def loop_scheduler_ticket(s: Scheduler, flows: list[str]) -> None:
    ticket = s.ticket
    for f in flows:
        ticket("high", f)


def loop_empty(items: list[str]) -> None:
    for _ in items:
        pass


def bench_uncontended(b: Bench) -> None:
    n = b.config.uncontended_ops
    rng = random.Random(SEED)
    names = flow_names()
    flows = [rng.choice(names) for _ in range(n)]
    s = gate("strict", queue=1000)
    high = s.levels["high"]

    def scheduler(i: int) -> float:
        tickets = [Ticket(high, f) for f in flows]
        ns = b.time(loop_submit_release, s, tickets, start(i, n))
        assert s.in_use == 0
        assert s.waiting == 0
        assert all(t.state is TicketState.RELEASED for t in tickets)
        return ns / n

    heap: list[heapq_queue.Entry] = [(1, i, None) for i in range(4)]

    def baseline(i: int) -> float:
        entries = [(1, (i + 1) * n + k, None) for k in range(n)]
        return b.time(heapq_queue.push_then_pop, heap, entries) / n

    b.measure("uncontended.scheduler", "Scheduler submit + release", n, scheduler)
    b.measure("uncontended.heapq", "heapq push + pop (heap of 4)", n, baseline)
    b.measure(
        "uncontended.ticket",
        "Ticket(level, flow)",
        n,
        lambda i: b.time(loop_new_ticket, high, flows) / n,
    )
    b.measure(
        "uncontended.scheduler_ticket",
        'Scheduler.ticket("high", flow)',
        n,
        lambda i: b.time(loop_scheduler_ticket, s, flows) / n,
    )
    b.measure(
        "uncontended.loop", "empty for-loop iteration", n, lambda i: b.time(loop_empty, flows) / n
    )
    b.run_pending()


# -- 2. dispatch ----------------------------------------------------------------------

DISPATCH_CASES = (
    ("strict", "strict", (), ()),
    ("weighted", "weighted 8/4/2/1/1", (8.0, 4.0, 2.0, 1.0, 1.0), ()),
    ("strict_min", "strict, min 20/15/10/5 %", (), ("20%", "15%", "10%", "5%", "0%")),
)


def loop_dispatch(s: Scheduler, held: deque[Ticket], tickets: list[Ticket], now: float) -> None:
    step = STEP
    submit = s.submit
    release = s.release
    popleft = held.popleft
    extend = held.extend
    for t in tickets:
        now += step
        extend(release(popleft(), now))
        extend(submit(t, now))


def loop_harness(held: deque[Ticket], tickets: list[Ticket]) -> None:
    """The benchmark's own bookkeeping in `loop_dispatch`, without the scheduler calls."""
    step = STEP
    popleft = held.popleft
    extend = held.extend
    nothing: tuple[Ticket, ...] = ()
    now = 0.0
    for _ in tickets:
        now += step
        extend((popleft(),))
        extend(nothing)


def fill_dispatch(s: Scheduler, rng: random.Random, waiters: int) -> deque[Ticket]:
    """Submit random tickets until every seat is held and ``waiters`` wait; return holders."""
    names = flow_names()
    submitted = []
    while s.in_use < CAPACITY or s.waiting < waiters:
        t = s.ticket(rng.randrange(len(LEVELS)), rng.choice(names))
        s.submit(t, 0.0)
        submitted.append(t)
    return deque(t for t in submitted if t.state is TicketState.GRANTED)


def bench_dispatch_case(
    b: Bench, key: str, name: str, weights: Sequence[float], mins: Sequence[str]
) -> None:
    n = b.config.dispatch_ops
    names = flow_names()
    rng = random.Random(SEED)
    order = key.split("_", maxsplit=1)[0]
    s = gate(order, queue=2 * b.config.dispatch_waiters, weights=weights, mins=mins)
    held = fill_dispatch(s, rng, b.config.dispatch_waiters)
    population = s.in_use + s.waiting
    levels = list(s.levels)

    def run(i: int) -> float:
        tickets = [Ticket(levels[rng.randrange(5)], rng.choice(names)) for _ in range(n)]
        ns = b.time(loop_dispatch, s, held, tickets, start(i, n))
        assert s.in_use + s.waiting == population, "a ticket was lost or shed"
        assert len(held) == s.in_use
        figure.name = f"{name}  [{s.in_use} held, {s.waiting:,} waiting]"
        return ns / n

    figure = b.measure(f"dispatch.{key}", name, n, run)


def bench_dispatch(b: Bench) -> None:
    n = b.config.dispatch_ops
    waiters = b.config.dispatch_waiters
    for key, name, weights, mins in DISPATCH_CASES:
        bench_dispatch_case(b, key, name, weights, mins)

    rng = random.Random(SEED)
    heap: list[heapq_queue.Entry] = [(rng.randrange(5), k, None) for k in range(waiters)]
    heapq.heapify(heap)

    def baseline(i: int) -> float:
        entries = [(rng.randrange(5), (i + 1) * n + k, None) for k in range(n)]
        ns = b.time(heapq_queue.pop_then_push, heap, entries)
        assert len(heap) == waiters
        return ns / n

    b.measure("dispatch.heapq", f"heapq pop + push (heap of {waiters:,})", n, baseline)

    high = DEFAULT_LEVELS["high"]

    def harness(i: int) -> float:
        held = deque(Ticket(high) for _ in range(CAPACITY))
        tickets = [Ticket(high) for _ in range(n)]
        return b.time(loop_harness, held, tickets) / n

    b.measure("dispatch.harness", "harness only (loop + deque of holders)", n, harness)
    b.run_pending()


# -- 3. put when full -----------------------------------------------------------------


def loop_evict_cycle(
    s: Scheduler, held: deque[Ticket], highs: list[Ticket], bulks: list[Ticket], now: float
) -> None:
    step = STEP
    submit = s.submit
    release = s.release
    popleft = held.popleft
    extend = held.extend
    for high, bulk in zip(highs, bulks, strict=True):
        now += step
        submit(high, now)  # full: evicts the newest bulk waiter
        extend(release(popleft(), now))  # grants `high`
        submit(bulk, now)  # N-1 waiting: queues


def loop_evict_timed(
    s: Scheduler, held: deque[Ticket], highs: list[Ticket], bulks: list[Ticket], now: float
) -> int:
    """The same cycle; returns the ns spent inside the evicting submits only."""
    step = STEP
    submit = s.submit
    release = s.release
    popleft = held.popleft
    extend = held.extend
    clock = perf_counter_ns
    total = 0
    for high, bulk in zip(highs, bulks, strict=True):
        now += step
        t0 = clock()
        submit(high, now)
        total += clock() - t0
        extend(release(popleft(), now))
        submit(bulk, now)
    return total


def fill_evict(s: Scheduler, rng: random.Random, size: int) -> deque[Ticket]:
    names = flow_names()
    held: deque[Ticket] = deque()
    for _ in range(CAPACITY):
        t = s.ticket("normal", rng.choice(names))
        s.submit(t, 0.0)
        held.append(t)
    for _ in range(size):
        s.submit(s.ticket(rng.choice(EVICT_MIX), rng.choice(names)), 0.0)
    assert s.in_use == CAPACITY
    assert s.waiting == size
    return held


async def seed_fill(q: PriorityTaskQueue, ranks: list[int]) -> int:
    for r in ranks:
        await q.put("filler", Priority(r))
    return 0


async def seed_cycle(q: PriorityTaskQueue, n: int) -> int:
    put = q.put
    get = q.get
    high = Priority.HIGH
    bulk = Priority.BULK
    t0 = perf_counter_ns()
    for _ in range(n):
        await put("high", high)  # full: scans, pops, re-heapifies
        await get()  # returns the "high" task
        await put("bulk", bulk)  # N-1 waiting: heappush
    return perf_counter_ns() - t0


async def seed_put_timed(q: PriorityTaskQueue, n: int) -> int:
    put = q.put
    get = q.get
    high = Priority.HIGH
    bulk = Priority.BULK
    clock = perf_counter_ns
    total = 0
    for _ in range(n):
        t0 = clock()
        await put("high", high)
        total += clock() - t0
        await get()
        await put("bulk", bulk)
    return total


async def noop() -> bool:
    return True


async def await_noop(n: int) -> int:
    t0 = perf_counter_ns()
    for _ in range(n):
        await noop()
    return perf_counter_ns() - t0


def check_seed_cycle(b: Bench, q: PriorityTaskQueue, size: int) -> None:
    """One untimed cycle, checking the seed behaves as the benchmark assumes."""

    async def cycle() -> int:
        assert await q.put("high", Priority.HIGH)
        assert len(q.queue) == size
        assert await q.get() == "high"
        assert await q.put("bulk", Priority.BULK)
        return 0

    b.loop.run_until_complete(cycle())
    assert len(q.queue) == size


def bench_evict_scheduler(b: Bench, size: int, overhead: float) -> None:
    n = b.config.evict_ops
    rng = random.Random(SEED)
    s = gate("strict", queue=size)
    held = fill_evict(s, rng, size)
    names = flow_names()
    high, bulk = s.levels["high"], s.levels["bulk"]
    # One untimed cycle, checking the scheduler behaves as the benchmark assumes.
    first = s.ticket("high", "check")
    (victim,) = s.submit(first, 0.0)
    assert victim.level == bulk
    assert victim.reason is not None
    assert victim.reason.value == "evicted"
    assert s.release(held.popleft(), 0.0) == [first]
    held.append(first)
    assert s.submit(s.ticket("bulk", "check"), 0.0) == []

    def batch(i: int) -> tuple[list[Ticket], list[Ticket]]:
        return (
            [Ticket(high, rng.choice(names)) for _ in range(n)],
            [Ticket(bulk, rng.choice(names)) for _ in range(n)],
        )

    def check(highs: list[Ticket]) -> None:
        assert s.in_use == CAPACITY
        assert s.waiting == size
        assert all(t.state is not TicketState.SHED for t in highs)

    def cycle(i: int) -> float:
        highs, bulks = batch(i)
        ns = b.time(loop_evict_cycle, s, held, highs, bulks, start(2 * i + 1, n))
        check(highs)
        return ns / n

    def per_op(i: int) -> float:
        highs, bulks = batch(i)
        ns = b.call(loop_evict_timed, s, held, highs, bulks, start(2 * i, n))
        check(highs)
        return ns / n - overhead

    b.measure(f"evict.{size}.scheduler_put", "Scheduler evicting submit", n, per_op)
    b.measure(f"evict.{size}.scheduler_cycle", "Scheduler cycle", n, cycle)


def bench_evict_seed(b: Bench, size: int, overhead: float) -> None:
    n = b.config.seed_ops[size]
    rng = random.Random(SEED)
    q = PriorityTaskQueue(max_size=size)
    b.loop.run_until_complete(seed_fill(q, [rng.choice(EVICT_MIX) for _ in range(size)]))
    check_seed_cycle(b, q, size)

    def per_op(i: int) -> float:
        ns = b.run_async(seed_put_timed(q, n))
        assert len(q.queue) == size
        return ns / n - overhead

    def cycle(i: int) -> float:
        ns = b.run_async(seed_cycle(q, n))
        assert len(q.queue) == size
        return ns / n

    b.measure(f"evict.{size}.seed_put", "seed put(HIGH)", n, per_op)
    b.measure(f"evict.{size}.seed_cycle", "seed cycle", n, cycle)


def bench_evict(b: Bench) -> float:
    overhead = clock_overhead(b.config.evict_ops)
    for size in b.config.evict_sizes:
        bench_evict_scheduler(b, size, overhead)
        bench_evict_seed(b, size, overhead)
    n = 20_000
    b.measure(
        "evict.asyncio_await",
        "await of a no-op coroutine",
        n,
        lambda i: b.run_async(await_noop(n)) / n,
    )
    b.run_pending()
    return overhead


# -- report ---------------------------------------------------------------------------


def ratios(figures: dict[str, Figure], sizes: Sequence[int]) -> dict[str, float]:
    """Median over rounds of a case over its baseline timed in the same round."""

    def r(a: str, b: str) -> float:
        return statistics.median(
            x / y for x, y in zip(figures[a].runs, figures[b].runs, strict=True)
        )

    def r_min(a: str, b: str) -> float:
        return figures[a].min / figures[b].min

    out = {
        "uncontended.scheduler/heapq": r("uncontended.scheduler", "uncontended.heapq"),
        "uncontended.scheduler/heapq.min": r_min("uncontended.scheduler", "uncontended.heapq"),
    }
    for key, _, _, _ in DISPATCH_CASES:
        out[f"dispatch.{key}/heapq"] = r(f"dispatch.{key}", "dispatch.heapq")
        out[f"dispatch.{key}/heapq.min"] = r_min(f"dispatch.{key}", "dispatch.heapq")
    for size in sizes:
        out[f"evict.{size}.seed/scheduler_put"] = r(
            f"evict.{size}.seed_put", f"evict.{size}.scheduler_put"
        )
        out[f"evict.{size}.seed/scheduler_cycle"] = r(
            f"evict.{size}.seed_cycle", f"evict.{size}.scheduler_cycle"
        )
    big, small = f"evict.{max(sizes)}", f"evict.{min(sizes)}"
    for part in ("put", "cycle"):
        out[f"evict.flatness_{part}"] = r(f"{big}.scheduler_{part}", f"{small}.scheduler_{part}")
    return out


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


def report(b: Bench, meta: dict[str, Any], overhead: float) -> dict[str, float]:
    f = b.figures
    sizes = b.config.evict_sizes
    rr = ratios(f, sizes)
    print(f"prioritize core benchmark, {meta['date']}")
    print(f"{meta['python']} on {meta['platform']}, {meta['cpus']} CPUs, load {meta['load']}")
    print(f"prioritize from {meta['source']}")
    print(
        f"{b.config.repeat} timed runs after 1 warm-up per case; ns per op, median (min); "
        f"gc {'on' if b.config.keep_gc else 'off'} inside timed loops;\n"
        "ratio = median over rounds of case / baseline timed in the same round; "
        "min ratio = min / min\n"
    )

    def row(key: str, ratio: str = "", note: str = "") -> list[str]:
        mins = rr.get(f"{ratio}.min")
        return [
            f[key].name,
            ns(f[key].median),
            ns(f[key].min),
            f"{rr[ratio]:.2f}× heapq" if ratio in rr else ratio,
            "" if mins is None else f"{mins:.2f}×",
            note,
        ]

    print(f"1. Uncontended: submit + release, seats free, nothing waiting ({CAPACITY} seats)")
    table(
        ["case", "median", "min", "ratio", "min ratio", ""],
        [
            row("uncontended.scheduler", "uncontended.scheduler/heapq"),
            row("uncontended.heapq", "1.00"),
            row("uncontended.ticket", "", "context: tickets are made outside the loop"),
            row("uncontended.scheduler_ticket", "", "context"),
            row("uncontended.loop", "", "context: included in every row"),
        ],
    )
    targets = {"strict": 3.0, "weighted": 4.0}
    print(
        f"\n2. Dispatch, steady state: {CAPACITY} seats held, "
        f"{b.config.dispatch_waiters:,} waiting, 5 levels, {FLOWS} flows; op = release + submit"
    )
    rows = [row("dispatch.heapq", "1.00")]
    for key, _, _, _ in DISPATCH_CASES:
        value = rr[f"dispatch.{key}/heapq"]
        target = targets.get(key)
        note = verdict(value, target) if target else ""
        rows.append(row(f"dispatch.{key}", f"dispatch.{key}/heapq", note))
    rows.append(row("dispatch.harness", "", "included in the scheduler rows"))
    table(["case", "median", "min", "ratio", "min ratio", "target (on ratio)"], rows)

    print(
        f"\n3. Put when full ({CAPACITY} seats held, queue bound N = N waiting, "
        "90 % bulk); ns per op"
    )
    rows = []
    for size in sizes:
        key = f"evict.{size}"
        rows.append(
            [
                f"{size:,}",
                ns(f[f"{key}.scheduler_put"].median),
                ns(f[f"{key}.seed_put"].median),
                f"{rr[f'{key}.seed/scheduler_put']:,.0f}×",
                ns(f[f"{key}.scheduler_cycle"].median),
                ns(f[f"{key}.seed_cycle"].median),
                f"{rr[f'{key}.seed/scheduler_cycle']:,.0f}×",
                "",
            ]
        )
    table(
        [
            "N",
            "Scheduler put",
            "seed put",
            "seed/Sched",
            "Scheduler cycle",
            "seed cycle",
            "seed/Sched",
            "",
        ],
        rows,
    )
    print(
        f"  flatness Scheduler({max(sizes):,})/Scheduler({min(sizes):,}): "
        f"put {rr['evict.flatness_put']:.2f}, cycle {rr['evict.flatness_cycle']:.2f} "
        f"({verdict(rr['evict.flatness_put'], 1.5)} for put)"
    )
    print(
        f"  put = the evicting submit / put(HIGH) alone, {ns(overhead)} ns of per-op clock reads "
        "subtracted;\n  cycle = evicting put + release/get + refill put, no per-op clock reads."
    )
    print(
        f"  seed figures include asyncio: one await of a no-op coroutine costs "
        f"{ns(f['evict.asyncio_await'].median)} ns.\n  ops per timed run: Scheduler "
        f"{b.config.evict_ops:,}; seed "
        + ", ".join(f"{b.config.seed_ops[s]} (N = {s:,})" for s in sizes)
    )
    return rr


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few-second smoke run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write figures as JSON")
    parser.add_argument("--repeat", type=int, help="timed runs per case (default 7, quick 3)")
    parser.add_argument("--gc", action="store_true", help="leave the garbage collector on")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    if args.repeat is not None:
        config = dataclasses.replace(config, repeat=max(1, args.repeat))
    if args.gc:
        config = dataclasses.replace(config, keep_gc=True)
    meta = metadata()
    bench = Bench(config)
    try:
        bench_uncontended(bench)
        bench_dispatch(bench)
        overhead = bench_evict(bench)
    finally:
        bench.loop.close()
    rr = report(bench, meta, overhead)
    if args.json is not None:
        doc = {
            "meta": {**meta, "quick": args.quick, "repeat": config.repeat, "gc": config.keep_gc},
            "clock_overhead_ns": round(overhead, 1),
            "figures": {k: {"name": v.name, **v.as_json()} for k, v in bench.figures.items()},
            "ratios": {k: round(v, 3) for k, v in rr.items()},
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
