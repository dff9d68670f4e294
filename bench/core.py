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

import heapq
import random
import statistics
import sys
from collections import deque
from collections.abc import Sequence
from typing import Any

from baselines import heapq_queue
from baselines.seed_priority_task_queue import Priority, PriorityTaskQueue
from harness import (
    Bench,
    Config,
    Figure,
    choose_config,
    metadata,
    ns,
    parse_args,
    table,
    verdict,
    write_json,
)
from prioritize.core import DEFAULT_LEVELS, Ticket, TicketState
from scenarios import (
    CAPACITY,
    DISPATCH_CASES,
    EVICT_MIX,
    FLOWS,
    SEED,
    await_noop,
    clock_overhead,
    fill_dispatch,
    fill_evict,
    flow_names,
    gate,
    loop_dispatch,
    loop_empty,
    loop_evict_cycle,
    loop_evict_timed,
    loop_harness,
    loop_new_ticket,
    loop_scheduler_ticket,
    loop_submit_release,
    seed_cycle,
    seed_fill,
    seed_put_timed,
    start,
)

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


# -- 1. uncontended -------------------------------------------------------------------


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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__.split("\n\n")[0], argv)
    config = choose_config(args, FULL, QUICK)
    meta = metadata()
    bench = Bench(config)
    try:
        bench_uncontended(bench)
        bench_dispatch(bench)
        overhead = bench_evict(bench)
    finally:
        bench.loop.close()
    rr = report(bench, meta, overhead)
    write_json(args, meta, bench, overhead, rr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
