"""Queue benchmark: PriorityQueue and ThreadPriorityQueue beside asyncio's, queue's and the seed's.

Run it with ``.venv/bin/python bench/queues.py``; ``--quick`` is a smoke run
of a few seconds, ``--json PATH`` also writes every figure.

1. **Steady put + get.** N items waiting (N = 1,000, 10,000 and 100,000),
   levels uniform at random over the five, no flows. One op puts one item of
   a random level and gets one, so the queue stays at N. Pairs, each on the
   same inputs:

   * `PriorityQueue` ``put_nowait`` + ``get_nowait`` beside
     ``asyncio.PriorityQueue`` ``put_nowait((rank, seq, item))`` + ``get_nowait()``
     (the tuple is built in the loop: it is what a caller of the stdlib queue
     must do, as ours builds its ticket);
   * `ThreadPriorityQueue` ``put`` + ``get`` beside ``queue.PriorityQueue``
     ``put`` + ``get`` (each takes its lock twice per op);
   * the seed document's ``PriorityTaskQueue`` (kept verbatim in
     ``baselines/seed_priority_task_queue.py``): ``await put(item, priority)``
     + ``await get()``, on the same event loop.

   ``max_wait`` is infinite for our queues here, as the others have none: no
   item times out during a run.
2. **Put when full (eviction).** A queue bounded to N holds N items (90 %
   bulk, 5 % low, 5 % normal). One cycle: put a ``high`` item (full: the
   newest bulk item is evicted and handed to ``on_shed``), get (returns that
   high item), put a bulk item (N - 1 waiting, so it is queued): back to the
   starting state. The evicting put is timed on its own (per-op clock reads,
   their measured cost subtracted) and the whole cycle separately. The seed's
   queue runs the same cycle (its full put scans the list and re-heapifies it,
   O(N)). The stdlib queues cannot evict; their put + get at the same N is in
   section 1.

Method (as bench/core.py): every figure is the median (and min) of
``--repeat`` runs after one warm-up run; the cases of a section run
interleaved, one run of each per round, and a ratio is the median over
rounds of case / baseline timed in the same round. Inputs are built before
each timed loop from a fixed seed. The cyclic garbage collector is off inside
timed loops unless ``--gc`` is given.
"""

from __future__ import annotations

import asyncio
import gc
import queue
import random
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any

from baselines.seed_priority_task_queue import Priority, PriorityTaskQueue
from harness import (
    Bench,
    Figure,
    choose_config,
    metadata,
    ns,
    parse_args,
    table,
    verdict,
    write_json,
)
from prioritize import GatePolicy, LevelPolicy, Rejected
from prioritize.queues import PriorityQueue, ThreadPriorityQueue
from scenarios import EVICT_MIX, LEVELS, SEED, clock_overhead, seed_cycle, seed_fill, seed_put_timed

INF = float("inf")


@dataclass(frozen=True)
class Config:
    """How much work one run does (the harness reads ``repeat`` and ``keep_gc``)."""

    repeat: int
    sizes: tuple[int, ...]
    ops: int
    seed_ops: dict[int, int]
    evict_ops: int
    seed_evict_ops: dict[int, int]
    keep_gc: bool


FULL = Config(
    repeat=7,
    sizes=(1_000, 10_000, 100_000),
    ops=40_000,
    seed_ops={1_000: 8_000, 10_000: 6_000, 100_000: 4_000},
    evict_ops=25_000,
    seed_evict_ops={1_000: 200, 10_000: 30, 100_000: 4},
    keep_gc=False,
)
QUICK = Config(
    repeat=2,
    sizes=(1_000, 10_000, 100_000),
    ops=3_000,
    seed_ops={1_000: 500, 10_000: 500, 100_000: 300},
    evict_ops=3_000,
    seed_evict_ops={1_000: 10, 10_000: 2, 100_000: 1},
    keep_gc=False,
)


def policy(size: int) -> GatePolicy:
    """Five levels, no time limit; a bound of ``size`` items."""
    return GatePolicy(
        capacity=4,
        queue=size,
        levels={name: LevelPolicy(max_wait=INF) for name in LEVELS},
    )


def ignore(item: object, rejected: Rejected) -> None:
    """The benchmark's ``on_shed``: called for every evicted item, does nothing with it."""


class Evictions:
    """``on_shed`` for the eviction case: counts, and keeps the first rejection to check."""

    def __init__(self) -> None:
        self.count = 0
        self.first: Rejected | None = None

    def __call__(self, item: object, rejected: Rejected) -> None:
        if self.first is None:
            self.first = rejected
        self.count += 1


# -- timed loops: locals bound first, inputs pre-built ------------------------------------


async def loop_ours_async(q: PriorityQueue[int], levels: list[str]) -> int:
    put = q.put_nowait
    get = q.get_nowait
    t0 = perf_counter_ns()
    for i, level in enumerate(levels):
        put(i, level)
        get()
    return perf_counter_ns() - t0


