"""ThreadPriorityQueue: the same order and shedding under one lock, hammered by threads."""

from __future__ import annotations

import queue
import random
import threading
from collections import Counter

import pytest

from prioritize import GatePolicy, LevelPolicy, Reason
from prioritize.queues import QueueClosed, ThreadPriorityQueue
from prioritize.testing import VirtualClock

from .queue_helpers import ReferenceQueue, ShedLog

LEVELS = ["critical", "high", "normal", "low", "bulk"]


class LockedShedLog(ShedLog):
    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def __call__(self, item: object, rejected: object) -> None:
        with self.lock:
            super().__call__(item, rejected)  # type: ignore[arg-type]


def test_get_follows_the_schedulers_order() -> None:
    rng = random.Random(2)
    policy = GatePolicy(
        capacity=2,
        order="weighted",
        queue=10_000,
        levels={"critical": LevelPolicy(weight=5), "bulk": LevelPolicy(weight=2)},
    )
    q: ThreadPriorityQueue[int] = ThreadPriorityQueue(policy, on_shed=ShedLog())
    ref = ReferenceQueue(policy)
    for i in range(2000):
        if rng.random() < 0.55:
            level, flow = rng.choice(LEVELS), rng.choice(["a", "b", None])
            assert q.put(i, level, flow)
            ref.put(i, level, flow)
        elif not q.empty():
            assert q.get_nowait() == ref.take()
    while not q.empty():
        assert q.get() == ref.take()
    q.close()


def test_eviction_and_refusal_go_to_on_shed() -> None:
    log = ShedLog()
    q: ThreadPriorityQueue[str] = ThreadPriorityQueue(GatePolicy(capacity=1, queue=2), on_shed=log)
    assert q.put("b1", "bulk")
    assert q.put("l1", "low")
    assert q.put("c1", "critical")
    assert q.put_nowait("b2", "bulk") is False
    assert log.reasons() == [("b1", Reason.EVICTED), ("b2", Reason.QUEUE_FULL)]
    assert q.qsize("low") == 1
    assert [q.get(), q.get()] == ["c1", "l1"]
    q.close()


def test_expiry_follows_the_injected_clock_on_every_call() -> None:
    clock = VirtualClock(100.0)
    log = ShedLog(clock)
    policy = GatePolicy(capacity=1, levels={"bulk": LevelPolicy(max_wait=10)})
    q: ThreadPriorityQueue[str] = ThreadPriorityQueue(policy, on_shed=log, clock=clock)
    q.put("b1", "bulk")
    clock.advance(6)
    q.put("b2", "bulk")
    q.put("n1", "normal")
    clock.advance(4)
    assert q.get_nowait() == "n1"  # each call first sheds what is overdue
    assert log.reasons() == [("b1", Reason.TIMEOUT)]
    assert log.times == [110.0]
    clock.advance(6)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    assert log.reasons()[-1] == ("b2", Reason.TIMEOUT)
    q.close()


def test_the_timer_thread_sheds_items_nobody_asks_for() -> None:
    shed = threading.Event()
    policy = GatePolicy(capacity=1, levels={"bulk": LevelPolicy(max_wait=0.01)})
    got: list[tuple[str, Reason]] = []

    def on_shed(item: str, rejected: object) -> None:
        got.append((item, rejected.reason))  # type: ignore[attr-defined]
        shed.set()

    q: ThreadPriorityQueue[str] = ThreadPriorityQueue(policy, on_shed=on_shed)
    q.put("b1", "bulk")
    assert shed.wait(timeout=60)  # a bound against a hang, not a timing assumption
    assert got == [("b1", Reason.TIMEOUT)]
    assert q.qsize() == 0
    q.join()
    q.close()


def test_a_blocked_get_returns_the_next_put() -> None:
    q: ThreadPriorityQueue[str] = ThreadPriorityQueue(GatePolicy(capacity=1), on_shed=ShedLog())
    got: list[str] = []
    consumer = threading.Thread(target=lambda: got.append(q.get()))
    consumer.start()
    q.put("x", "bulk")
    consumer.join()
    assert got == ["x"]
    q.close()


