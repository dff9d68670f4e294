"""SeatGate, the seats behind process gates: waiters of threads and event loops on one lock."""

from __future__ import annotations

import asyncio
import random
import signal
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prioritize import DEFAULT_LEVELS, GatePolicy, LevelPolicy, Reason, Rejected
from prioritize.process._seats import Seat, SeatGate

from .children import eventually, in_thread

NORMAL = DEFAULT_LEVELS["normal"]
BULK = DEFAULT_LEVELS["bulk"]


def test_release_gives_a_seat_back_once() -> None:
    gate = SeatGate(GatePolicy(capacity=1))
    seat = gate.acquire(NORMAL)
    assert gate.release(seat) is True
    assert gate.release(seat) is False  # the watcher and the caller may both see the exit
    assert gate.stats().in_use == 0
    assert repr(gate) == "<SeatGate gate 0/1 seats, 0 waiting>"


def test_a_thread_interrupted_while_it_waits_leaves_the_queue() -> None:
    gate = SeatGate(GatePolicy(capacity=1))
    holder = gate.acquire(NORMAL)
    main = threading.get_ident()

    def interrupt_when_queued() -> None:
        eventually(lambda: gate.stats().waiting == 1, "the main thread waits")
        signal.pthread_kill(main, signal.SIGINT)  # Ctrl-C, delivered to the waiting thread

    thread, _ = in_thread(interrupt_when_queued)
    with pytest.raises(KeyboardInterrupt):
        gate.acquire(NORMAL)
    thread.join()
    assert gate.stats().waiting == 0
    assert gate.stats().level("normal").cancelled == 1
    gate.release(holder)
    assert gate.stats().in_use == 0


def test_a_grant_to_a_waiter_whose_loop_has_closed_is_given_back() -> None:
    gate = SeatGate(GatePolicy(capacity=1))
    holder = gate.acquire(NORMAL)
    loop = asyncio.new_event_loop()
    task = loop.create_task(gate.acquire_async(NORMAL))
    loop.run_until_complete(asyncio.sleep(0))  # the task submits, then waits
    assert gate.stats().waiting == 1
    loop.close()  # with the task still waiting: its wake-up can never be delivered
    gate.release(holder)
    assert gate.stats().in_use == 0  # not held by a waiter that will never run
    again = gate.acquire(NORMAL)
    assert again.state.value == "granted"
    del task


def test_a_thread_past_max_wait_sheds_an_overdue_coroutine_too() -> None:
    gate = SeatGate(GatePolicy(capacity=1, levels={"bulk": LevelPolicy(max_wait=0.02)}))
    holder = gate.acquire(NORMAL)

    async def wait_in_a_loop() -> Reason:
        try:
            await gate.acquire_async(BULK)
        except Rejected as shed:
            return shed.reason
        raise AssertionError("granted")

    thread, outcome = in_thread(lambda: asyncio.run(wait_in_a_loop()))
    with pytest.raises(Rejected) as shed:
        gate.acquire(BULK)
    thread.join()
    assert shed.value.reason is Reason.TIMEOUT
    assert outcome == [Reason.TIMEOUT]
    gate.release(holder)


@settings(max_examples=20, deadline=None)
@given(
    capacity=st.integers(1, 3),
    workers=st.integers(2, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_threads_and_loops_never_hold_more_than_capacity(
    capacity: int, workers: int, seed: int
) -> None:
    gate = SeatGate(GatePolicy(capacity=capacity, levels={"bulk": LevelPolicy(max=1)}))
    held: list[Seat] = []
    lock = threading.Lock()
    peak = [0, 0]  # most seats held at once, most bulk seats

    def hold(seat: Seat) -> None:
        with lock:
            held.append(seat)
            peak[0] = max(peak[0], len(held))
            peak[1] = max(peak[1], sum(s.level is BULK for s in held))
        with lock:
            held.remove(seat)
        assert gate.release(seat)

    def thread_worker(rng: random.Random) -> None:
        for _ in range(20):
            hold(gate.acquire(rng.choice([NORMAL, BULK])))

    async def loop_worker(rng: random.Random) -> None:
        for _ in range(20):
            hold(await gate.acquire_async(rng.choice([NORMAL, BULK])))
            await asyncio.sleep(0)

    rngs = [random.Random(seed + i) for i in range(workers)]
    started = [in_thread(lambda r=r: thread_worker(r)) for r in rngs[1:]]
    asyncio.run(loop_worker(rngs[0]))
    for thread, outcome in started:
        thread.join()
        assert outcome == [None]
    assert peak[0] <= capacity
    assert peak[1] <= 1
    assert gate.stats().in_use == 0
    assert gate.stats().waiting == 0
