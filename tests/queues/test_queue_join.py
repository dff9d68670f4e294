"""join()/task_done()/qsize()/empty() behave as asyncio.Queue's and queue.Queue's do.

Each behaviour test runs against the standard queue and against ours, so
"like asyncio.Queue" is checked, not assumed. Ours then also counts a shed
item as done (the standard queues never drop one).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any

import pytest

from prioritize import GatePolicy, LevelPolicy
from prioritize.queues import PriorityQueue, ThreadPriorityQueue

from .queue_helpers import ShedLog, run, settle

AsyncFactory = Callable[[], Any]


def ours_async() -> PriorityQueue[int]:
    return PriorityQueue(GatePolicy(capacity=2), on_shed=ShedLog())


def ours_threads() -> ThreadPriorityQueue[int]:
    return ThreadPriorityQueue(GatePolicy(capacity=2), on_shed=ShedLog())


ASYNC = pytest.mark.parametrize("make", [asyncio.Queue, ours_async], ids=["asyncio", "ours"])
THREADS = pytest.mark.parametrize("make", [queue.Queue, ours_threads], ids=["queue", "ours"])


@ASYNC
def test_async_task_done_too_many_times_raises_the_same_error(make: AsyncFactory) -> None:
    async def body() -> None:
        q = make()
        with pytest.raises(ValueError, match=r"^task_done\(\) called too many times$"):
            q.task_done()
        await q.put(1)
        await q.get()
        q.task_done()
        with pytest.raises(ValueError, match=r"^task_done\(\) called too many times$"):
            q.task_done()

    run(body)


@ASYNC
def test_async_join_waits_for_every_item_to_be_marked_done(make: AsyncFactory) -> None:
    async def body() -> None:
        q = make()
        await asyncio.wait_for(q.join(), 1)  # nothing put: returns at once
        await q.put(1)
        await q.put(2)
        joined = asyncio.create_task(q.join())
        await settle()
        assert not joined.done()
        assert await q.get() in (1, 2)
        q.task_done()
        await settle()
        assert not joined.done()  # one left
        await q.get()
        await settle()
        assert not joined.done()  # got, not yet done
        q.task_done()
        await settle()
        assert joined.done()

    run(body)


@ASYNC
def test_async_qsize_empty_and_get_nowait_on_empty(make: AsyncFactory) -> None:
    async def body() -> None:
        q = make()
        assert q.empty()
        assert q.qsize() == 0
        with pytest.raises(asyncio.QueueEmpty):
            q.get_nowait()
        q.put_nowait(1)
        await q.put(2)
        assert not q.empty()
        assert q.qsize() == 2
        q.get_nowait()
        assert q.qsize() == 1

    run(body)


@THREADS
def test_thread_task_done_too_many_times_raises_the_same_error(make: Callable[[], Any]) -> None:
    q = make()
    with pytest.raises(ValueError, match=r"^task_done\(\) called too many times$"):
        q.task_done()
    q.put(1)
    q.get()
    q.task_done()
    with pytest.raises(ValueError, match=r"^task_done\(\) called too many times$"):
        q.task_done()


@THREADS
def test_thread_join_blocks_until_every_item_is_done(make: Callable[[], Any]) -> None:
    q = make()
    q.join()  # nothing put: returns at once
    for i in range(5):
        q.put(i)
    got: list[int] = []

    def worker() -> None:
        for _ in range(5):
            got.append(q.get())
            q.task_done()

    thread = threading.Thread(target=worker)
    thread.start()
    q.join()
    assert sorted(got) == [0, 1, 2, 3, 4]
    thread.join()


@THREADS
def test_thread_get_timeouts_and_nowait_raise_empty(make: Callable[[], Any]) -> None:
    q = make()
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(block=False)
    with pytest.raises(queue.Empty):
        q.get(timeout=0)
    with pytest.raises(ValueError, match="'timeout' must be a non-negative number"):
        q.get(timeout=-1)
    q.put_nowait(7)
    assert q.qsize() == 1
    assert not q.empty()
    assert q.get(timeout=0) == 7
    assert q.empty()


def test_shed_items_count_as_done_for_join() -> None:
    async def body() -> None:
        log = ShedLog()
        policy = GatePolicy(capacity=1, queue=2, levels={"bulk": LevelPolicy(max_wait=5)})
        q: PriorityQueue[str] = PriorityQueue(policy, on_shed=log)
        q.put_nowait("b1", "bulk")
        q.put_nowait("b2", "bulk")
        q.put_nowait("c1", "critical")  # evicts b2
        assert q.put_nowait("c2", "critical") is True  # evicts b1
        assert q.put_nowait("c3", "critical") is False  # refused: never counted
        joined = asyncio.create_task(q.join())
        assert await q.get() == "c1"
        q.task_done()
        assert await q.get() == "c2"
        await settle()
        assert not joined.done()
        q.task_done()
        await settle()
        assert joined.done()
        q.put_nowait("b3", "bulk")
        joined = asyncio.create_task(q.join())
        await asyncio.sleep(5)  # b3 times out: done, without a consumer
        await settle()
        assert joined.done()
        assert [item for item, _ in log.reasons()] == ["b2", "b1", "c3", "b3"]

    run(body)