async def loop_asyncio(
    q: asyncio.PriorityQueue[tuple[int, int, int]], ranks: list[int], seq: int
) -> int:
    put = q.put_nowait
    get = q.get_nowait
    t0 = perf_counter_ns()
    for i, rank in enumerate(ranks):
        put((rank, seq + i, i))
        get()
    return perf_counter_ns() - t0


def loop_ours_threads(q: ThreadPriorityQueue[int], levels: list[str]) -> None:
    put = q.put
    get = q.get
    for i, level in enumerate(levels):
        put(i, level)
        get()


def loop_queue(q: queue.PriorityQueue[tuple[int, int, int]], ranks: list[int], seq: int) -> None:
    put = q.put
    get = q.get
    for i, rank in enumerate(ranks):
        put((rank, seq + i, i))
        get()


async def loop_seed(q: PriorityTaskQueue, priorities: list[Priority]) -> int:
    put = q.put
    get = q.get
    t0 = perf_counter_ns()
    for i, priority in enumerate(priorities):
        await put(i, priority)
        await get()
    return perf_counter_ns() - t0


async def loop_evict_async(q: PriorityQueue[int], n: int, timed: bool) -> int:
    put = q.put_nowait
    get = q.get_nowait
    clock = perf_counter_ns
    total = 0
    t0 = clock()
    for i in range(n):
        if timed:
            t1 = clock()
            put(i, "high")  # full: evicts the newest bulk item
            total += clock() - t1
        else:
            put(i, "high")
        get()  # the high item
        put(i, "bulk")  # N - 1 waiting: queued
    return total if timed else clock() - t0


def loop_evict_threads(q: ThreadPriorityQueue[int], n: int, timed: bool) -> int:
    put = q.put
    get = q.get
    clock = perf_counter_ns
    total = 0
    t0 = clock()
    for i in range(n):
        if timed:
            t1 = clock()
            put(i, "high")
            total += clock() - t1
        else:
            put(i, "high")
        get()
        put(i, "bulk")
    return total if timed else clock() - t0


# -- 1. steady put + get ---------------------------------------------------------------


def bench_steady(b: Bench, size: int) -> None:
    n, rng = b.config.ops, random.Random(SEED + size)
    fill = [rng.randrange(5) for _ in range(size)]

    def draw(count: int) -> list[int]:
        return [rng.randrange(5) for _ in range(count)]

    ours: PriorityQueue[int] = PriorityQueue(policy(2 * size), on_shed=ignore)

    async def fill_ours() -> None:
        for i, rank in enumerate(fill):
            ours.put_nowait(i, LEVELS[rank])

    b.loop.run_until_complete(fill_ours())
    stdlib: asyncio.PriorityQueue[tuple[int, int, int]] = asyncio.PriorityQueue()
    for i, rank in enumerate(fill):
        stdlib.put_nowait((rank, i, i))
    threads: ThreadPriorityQueue[int] = ThreadPriorityQueue(policy(2 * size), on_shed=ignore)
    for i, rank in enumerate(fill):
        threads.put(i, LEVELS[rank])
    locked: queue.PriorityQueue[tuple[int, int, int]] = queue.PriorityQueue()
    for i, rank in enumerate(fill):
        locked.put((rank, i, i))
    seed = PriorityTaskQueue(max_size=2 * size)
    b.loop.run_until_complete(seed_fill(seed, fill))

    def steady(q: Any) -> None:
        assert q.qsize() == size, "the queue did not stay at N"

    def run_ours(i: int) -> float:
        levels = [LEVELS[r] for r in draw(n)]
        result = b.run_async(loop_ours_async(ours, levels)) / n
        steady(ours)
        return result

    def run_asyncio(i: int) -> float:
        result = b.run_async(loop_asyncio(stdlib, draw(n), (i + 1) * 10_000_000)) / n
        steady(stdlib)
        return result

    def run_threads(i: int) -> float:
        levels = [LEVELS[r] for r in draw(n)]
        result = b.time(loop_ours_threads, threads, levels) / n
        steady(threads)
        return result

    def run_queue(i: int) -> float:
        result = b.time(loop_queue, locked, draw(n), (i + 1) * 10_000_000) / n
        steady(locked)
        return result

    seed_n = b.config.seed_ops[size]

    def run_seed(i: int) -> float:
        result = b.run_async(loop_seed(seed, [Priority(r) for r in draw(seed_n)])) / seed_n
        assert len(seed.queue) == size
        return result

    key = f"steady.{size}"
    b.measure(f"{key}.ours_async", "PriorityQueue", n, run_ours)
    b.measure(f"{key}.asyncio", "asyncio.PriorityQueue", n, run_asyncio)
    b.measure(f"{key}.ours_threads", "ThreadPriorityQueue", n, run_threads)
    b.measure(f"{key}.queue", "queue.PriorityQueue", n, run_queue)
    b.measure(f"{key}.seed", "seed PriorityTaskQueue", seed_n, run_seed)


