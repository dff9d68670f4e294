"""Bounds, eviction, expiry and close: every item put is got or handed to on_shed, once."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from prioritize import GatePolicy, LevelPolicy, Reason, Rejected, policy_from_toml
from prioritize.errors import PrioritizeError
from prioritize.queues import PriorityQueue, QueueClosed

from .queue_helpers import ShedLog, run, settle

LEVELS = ["critical", "high", "normal", "low", "bulk"]


def test_a_full_queue_evicts_the_newest_least_important_item_for_a_more_important_one() -> None:
    async def body() -> None:
        log = ShedLog()
        q: PriorityQueue[str] = PriorityQueue(GatePolicy(capacity=1, queue=3), on_shed=log)
        for item, level in [("b1", "bulk"), ("b2", "bulk"), ("l1", "low")]:
            assert q.put_nowait(item, level)
        assert q.put_nowait("h1", "high") is True  # full: the newest bulk makes room
        assert log.reasons() == [("b2", Reason.EVICTED)]
        assert q.put_nowait("h2", "high") is True
        assert log.reasons()[-1] == ("b1", Reason.EVICTED)
        assert q.put_nowait("h3", "high") is True
        assert log.reasons()[-1] == ("l1", Reason.EVICTED)
        # nothing less important left: the arrival itself is refused
        assert q.put_nowait("h4", "high") is False
        assert log.reasons()[-1] == ("h4", Reason.QUEUE_FULL)
        assert q.put_nowait("b3", "bulk") is False
        assert log.reasons()[-1] == ("b3", Reason.QUEUE_FULL)
        assert [q.get_nowait() for _ in range(3)] == ["h1", "h2", "h3"]
        rejected = log.errors[0]
        assert rejected.level == "bulk"
        assert rejected.retry_after is not None
        assert rejected.retry_after > 0

    run(body)


def test_a_levels_own_queue_bound_refuses_more_of_that_level() -> None:
    async def body() -> None:
        log = ShedLog()
        policy = GatePolicy(capacity=1, queue=10, levels={"bulk": LevelPolicy(queue=2)})
        q: PriorityQueue[str] = PriorityQueue(policy, on_shed=log)
        assert [q.put_nowait(f"b{i}", "bulk") for i in range(3)] == [True, True, False]
        assert log.reasons() == [("b2", Reason.QUEUE_FULL)]
        assert q.qsize("bulk") == 2
        assert q.qsize("critical") == 0
        assert q.qsize() == 2

    run(body)


def test_items_past_max_wait_are_shed_with_reason_timeout_at_their_deadline() -> None:
    async def body() -> None:
        log = ShedLog()
        policy = GatePolicy(
            capacity=1,
            levels={"bulk": LevelPolicy(max_wait=10), "critical": LevelPolicy(max_wait=math.inf)},
        )
        q: PriorityQueue[str] = PriorityQueue(policy, on_shed=log)
        loop = asyncio.get_running_loop()
        start = loop.time()
        q.put_nowait("b1", "bulk")
        q.put_nowait("c1", "critical")
        await asyncio.sleep(5)
        q.put_nowait("b2", "bulk")
        await asyncio.sleep(5)  # b1 has waited 10 s
        assert log.reasons() == [("b1", Reason.TIMEOUT)]
        assert q.qsize() == 2
        await asyncio.sleep(5)
        assert log.reasons() == [("b1", Reason.TIMEOUT), ("b2", Reason.TIMEOUT)]
        assert loop.time() - start == pytest.approx(15)
        await asyncio.sleep(3600)
        assert q.get_nowait() == "c1"  # max_wait = inf: it waits as long as it takes

    run(body)


def test_max_wait_zero_items_go_only_to_a_consumer_already_waiting() -> None:
    async def body() -> None:
        log = ShedLog()
        policy = GatePolicy(capacity=1, levels={"normal": LevelPolicy(max_wait=0)})
        q: PriorityQueue[str] = PriorityQueue(policy, on_shed=log)
        assert q.put_nowait("nobody-waits", "normal") is False
        assert log.reasons() == [("nobody-waits", Reason.LIMIT)]
        consumer = asyncio.create_task(q.get())
        await settle()
        assert q.put_nowait("handed-over", "normal") is True
        assert await consumer == "handed-over"

    run(body)


def test_close_sheds_queued_items_and_refuses_later_puts() -> None:
    async def body() -> None:
        log = ShedLog()
        q: PriorityQueue[str] = PriorityQueue(GatePolicy(capacity=1), on_shed=log)
        q.put_nowait("a", "high")
        q.put_nowait("b", "low")
        q.close()
        assert q.is_closed
        assert log.reasons() == [("a", Reason.SHUTDOWN), ("b", Reason.SHUTDOWN)]
        assert q.put_nowait("late", "critical") is False
        assert log.reasons()[-1] == ("late", Reason.SHUTDOWN)
        with pytest.raises(QueueClosed):
            q.get_nowait()
        with pytest.raises(QueueClosed):
            await q.get()
        q.close()  # twice is harmless
        await q.join()  # shed items count as done

    run(body)


def test_close_wakes_waiting_consumers_with_queue_closed() -> None:
    async def body() -> None:
        q: PriorityQueue[str] = PriorityQueue(GatePolicy(capacity=1), on_shed=ShedLog())
        consumers = [asyncio.create_task(q.get()) for _ in range(3)]
        await settle()
        q.close()
        for consumer in consumers:
            with pytest.raises(QueueClosed, match="closed and empty"):
                await consumer

    run(body)


def test_an_on_shed_error_propagates_after_every_item_is_delivered() -> None:
    async def body() -> None:
        seen: list[str] = []

        def on_shed(item: str, rejected: Rejected) -> None:
            seen.append(item)
            raise RuntimeError(f"cannot shed {item}")

        q: PriorityQueue[str] = PriorityQueue(GatePolicy(capacity=1), on_shed=on_shed)
        q.put_nowait("a")
        q.put_nowait("b")
        with pytest.raises(RuntimeError, match="cannot shed a"):
            q.close()
        assert seen == ["a", "b"]

    run(body)


def test_on_shed_is_required_and_must_be_callable() -> None:
    with pytest.raises(TypeError):
        PriorityQueue(GatePolicy(capacity=1))  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="on_shed must be callable"):
        PriorityQueue(GatePolicy(capacity=1), on_shed=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes a GatePolicy"):
        PriorityQueue(4, on_shed=ShedLog())  # type: ignore[arg-type]


def test_every_item_put_is_got_or_shed_exactly_once() -> None:
    rng = random.Random(11)
    policy = GatePolicy(
        capacity=2,
        queue=40,
        order="weighted",
        levels={
            "bulk": LevelPolicy(max_wait=3, queue=25),
            "low": LevelPolicy(max_wait=8),
            "high": LevelPolicy(max_wait=0.5),
        },
    )

    async def body() -> None:
        log = ShedLog()
        q: PriorityQueue[int] = PriorityQueue(policy, on_shed=log)
        got: list[int] = []
        refused = 0

        async def consumer() -> None:
            while True:
                try:
                    got.append(await q.get())
                except QueueClosed:
                    return
                q.task_done()
                await asyncio.sleep(rng.random() * 0.2)

        consumers = [asyncio.create_task(consumer()) for _ in range(3)]
        for i in range(3000):
            if not q.put_nowait(i, rng.choice(LEVELS), rng.randrange(4)):
                refused += 1
            if rng.random() < 0.3:
                await asyncio.sleep(rng.random() * 0.1)
        await asyncio.sleep(1)
        q.close()
        await asyncio.gather(*consumers)
        assert sorted(got + log.items) == list(range(3000))  # each once, none lost
        reasons = {e.reason for e in log.errors}
        assert {Reason.EVICTED, Reason.TIMEOUT, Reason.QUEUE_FULL} <= reasons
        # a put refused at once is the only shed its put() reports as False
        assert refused == sum(1 for e in log.errors if e.reason is Reason.QUEUE_FULL)
        await q.join()

    run(body)


def test_a_queue_comes_from_a_policy_files_gate() -> None:
    policy = policy_from_toml(
        """
        [gates.jobs]
        capacity = 2
        queue = 1
        """,
        "jobs.toml",
    )

    async def body() -> None:
        log = ShedLog()
        q: PriorityQueue[str] = PriorityQueue.from_policy(policy, "jobs", on_shed=log)
        assert q.put_nowait("a")
        assert q.put_nowait("b") is False
        assert repr(q) == "<PriorityQueue jobs 1 queued>"
        q.close()
        assert repr(q) == "<PriorityQueue jobs 0 queued, closed>"

    run(body)


def test_a_queue_is_bound_to_the_loop_that_first_used_it() -> None:
    q: PriorityQueue[str] = PriorityQueue(GatePolicy(capacity=1), on_shed=ShedLog())

    async def first() -> None:
        q.put_nowait("a")

    async def second() -> None:
        with pytest.raises(PrioritizeError, match="bound to another event loop"):
            await q.serve(lambda item: asyncio.sleep(0))

    asyncio.run(first())
    asyncio.run(second())
