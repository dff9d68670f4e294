"""PriorityQueue.serve: workers pull only when free, and min/max hold across them."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

import pytest

from prioritize import GatePolicy, LevelPolicy, Reason, Scheduler, TicketState
from prioritize.queues import PriorityQueue, QueueClosed

from .queue_helpers import ShedLog, run, settle

LEVELS = ["critical", "high", "normal", "low", "bulk"]


class Handlers:
    """A handler whose calls block until the test finishes them, one by one."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.running: dict[str, asyncio.Event] = {}
        self.done: list[str] = []
        self.peak: dict[str, int] = defaultdict(int)

    async def __call__(self, item: str) -> None:
        self.started.append(item)
        finish = self.running[item] = asyncio.Event()
        level = item.rstrip("0123456789")
        self.peak[level] = max(self.peak[level], self.in_flight(level))
        try:
            await finish.wait()
        finally:
            del self.running[item]
        self.done.append(item)

    def in_flight(self, level: str) -> int:
        return sum(1 for item in self.running if item.rstrip("0123456789") == level)

    async def finish(self, item: str) -> None:
        self.running[item].set()
        await settle()


def test_a_worker_takes_an_item_only_when_it_is_free() -> None:
    async def body() -> None:
        q: PriorityQueue[str] = PriorityQueue(GatePolicy(capacity=2), on_shed=ShedLog())
        h = Handlers()
        serving = asyncio.create_task(q.serve(h))
        await settle()
        for item in ["bulk1", "bulk2", "bulk3"]:
            q.put_nowait(item, "bulk")
        await settle()
        assert h.started == ["bulk1", "bulk2"]
        assert q.qsize() == 1
        q.put_nowait("critical1", "critical")  # no worker free: it waits, and overtakes bulk3
        await settle()
        assert q.qsize() == 2
        await h.finish("bulk1")
        assert h.started == ["bulk1", "bulk2", "critical1"]
        for item in ["bulk2", "critical1"]:
            await h.finish(item)
        await h.finish("bulk3")
        await q.join()
        q.close()
        await serving

    run(body)


def test_a_levels_max_is_a_limit_on_work_in_progress_across_workers() -> None:
    async def body() -> None:
        policy = GatePolicy(capacity=3, levels={"bulk": LevelPolicy(max=1)})
        q: PriorityQueue[str] = PriorityQueue(policy, on_shed=ShedLog())
        h = Handlers()
        serving = asyncio.create_task(q.serve(h))
        await settle()
        for i in range(1, 4):
            q.put_nowait(f"bulk{i}", "bulk")
        q.put_nowait("normal1", "normal")
        await settle()
        assert h.started == ["bulk1", "normal1"]  # a worker stays free: bulk is at its max
        assert q.qsize("bulk") == 2
        await h.finish("normal1")
        assert h.in_flight("bulk") == 1
        await h.finish("bulk1")
        assert h.started[-1] == "bulk2"
        await h.finish("bulk2")
        await h.finish("bulk3")
        assert h.peak["bulk"] == 1
        q.close()
        await serving

    run(body)


def test_a_levels_min_keeps_workers_free_for_it() -> None:
    async def body() -> None:
        policy = GatePolicy(capacity=3, levels={"critical": LevelPolicy(min=1)})
        q: PriorityQueue[str] = PriorityQueue(policy, on_shed=ShedLog())
        h = Handlers()
        serving = asyncio.create_task(q.serve(h, concurrency=3))
        await settle()
        for i in range(1, 5):
            q.put_nowait(f"bulk{i}", "bulk")
        await settle()
        assert h.started == ["bulk1", "bulk2"]  # the third worker is kept for critical
        q.put_nowait("critical1", "critical")
        await settle()
        assert h.started[-1] == "critical1"  # found its worker free: no wait
        for item in ["critical1", "bulk1", "bulk2", "bulk3", "bulk4"]:
            await h.finish(item)
        q.close()
        await serving

    run(body)


def test_percentages_are_resolved_for_the_number_of_workers() -> None:
    async def body() -> None:
        policy = GatePolicy(capacity=10, levels={"bulk": LevelPolicy(max="50%")})
        q: PriorityQueue[str] = PriorityQueue(policy, on_shed=ShedLog())
        h = Handlers()
        serving = asyncio.create_task(q.serve(h, concurrency=4))
        await settle()
        for i in range(1, 5):
            q.put_nowait(f"bulk{i}", "bulk")
        await settle()
        assert h.started == ["bulk1", "bulk2"]  # 50 % of 4 workers, not of 10
        for item in ["bulk1", "bulk2", "bulk3", "bulk4"]:
            await h.finish(item)
        assert h.peak["bulk"] == 2
        q.close()
        await serving

    run(body)


