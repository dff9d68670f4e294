"""The states and timed loops of `bench/core.py`, shared with `bench/profile_core.py`.

Every loop binds what it calls to locals first and takes its inputs pre-built,
so a timed loop runs the operations under test, one ``for`` and the
advance of ``now`` by `STEP`, nothing else.
"""

from __future__ import annotations

import random
import statistics
from collections import deque
from collections.abc import Sequence
from time import perf_counter_ns
from typing import Any

from baselines.seed_priority_task_queue import Priority, PriorityTaskQueue
from prioritize.core import GatePolicy, LevelPolicy, Scheduler, Ticket, TicketState

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


DISPATCH_CASES = (
    ("strict", "strict", (), ()),
    ("weighted", "weighted 8/4/2/1/1", (8.0, 4.0, 2.0, 1.0, 1.0), ()),
    ("strict_min", "strict, min 20/15/10/5 %", (), ("20%", "15%", "10%", "5%", "0%")),
)


# -- states --------------------------------------------------------------------------


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


def fill_dispatch(s: Scheduler, rng: random.Random, waiters: int) -> deque[Ticket]:
    """Submit random tickets until every seat is held and ``waiters`` wait; return holders."""
    names = flow_names()
    submitted = []
    while s.in_use < CAPACITY or s.waiting < waiters:
        t = s.ticket(rng.randrange(len(LEVELS)), rng.choice(names))
        s.submit(t, 0.0)
        submitted.append(t)
    return deque(t for t in submitted if t.state is TicketState.GRANTED)


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


# -- loops ---------------------------------------------------------------------------


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