# -- 2. put when full ------------------------------------------------------------------


def bench_evict(b: Bench, size: int, overhead: float) -> None:
    n, rng = b.config.evict_ops, random.Random(SEED)
    fill = [rng.choice(EVICT_MIX) for _ in range(size)]
    evicted = Evictions()
    aq: PriorityQueue[int] = PriorityQueue(policy(size), on_shed=evicted)

    async def fill_async() -> None:
        for i, rank in enumerate(fill):
            aq.put_nowait(-i - 1, LEVELS[rank])
        # one untimed cycle, checking the queue behaves as the benchmark assumes
        assert aq.put_nowait(0, "high")
        assert evicted.count == 1
        assert evicted.first is not None
        assert evicted.first.reason.value == "evicted"
        assert aq.get_nowait() == 0
        assert aq.put_nowait(0, "bulk")
        assert aq.qsize() == size

    b.loop.run_until_complete(fill_async())
    tq: ThreadPriorityQueue[int] = ThreadPriorityQueue(policy(size), on_shed=ignore)
    for i, rank in enumerate(fill):
        tq.put(-i - 1, LEVELS[rank])
    seed = PriorityTaskQueue(max_size=size)
    b.loop.run_until_complete(seed_fill(seed, fill))

    def full(q: Any) -> None:
        assert q.qsize() == size

    def run_async(timed: bool) -> Any:
        def run(i: int) -> float:
            before = evicted.count
            result = b.run_async(loop_evict_async(aq, n, timed)) / n
            assert evicted.count - before == n, "every put(high) evicts one bulk item"
            full(aq)
            return result - overhead if timed else result

        return run

    def run_threads(timed: bool) -> Any:
        def run(i: int) -> float:
            result = b.call(loop_evict_threads, tq, n, timed) / n
            full(tq)
            return result - overhead if timed else result

        return run

    seed_n = b.config.seed_evict_ops[size]

    def run_seed_put(i: int) -> float:
        result = b.run_async(seed_put_timed(seed, seed_n)) / seed_n - overhead
        assert len(seed.queue) == size
        return result

    def run_seed_cycle(i: int) -> float:
        result = b.run_async(seed_cycle(seed, seed_n)) / seed_n
        assert len(seed.queue) == size
        return result

    key = f"evict.{size}"
    b.measure(f"{key}.ours_async_put", "PriorityQueue evicting put", n, run_async(True))
    b.measure(f"{key}.ours_async_cycle", "PriorityQueue cycle", n, run_async(False))
    b.measure(f"{key}.ours_threads_put", "ThreadPriorityQueue evicting put", n, run_threads(True))
    b.measure(f"{key}.ours_threads_cycle", "ThreadPriorityQueue cycle", n, run_threads(False))
    b.measure(f"{key}.seed_put", "seed put(HIGH)", seed_n, run_seed_put)
    b.measure(f"{key}.seed_cycle", "seed cycle", seed_n, run_seed_cycle)


# -- report ------------------------------------------------------------------------------


def ratio(f: dict[str, Figure], a: str, b: str) -> float:
    return statistics.median(x / y for x, y in zip(f[a].runs, f[b].runs, strict=True))


def ratios(f: dict[str, Figure], sizes: Sequence[int]) -> dict[str, float]:
    out: dict[str, float] = {}
    for size in sizes:
        s = f"steady.{size}"
        out[f"{s}.ours_async/asyncio"] = ratio(f, f"{s}.ours_async", f"{s}.asyncio")
        out[f"{s}.ours_threads/queue"] = ratio(f, f"{s}.ours_threads", f"{s}.queue")
        out[f"{s}.seed/ours_async"] = ratio(f, f"{s}.seed", f"{s}.ours_async")
        e = f"evict.{size}"
        for part in ("put", "cycle"):
            out[f"{e}.seed/ours_async_{part}"] = ratio(
                f, f"{e}.seed_{part}", f"{e}.ours_async_{part}"
            )
            out[f"{e}.seed/ours_threads_{part}"] = ratio(
                f, f"{e}.seed_{part}", f"{e}.ours_threads_{part}"
            )
    big, small = max(sizes), min(sizes)
    for case in ("ours_async", "ours_threads", "asyncio", "queue", "seed"):
        out[f"steady.flatness.{case}"] = ratio(f, f"steady.{big}.{case}", f"steady.{small}.{case}")
    for case in ("ours_async_put", "ours_async_cycle", "ours_threads_put", "ours_threads_cycle"):
        out[f"evict.flatness.{case}"] = ratio(f, f"evict.{big}.{case}", f"evict.{small}.{case}")
    return out


