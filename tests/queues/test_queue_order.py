"""PriorityQueue.get hands items out in the scheduler's order: levels, weights, flows, FIFO."""

from __future__ import annotations

import asyncio
import random

import pytest

from prioritize import GatePolicy, LevelPolicy, LevelSet, Reason
from prioritize.queues import PriorityQueue

from .queue_helpers import ReferenceQueue, ShedLog, reference_order, run, settle

LEVELS = ["critical", "high", "normal", "low", "bulk"]


def drain(q: PriorityQueue[object]) -> list[object]:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


def test_strict_order_serves_levels_by_importance_and_fifo_within_one() -> None:
    async def body() -> None:
        q: PriorityQueue[object] = PriorityQueue(GatePolicy(capacity=1), on_shed=ShedLog())
        for item, level in [("b1", "bulk"), ("n1", "normal"), ("c1", "critical"), ("n2", "normal"),
                            ("b2", "bulk"), ("h1", "high"), ("c2", "critical")]:  # fmt: skip
            assert await q.put(item, level) is True
        assert drain(q) == ["c1", "c2", "h1", "n1", "n2", "b1", "b2"]

    run(body)


def test_flows_take_turns_within_a_level_fifo_within_a_flow() -> None:
    async def body() -> None:
        q: PriorityQueue[str] = PriorityQueue(GatePolicy(capacity=1), on_shed=ShedLog())
        for i in range(3):
            q.put_nowait(f"big{i}", "normal", flow="big-tenant")
        q.put_nowait("small0", "normal", flow="small-tenant")
        q.put_nowait("other0", "normal", flow="other-tenant")
        assert drain(q) == ["big0", "small0", "other0", "big1", "big2"]

    run(body)


def test_weighted_order_shares_turns_by_weight() -> None:
    async def body() -> None:
        policy = GatePolicy(
            capacity=1,
            order="weighted",
            levels={"high": LevelPolicy(weight=3), "low": LevelPolicy(weight=1)},
        )
        q: PriorityQueue[str] = PriorityQueue(policy, on_shed=ShedLog())
        puts = [
            (f"{tag}{i}", level, None)
            for i in range(8)
            for tag, level in [("h", "high"), ("l", "low")]
        ]
        for item, level, flow in puts:
            q.put_nowait(item, level, flow)
        got = drain(q)
        # while both wait, high gets 3 turns for each of low's (stride scheduling)
        assert "".join(str(item)[0] for item in got[:8]) == "hlhhhlhh"
        assert got == reference_order(policy, puts)

    run(body)


@pytest.mark.parametrize("order", ["strict", "weighted"])
def test_get_order_matches_the_scheduler_for_a_random_mix(order: str) -> None:
    rng = random.Random(7)
    policy = GatePolicy(
        capacity=4,
        order=order,
        queue=10_000,
        levels={
            name: LevelPolicy(weight=w) for name, w in zip(LEVELS, [8, 4, 2, 1, 1], strict=True)
        },
    )
    puts = [(i, rng.choice(LEVELS), rng.choice(["a", "b", "c", None])) for i in range(500)]

    async def body() -> None:
        q: PriorityQueue[object] = PriorityQueue(policy, on_shed=ShedLog())
        for item, level, flow in puts:
            q.put_nowait(item, level, flow)
        assert q.qsize() == 500
        assert drain(q) == reference_order(policy, puts)

    run(body)


def test_interleaved_puts_and_gets_follow_the_scheduler() -> None:
    rng = random.Random(3)
    policy = GatePolicy(capacity=2, order="weighted", levels={"bulk": LevelPolicy(weight=2)})

    async def body() -> None:
        q: PriorityQueue[object] = PriorityQueue(policy, on_shed=ShedLog())
        ref = ReferenceQueue(policy)
        for i in range(2000):
            if rng.random() < 0.55:
                level, flow = rng.choice(LEVELS), rng.choice(["a", "b", None])
                q.put_nowait(i, level, flow)
                ref.put(i, level, flow)
            elif not q.empty():
                assert q.get_nowait() == ref.take()
        while not q.empty():
            assert q.get_nowait() == ref.take()
        assert ref.scheduler.waiting == 0

    run(body)