@pytest.mark.parametrize("order", ["strict", "weighted"])
def test_serve_hands_items_to_workers_as_the_scheduler_grants_seats(order: str) -> None:
    rng = random.Random(5)
    policy = GatePolicy(
        capacity=4,
        order=order,
        queue=10_000,
        levels={
            "critical": LevelPolicy(min=1, weight=4),
            "normal": LevelPolicy(max=2, weight=2),
            "bulk": LevelPolicy(max=3),
        },
    )

    async def body() -> None:
        q: PriorityQueue[str] = PriorityQueue(policy, on_shed=ShedLog())
        ref = Scheduler(policy)  # seats = the 4 workers
        held = {}
        h = Handlers()
        serving = asyncio.create_task(q.serve(h))
        await settle()
        for i in range(400):
            if h.running and rng.random() < 0.45:
                item = rng.choice(sorted(h.running))
                granted = ref.release(held.pop(item), 0.0)
                await h.finish(item)
            else:
                level = rng.choice(LEVELS)
                item = f"{level}{i}"
                ticket = ref.ticket(level, rng.choice(["a", "b"]), item)
                granted = ref.submit(ticket, 0.0)
                q.put_nowait(item, level, ticket.flow)
                await settle()
            for t in granted:
                assert t.state is TicketState.GRANTED
                held[t.data] = t
            assert sorted(h.running) == sorted(held)
            assert q.qsize() == ref.waiting
        q.close()
        for item in list(h.running):
            await h.finish(item)
        await serving

    run(body)


def test_serve_marks_items_done_and_returns_once_closed_and_finished() -> None:
    async def body() -> None:
        log = ShedLog()
        q: PriorityQueue[str] = PriorityQueue(GatePolicy(capacity=1), on_shed=log)
        h = Handlers()
        serving = asyncio.create_task(q.serve(h))
        q.put_nowait("normal1")
        q.put_nowait("normal2")
        await settle()
        q.close()  # normal2 was still queued: shed
        assert log.reasons() == [("normal2", Reason.SHUTDOWN)]
        await settle()
        assert not serving.done()  # normal1 is still being handled
        await h.finish("normal1")
        await serving
        await q.join()
        assert h.done == ["normal1"]
        await q.serve(h)  # a closed queue has nothing to serve
        with pytest.raises(QueueClosed):
            q.get_nowait()

    run(body)


def test_a_handler_error_stops_serving_and_keeps_the_queued_items() -> None:
    async def body() -> None:
        q: PriorityQueue[str] = PriorityQueue(GatePolicy(capacity=2), on_shed=ShedLog())
        h = Handlers()

        async def handler(item: str) -> None:
            if item == "bad":
                raise KeyError(item)
            await h(item)

        q.put_nowait("slow", "high")
        q.put_nowait("bad", "normal")
        q.put_nowait("after1", "low")
        q.put_nowait("after2", "bulk")
        with pytest.raises(KeyError, match="bad"):
            await q.serve(handler)
        assert h.started == ["slow"]  # cancelled when bad failed
        assert q.qsize() == 2  # after1 had been granted bad's seat: queued again
        assert [q.get_nowait(), q.get_nowait()] == ["after1", "after2"]

    run(body)


def test_cancelling_serve_keeps_queued_items_and_their_deadlines() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        log = ShedLog(loop.time)
        policy = GatePolicy(capacity=1, levels={"bulk": LevelPolicy(max_wait=10)})
        q: PriorityQueue[str] = PriorityQueue(policy, on_shed=log)
        start = loop.time()
        h = Handlers()
        q.put_nowait("high1", "high")
        q.put_nowait("bulk1", "bulk")
        await asyncio.sleep(4)
        serving = asyncio.create_task(q.serve(h))
        await settle()
        assert h.started == ["high1"]
        await asyncio.sleep(2)
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
        assert q.qsize() == 1
        await asyncio.sleep(3600)
        assert log.reasons() == [("bulk1", Reason.TIMEOUT)]
        assert log.times[0] - start == pytest.approx(10)  # not 10 s after serve moved it
        q.put_nowait("bulk2", "bulk")  # get() works again after serving
        assert await q.get() == "bulk2"

    run(body)


def test_the_deadline_of_an_item_queued_before_serve_started_is_kept() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        log = ShedLog(loop.time)
        policy = GatePolicy(capacity=1, levels={"bulk": LevelPolicy(max_wait=10)})
        q: PriorityQueue[str] = PriorityQueue(policy, on_shed=log)
        start = loop.time()
        h = Handlers()
        q.put_nowait("critical1", "critical")
        q.put_nowait("bulk1", "bulk")
        await asyncio.sleep(6)
        serving = asyncio.create_task(q.serve(h))
        await asyncio.sleep(3600)
        assert h.started == ["critical1"]
        assert log.reasons() == [("bulk1", Reason.TIMEOUT)]
        assert log.times[0] - start == pytest.approx(10)
        q.close()
        await h.finish("critical1")
        await serving

    run(body)


def test_serve_and_get_do_not_mix() -> None:
    async def body() -> None:
        q: PriorityQueue[str] = PriorityQueue(GatePolicy(capacity=1), on_shed=ShedLog())
        consumer = asyncio.create_task(q.get())
        await settle()
        with pytest.raises(RuntimeError, match="get\\(\\) call\\(s\\) wait on it"):
            await q.serve(Handlers())
        consumer.cancel()
        await settle()
        serving = asyncio.create_task(q.serve(Handlers()))
        await settle()
        with pytest.raises(RuntimeError, match="being served by serve"):
            q.get_nowait()
        with pytest.raises(RuntimeError, match="already being served"):
            await q.serve(Handlers())
        q.close()
        await serving
        with pytest.raises(ValueError, match="concurrency = 0: expected a whole number ≥ 1"):
            await q.serve(Handlers(), concurrency=0)

    run(body)
