"""Slot.request / granted / release: a seat in two steps, for adapters watching a socket."""

from __future__ import annotations

import asyncio
import math

import pytest

from prioritize import GatePolicy, LevelPolicy, Reason, Rejected, TicketStateError
from prioritize.aio import Gate
from prioritize.testing import run_virtual as run


def test_a_free_seat_is_granted_at_once_and_released_by_hand() -> None:
    async def body() -> None:
        gate = Gate(1)
        slot = gate.slot("high")
        assert slot.request() is True
        assert gate.stats().in_use == 1
        slot.release()
        assert gate.stats().in_use == 0

    run(body)


def test_a_queued_slot_is_granted_when_a_seat_frees() -> None:
    async def body() -> None:
        gate = Gate(1)
        holder = gate.slot("low")
        assert holder.request()
        waiter = gate.slot("high")
        assert waiter.request() is False
        assert gate.stats().waiting == 1
        task = asyncio.ensure_future(waiter.granted())
        await asyncio.sleep(0)
        assert not task.done()
        holder.release()
        await task
        assert gate.stats().in_use == 1
        waiter.release()
        assert gate.stats().in_use == 0

    run(body)


def test_cancelling_the_wait_withdraws_the_request_and_leaks_nothing() -> None:
    async def body() -> None:
        gate = Gate(1)
        holder = gate.slot()
        assert holder.request()
        waiter = gate.slot()
        assert not waiter.request()
        task = asyncio.ensure_future(waiter.granted())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert gate.stats().waiting == 0
        holder.release()
        assert gate.stats().in_use == 0
        assert gate.stats().levels[2].cancelled == 1

    run(body)


def test_a_grant_racing_with_the_cancellation_is_given_back() -> None:
    async def body() -> None:
        gate = Gate(1)
        holder = gate.slot()
        assert holder.request()
        waiter = gate.slot()
        assert not waiter.request()
        task = asyncio.ensure_future(waiter.granted())
        await asyncio.sleep(0)
        holder.release()  # grants the waiter: its future is resolved...
        task.cancel()  # ...and the task is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await task
        assert gate.stats().in_use == 0

    run(body)


def test_a_slot_shed_at_once_raises_from_request() -> None:
    async def body() -> None:
        gate = Gate(GatePolicy(capacity=1, levels={"bulk": LevelPolicy(max_wait=0)}))
        assert gate.slot("high").request()
        with pytest.raises(Rejected) as caught:
            gate.slot("bulk").request()
        assert (caught.value.level, caught.value.reason) == ("bulk", Reason.LIMIT)

    run(body)


def test_a_queued_slot_times_out_with_its_timeout() -> None:
    async def body() -> None:
        gate = Gate(GatePolicy(capacity=1, levels={"normal": LevelPolicy(max_wait=math.inf)}))
        assert gate.slot().request()
        waiter = gate.slot(timeout=2.0)
        assert not waiter.request()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(Rejected) as caught:
            await waiter.granted()
        assert caught.value.reason is Reason.TIMEOUT
        assert loop.time() - started == 2.0
        assert gate.stats().waiting == 0

    run(body)


def test_waiting_without_a_request_is_refused_with_what_to_do() -> None:
    async def body() -> None:
        gate = Gate(1)
        with pytest.raises(TicketStateError, match=r"is not waiting: call request\(\) first, once"):
            await gate.slot().granted()

    run(body)
