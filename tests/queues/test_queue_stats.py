"""Queue stats: items per level, never the plugs, carried over when serve() starts or stops."""

from __future__ import annotations

import asyncio
import math

from prioritize import GatePolicy, LevelPolicy, Reason
from prioritize.core.stats import BUCKET_BOUNDS, LevelStats
from prioritize.queues import PriorityQueue, ThreadPriorityQueue
from prioritize.queues._state import QueueState
from prioritize.testing import VirtualClock

from .queue_helpers import ShedLog, settle

POLICY = GatePolicy(
    capacity=2,
    levels={"high": LevelPolicy(max_wait=10), "low": LevelPolicy(max_wait=math.inf)},
    name="jobs",
)


def counters(stats: LevelStats) -> tuple[int, int, int, int, int]:
    return stats.submitted, stats.granted, stats.shed_total, stats.waiting, stats.in_use


def at(stats: LevelStats, bound: float) -> int:
    """The service histogram's count at or below ``bound`` seconds."""
    return dict(zip(BUCKET_BOUNDS, stats.service.cumulative, strict=True))[bound]


def test_the_plug_holding_the_seat_is_no_level_s_request() -> None:
    q = QueueState(POLICY)
    q.start(0.0)
    q.put("a", "high", None, 1.0)
    q.put("b", "low", None, 2.0)
    taken = q.take(4.0)
    assert taken is not None
    assert taken.data == "a"
    stats = q.stats()
    assert (stats.name, stats.capacity, stats.in_use, stats.waiting) == ("jobs", 0, 0, 1)
    assert [level.level for level in stats.levels] == ["critical", "high", "normal", "low", "bulk"]
    assert counters(stats.level("critical")) == (0, 0, 0, 0, 0)
    assert counters(stats.level("high")) == (1, 1, 0, 0, 0)
    assert counters(stats.level("low")) == (1, 0, 0, 1, 0)
    high = stats.level("high")
    assert (high.wait.count, high.wait.total, high.service.count) == (1, 3.0, 0)


def test_stats_carry_over_when_serve_starts_and_stops() -> None:
    q = QueueState(POLICY)
    q.start(0.0)
    q.put("a", "high", None, 1.0)
    q.put("b", "low", None, 2.0)
    q.take(4.0)
    q.start_serving(1, 5.0)  # "b" moves to the serve layout's scheduler, still waiting
    low = q.stats().level("low")
    assert counters(low) == (1, 0, 0, 1, 0)  # moved, not shed and submitted again
    assert q.stats().capacity == 1
    claimed = q.claim(6.0)
    assert claimed is not None
    assert claimed.data == "b"
    assert q.stats().in_use == 1
    assert q.finish(claimed, 7.5) is None
    q.stop_serving(8.0)
    stats = q.stats()
    assert (stats.capacity, stats.in_use) == (0, 0)
    high, low = stats.level("high"), stats.level("low")
    assert counters(high) == (1, 1, 0, 0, 0)
    assert (high.wait.total, high.service.count) == (3.0, 0)
    assert counters(low) == (1, 1, 0, 0, 0)
    assert (low.wait.total, low.service.count, low.service.total) == (4.0, 1, 1.5)
    assert (at(low, 1.0), at(low, 2.0)) == (0, 1)
    assert low.released == 1


def test_an_item_ready_for_a_consumer_who_left_is_counted_once_after_a_switch() -> None:
    q = QueueState(POLICY)
    q.start(0.0)
    q.register(1.0)  # a consumer waits: the seat is freed for it
    q.put("a", "high", None, 2.0)  # granted to that consumer
    q.unregister(2.5)  # who leaves before picking it up
    assert len(q.ready) == 1
    q.start_serving(1, 3.0)
    claimed = q.claim(4.0)
    assert claimed is not None
    assert claimed.data == "a"
    high = q.stats().level("high")
    assert counters(high) == (1, 1, 0, 0, 1)


def test_sheds_are_counted_by_reason_across_layouts() -> None:
    q = QueueState(POLICY)
    q.start(0.0)
    q.put("late", "high", None, 0.0)
    q.expire(10.0)
    q.start_serving(1, 11.0)
    q.stop_serving(12.0)
    q.put("closed-on", "bulk", None, 13.0)
    q.close(14.0)
    stats = q.stats()
    assert stats.level("high").shed[Reason.TIMEOUT] == 1
    assert stats.level("bulk").shed[Reason.SHUTDOWN] == 1
    assert sum(level.shed_total for level in stats.levels) == 2
    assert [t.data for t in q.shed] == ["late", "closed-on"]


def test_an_asyncio_queue_reports_its_items_and_its_workers() -> None:
    async def body() -> None:
        q: PriorityQueue[str] = PriorityQueue(POLICY, on_shed=ShedLog())
        release = asyncio.Event()

        async def handle(item: str) -> None:
            await release.wait()

        q.put_nowait("a", "high")
        q.put_nowait("b", "high")
        q.put_nowait("c", "low")
        serving = asyncio.create_task(q.serve(handle, concurrency=2))
        await settle()
        await asyncio.sleep(0.5)  # virtual time: the two handlers run for half a second
        stats = q.stats()
        assert (stats.capacity, stats.in_use, stats.waiting) == (2, 2, 1)
        release.set()
        await q.join()
        q.close()
        await serving
        high = q.stats().level("high")
        assert counters(high) == (2, 2, 0, 0, 0)
        assert (high.wait.total, high.service.total) == (0.0, 1.0)

    async def main() -> None:
        with VirtualClock().patch_loop():
            await body()

    asyncio.run(main())


def test_a_thread_queue_reports_under_its_lock() -> None:
    clock = VirtualClock()
    q: ThreadPriorityQueue[str] = ThreadPriorityQueue(POLICY, on_shed=ShedLog(), clock=clock)
    q.put("a", "low")
    clock.advance(2.0)
    assert q.get_nowait() == "a"
    low = q.stats().level("low")
    assert counters(low) == (1, 1, 0, 0, 0)
    assert low.wait.total == 2.0