def test_a_waiting_consumer_gets_the_next_put_at_once() -> None:
    async def body() -> None:
        q: PriorityQueue[str] = PriorityQueue(GatePolicy(capacity=1), on_shed=ShedLog())
        consumer = asyncio.create_task(q.get())
        await settle()
        assert q.put_nowait("bulk-item", "bulk") is True
        assert await consumer == "bulk-item"
        assert q.empty()

    run(body)


def test_nothing_is_prefetched_a_later_important_put_overtakes_a_queued_one() -> None:
    async def body() -> None:
        q: PriorityQueue[str] = PriorityQueue(GatePolicy(capacity=1), on_shed=ShedLog())
        first = asyncio.create_task(q.get())
        await settle()
        q.put_nowait("b1", "bulk")  # a consumer waits: it gets this one
        assert await first == "b1"
        q.put_nowait("b2", "bulk")  # nobody waits: it is queued, not handed out ahead
        q.put_nowait("c1", "critical")
        assert await q.get() == "c1"
        assert await q.get() == "b2"

    run(body)


def test_several_waiting_consumers_are_served_one_item_each_in_arrival_order() -> None:
    async def body() -> None:
        q: PriorityQueue[str] = PriorityQueue(GatePolicy(capacity=1), on_shed=ShedLog())
        consumers = [asyncio.create_task(q.get()) for _ in range(3)]
        await settle()
        for item in ["x", "y", "z"]:
            q.put_nowait(item, "low")
        assert [await c for c in consumers] == ["x", "y", "z"]
        q.put_nowait("b", "bulk")
        q.put_nowait("c", "critical")
        assert drain(q) == ["c", "b"]

    run(body)


def test_a_cancelled_consumer_loses_no_item() -> None:
    async def body() -> None:
        log = ShedLog()
        q: PriorityQueue[str] = PriorityQueue(GatePolicy(capacity=1), on_shed=log)
        first = asyncio.create_task(q.get())
        second = asyncio.create_task(q.get())
        await settle()
        q.put_nowait("item", "normal")  # wakes the first consumer...
        first.cancel()  # ...which is cancelled before it runs: the wake passes on
        await settle()
        assert first.cancelled()
        assert await second == "item"
        # a consumer cancelled while waiting leaves the queue as it was
        third = asyncio.create_task(q.get())
        await settle()
        third.cancel()
        await settle()
        q.put_nowait("b", "bulk")
        q.put_nowait("c", "critical")
        assert drain(q) == ["c", "b"]
        assert log.items == []

    run(body)


def test_levels_are_named_by_name_rank_or_level_of_the_policys_set() -> None:
    async def body() -> None:
        tiers = LevelSet(["gold", "silver", "bronze"])
        q: PriorityQueue[str] = PriorityQueue(
            GatePolicy(capacity=1, level_set=tiers), on_shed=ShedLog()
        )
        q.put_nowait("by-rank", 2)
        q.put_nowait("by-level", tiers["silver"])
        q.put_nowait("by-name", "gold")
        assert q.qsize("gold") == 1
        assert q.qsize(tiers["bronze"]) == 1
        assert drain(q) == ["by-name", "by-level", "by-rank"]
        with pytest.raises(KeyError, match="unknown level 'platinum'"):
            q.put_nowait("x", "platinum")

    run(body)


def test_min_does_not_reorder_get_and_max_zero_refuses() -> None:
    async def body() -> None:
        log = ShedLog()
        policy = GatePolicy(
            capacity=4,
            levels={"bulk": LevelPolicy(min=2), "low": LevelPolicy(max=0)},
        )
        q: PriorityQueue[str] = PriorityQueue(policy, on_shed=log)
        q.put_nowait("b", "bulk")
        q.put_nowait("c", "critical")
        assert q.put_nowait("l", "low") is False
        assert log.reasons() == [("l", Reason.LIMIT)]
        assert drain(q) == ["c", "b"]  # a min reserves workers in serve(); get() has none

    run(body)