def report(b: Bench, meta: dict[str, Any], overhead: float) -> dict[str, float]:
    f, sizes = b.figures, b.config.sizes
    rr = ratios(f, sizes)
    print(f"prioritize queue benchmark, {meta['date']}")
    print(f"{meta['python']} on {meta['platform']}, {meta['cpus']} CPUs, load {meta['load']}")
    print(f"prioritize from {meta['source']}")
    print(
        f"{b.config.repeat} timed runs after 1 warm-up per case; ns per op, median; gc "
        f"{'on' if b.config.keep_gc else 'off'} inside timed loops;\n"
        "ratio = median over rounds of case / baseline timed in the same round\n"
    )
    print("1. Steady put + get, N waiting, 5 levels uniform; ns per op (one put + one get)")
    rows = []
    for size in sizes:
        s = f"steady.{size}"
        rows.append(
            [
                f"{size:,}",
                ns(f[f"{s}.ours_async"].median),
                ns(f[f"{s}.asyncio"].median),
                f"{rr[f'{s}.ours_async/asyncio']:.2f}×",
                ns(f[f"{s}.ours_threads"].median),
                ns(f[f"{s}.queue"].median),
                f"{rr[f'{s}.ours_threads/queue']:.2f}×",
                ns(f[f"{s}.seed"].median),
                f"{rr[f'{s}.seed/ours_async']:.1f}×",
                "",
            ]
        )
    table(
        ["N", "PriorityQueue", "asyncio.PQ", "ours/asyncio", "ThreadPQ", "queue.PQ",
         "ours/queue", "seed", "seed/ours", ""],
        rows,
    )  # fmt: skip
    flat = {k.split(".")[-1]: v for k, v in rr.items() if k.startswith("steady.flatness")}
    print(
        f"  flatness ({max(sizes):,} / {min(sizes):,}): "
        + ", ".join(f"{case} {value:.2f}" for case, value in flat.items())
    )
    print(
        "  target: faster than each baseline (ratio ≤ 1): "
        + ", ".join(
            f"{size:,} {verdict(rr[f'steady.{size}.ours_async/asyncio'], 1.0)} vs asyncio, "
            f"{verdict(rr[f'steady.{size}.ours_threads/queue'], 1.0)} vs queue"
            for size in sizes
        )
    )
    print(
        f"\n2. Put when full, N waiting (90 % bulk); ns per op, {ns(overhead)} ns clock subtracted"
    )
    rows = []
    for size in sizes:
        e = f"evict.{size}"
        rows.append(
            [
                f"{size:,}",
                ns(f[f"{e}.ours_async_put"].median),
                ns(f[f"{e}.ours_threads_put"].median),
                ns(f[f"{e}.seed_put"].median),
                f"{rr[f'{e}.seed/ours_async_put']:,.0f}×",
                ns(f[f"{e}.ours_async_cycle"].median),
                ns(f[f"{e}.ours_threads_cycle"].median),
                ns(f[f"{e}.seed_cycle"].median),
                f"{rr[f'{e}.seed/ours_async_cycle']:,.0f}×",
                "",
            ]
        )
    table(
        ["N", "PQ put", "ThreadPQ put", "seed put", "seed/PQ", "PQ cycle", "ThreadPQ cycle",
         "seed cycle", "seed/PQ", ""],
        rows,
    )  # fmt: skip
    flat = {k.split(".")[-1]: v for k, v in rr.items() if k.startswith("evict.flatness")}
    print(
        f"  flatness ({max(sizes):,} / {min(sizes):,}): "
        + ", ".join(f"{case} {value:.2f}" for case, value in flat.items())
        + f" ({verdict(flat['ours_async_put'], 1.5)} for PriorityQueue put)"
    )
    print(
        "  cycle = evicting put + get + refill put; the stdlib queues cannot evict: "
        "their put + get at N is in section 1.\n  ops per timed run: ours "
        f"{b.config.evict_ops:,}; seed "
        + ", ".join(f"{b.config.seed_evict_ops[s]} (N = {s:,})" for s in sizes)
    )
    return rr


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__.split("\n\n")[0], argv)
    config = choose_config(args, FULL, QUICK)
    meta = metadata()
    bench = Bench(config)  # type: ignore[arg-type]
    overhead = clock_overhead(50_000)
    try:
        for size in config.sizes:
            bench_steady(bench, size)
        gc.freeze()  # the filled queues: gc.collect() before each run skips them
        bench.run_pending()
        for size in config.sizes:
            bench_evict(bench, size, overhead)
        gc.freeze()
        bench.run_pending()
    finally:
        bench.loop.close()
    rr = report(bench, meta, overhead)
    write_json(args, meta, bench, overhead, rr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