def test_close_releases_blocked_consumers() -> None:
    q: ThreadPriorityQueue[str] = ThreadPriorityQueue(GatePolicy(capacity=1), on_shed=ShedLog())
    errors: list[BaseException] = []
    blocked = threading.Barrier(4)

    def consumer() -> None:
        blocked.wait()
        try:
            q.get()
        except QueueClosed as exc:
            errors.append(exc)

    threads = [threading.Thread(target=consumer) for _ in range(3)]
    for t in threads:
        t.start()
    blocked.wait()
    q.close()
    for t in threads:
        t.join()
    assert len(errors) == 3
    assert q.put("late") is False


def test_eight_threads_hammering_lose_and_duplicate_nothing() -> None:
    """4 producers and 4 consumers; then every item is got or shed, exactly once."""
    per_producer = 3000
    policy = GatePolicy(
        capacity=4,
        queue=300,
        order="weighted",
        levels={"bulk": LevelPolicy(queue=150, max_wait=0.05), "low": LevelPolicy(max_wait=0.2)},
    )
    log = LockedShedLog()
    q: ThreadPriorityQueue[int] = ThreadPriorityQueue(policy, on_shed=log)
    got: list[list[int]] = [[] for _ in range(4)]
    start = threading.Barrier(8)

    def producer(p: int) -> None:
        rng = random.Random(p)
        start.wait()
        for i in range(per_producer):
            q.put(p * per_producer + i, rng.choice(LEVELS), rng.randrange(8))

    def consumer(c: int) -> None:
        start.wait()
        while True:
            try:
                got[c].append(q.get())  # blocks; close() releases it
            except QueueClosed:
                return
            q.task_done()

    producers = [threading.Thread(target=producer, args=(p,)) for p in range(4)]
    consumers = [threading.Thread(target=consumer, args=(c,)) for c in range(4)]
    for t in producers + consumers:
        t.start()
    for t in producers:
        t.join()
    q.close()
    for t in consumers:
        t.join()
    q.join()
    everything = [item for items in got for item in items] + log.items
    assert Counter(everything) == Counter(range(4 * per_producer))
    assert q.qsize() == 0


class Gatekeeper:
    """A thread handler that records work in progress per level and blocks on demand."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.running: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.done: list[str] = []
        self.hold = {"bulk"}

    def __call__(self, item: str) -> None:
        level = item.rstrip("0123456789")
        with self.cond:
            self.running[level] += 1
            self.peak[level] = max(self.peak[level], self.running[level])
            self.cond.notify_all()
            self.cond.wait_for(lambda: level not in self.hold)
            self.running[level] -= 1
            self.done.append(item)
            self.cond.notify_all()


def test_serve_threads_respect_a_levels_max_across_workers() -> None:
    policy = GatePolicy(capacity=3, levels={"bulk": LevelPolicy(max=1)})
    q: ThreadPriorityQueue[str] = ThreadPriorityQueue(policy, on_shed=ShedLog())
    g = Gatekeeper()
    for i in range(3):
        q.put(f"bulk{i}", "bulk")
    for i in range(4):
        q.put(f"normal{i}", "normal")
    server = threading.Thread(target=q.serve, args=(g,))
    server.start()
    with g.cond:
        # every normal item is done while one bulk item is held, and only one
        assert g.cond.wait_for(lambda: len(g.done) == 4, timeout=60)
        assert g.running["bulk"] == 1
        assert q.qsize("bulk") == 2
        g.hold.clear()
        g.cond.notify_all()
    q.join()
    q.close()
    server.join()
    assert g.peak["bulk"] == 1
    assert sorted(g.done) == [f"bulk{i}" for i in range(3)] + [f"normal{i}" for i in range(4)]


def test_a_thread_handler_error_propagates_from_serve() -> None:
    q: ThreadPriorityQueue[str] = ThreadPriorityQueue(GatePolicy(capacity=2), on_shed=ShedLog())

    def handler(item: str) -> None:
        if item == "bad":
            raise KeyError(item)

    q.put("bad", "critical")
    for i in range(5):
        q.put(f"later{i}", "bulk")
    with pytest.raises(KeyError, match="bad"):
        q.serve(handler, concurrency=1)
    assert q.qsize() == 5  # the rest stays queued, and get() works again
    assert q.get_nowait() == "later0"
    q.close()


def test_after_a_handler_error_no_worker_takes_another_item() -> None:
    q: ThreadPriorityQueue[str] = ThreadPriorityQueue(GatePolicy(capacity=2), on_shed=ShedLog())
    handled: list[str] = []
    lock = threading.Lock()

    def handler(item: str) -> None:
        if item == "bad":
            raise KeyError(item)
        with lock:
            handled.append(item)

    q.put("bad", "critical")
    for i in range(50):
        q.put(f"bulk{i}", "bulk")
    with pytest.raises(KeyError, match="bad"):
        q.serve(handler, concurrency=2)
    # the other worker may have finished a few before it saw the error; then it stopped
    assert handled == [f"bulk{i}" for i in range(len(handled))]
    assert q.qsize() == 50 - len(handled)
    assert q.get_nowait() == f"bulk{len(handled)}"
    q.close()


def test_serving_threads_with_producers_conserve_every_item() -> None:
    policy = GatePolicy(capacity=4, queue=100, levels={"bulk": LevelPolicy(max=1)})
    log = LockedShedLog()
    q: ThreadPriorityQueue[int] = ThreadPriorityQueue(policy, on_shed=log)
    handled: list[int] = []
    lock = threading.Lock()

    def handler(item: int) -> None:
        with lock:
            handled.append(item)

    server = threading.Thread(target=q.serve, args=(handler,))
    server.start()

    def producer(p: int) -> None:
        rng = random.Random(p)
        for i in range(2000):
            q.put(p * 2000 + i, rng.choice(LEVELS))

    producers = [threading.Thread(target=producer, args=(p,)) for p in range(4)]
    for t in producers:
        t.start()
    for t in producers:
        t.join()
    q.join()
    q.close()
    server.join()
    assert Counter(handled + log.items) == Counter(range(8000))


def test_an_on_shed_error_on_the_timer_thread_is_reported_not_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reported: list[BaseException | None] = []
    seen = threading.Event()

    def excepthook(args: threading.ExceptHookArgs) -> None:
        reported.append(args.exc_value)
        seen.set()

    monkeypatch.setattr(threading, "excepthook", excepthook)

    def on_shed(item: str, rejected: object) -> None:
        raise RuntimeError(f"cannot shed {item}")

    policy = GatePolicy(capacity=1, levels={"bulk": LevelPolicy(max_wait=0.01)})
    q: ThreadPriorityQueue[str] = ThreadPriorityQueue(policy, on_shed=on_shed)
    q.put("b1", "bulk")
    assert seen.wait(timeout=60)  # a bound against a hang, not a timing assumption
    assert [str(e) for e in reported] == ["cannot shed b1"]
    q.close()
    with pytest.raises(RuntimeError, match="cannot shed b2"):
        q.put("b2")  # refused after close: on_shed's error comes out of put


def test_serve_and_get_do_not_mix_in_threads() -> None:
    q: ThreadPriorityQueue[str] = ThreadPriorityQueue(GatePolicy(capacity=1), on_shed=ShedLog())
    started = threading.Event()
    release = threading.Event()

    def handler(item: str) -> None:
        started.set()
        release.wait()

    q.put("x")
    server = threading.Thread(target=q.serve, args=(handler,))
    server.start()
    assert started.wait(timeout=60)
    with pytest.raises(RuntimeError, match="being served by serve"):
        q.get_nowait()
    with pytest.raises(RuntimeError, match="already being served"):
        q.serve(handler)
    release.set()
    q.close()
    server.join()
    with pytest.raises(ValueError, match="concurrency = -1"):
        q.serve(handler, concurrency=-1)
    assert q.is_closed
    assert repr(q) == "<ThreadPriorityQueue gate 0 queued, closed>"
