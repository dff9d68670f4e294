"""The asyncio Gate: seats held for a block, shedding, order, expiry, cancellation safety."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from prioritize import GatePolicy, LevelPolicy, Reason, Rejected, Ticket, policy_from_toml
from prioritize.aio import Gate
from prioritize.errors import PrioritizeError
from prioritize.testing import run_virtual as run

INF = math.inf


async def settle() -> None:
    """Let every ready task run until all of them wait again."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_seat_is_held_for_the_block_and_given_back_even_on_error() -> None:
    async def body() -> None:
        gate = Gate(2)
        async with gate.slot("high") as ticket:
            assert gate.stats().in_use == 1
            assert ticket.level.name == "high"
        assert gate.stats().in_use == 0
        with pytest.raises(KeyError):
            async with gate.slot("high"):
                raise KeyError("boom")
        assert gate.stats().in_use == 0
        assert repr(gate) == "<Gate gate 0/2 seats, 0 waiting>"

    run(body)


def test_waiters_are_served_in_the_schedulers_order() -> None:
    async def body() -> None:
        gate = Gate(1)
        order: list[str] = []
        release = asyncio.Event()

        async def holder() -> None:
            async with gate.slot("normal"):
                await release.wait()

        async def waiter(level: str, flow: str) -> None:
            async with gate.slot(level, flow):
                order.append(f"{level}/{flow}")

        tasks = [asyncio.create_task(holder())]
        await settle()
        for level, flow in [("bulk", "a"), ("low", "a"), ("high", "a"), ("high", "b"),
                            ("high", "a"), ("critical", "x")]:  # fmt: skip
            tasks.append(asyncio.create_task(waiter(level, flow)))
            await settle()
        assert gate.stats().waiting == 6
        release.set()
        await asyncio.gather(*tasks)
        assert order == ["critical/x", "high/a", "high/b", "high/a", "low/a", "bulk/a"]

    run(body)


def test_a_full_queue_evicts_the_newest_least_important_waiter_with_rejected() -> None:
    async def body() -> None:
        gate = Gate(GatePolicy(capacity=1, queue=1))
        release = asyncio.Event()

        async def hold() -> None:
            async with gate.slot("normal"):
                await release.wait()

        holder = asyncio.create_task(hold())
        await settle()
        bulk = asyncio.create_task(gate.slot("bulk").__aenter__())
        await settle()
        high = asyncio.create_task(gate.slot("high").__aenter__())
        await settle()
        with pytest.raises(Rejected) as shed:
            await bulk
        assert (shed.value.level, shed.value.reason) == ("bulk", Reason.EVICTED)
        assert shed.value.retry_after > 0
        with pytest.raises(Rejected, match=r"low request shed \(queue_full\)"):
            async with gate.slot("low"):
                pass
        release.set()
        await holder
        ticket = await high
        assert ticket.state.value == "granted"
        gate._release(ticket)

    run(body)


def test_max_wait_sheds_with_timeout_using_one_timer_for_all_waiters() -> None:
    async def body() -> None:
        gate = Gate(GatePolicy(capacity=1, levels={"low": LevelPolicy(max_wait=30)}))
        loop = asyncio.get_running_loop()
        outcomes: list[str] = []

        async def wait_low() -> None:
            try:
                async with gate.slot("low"):
                    outcomes.append("served")
            except Rejected as shed:
                outcomes.append(shed.reason.value)

        async with gate.slot("normal"):
            waiters = [asyncio.create_task(wait_low()) for _ in range(100)]
            await settle()
            timers = [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
            assert len(timers) == 1  # one timer for the gate, not one per waiter
            start = loop.time()
            await asyncio.gather(*waiters)
            assert loop.time() - start == pytest.approx(30.0)
        assert outcomes == ["timeout"] * 100
        assert gate.stats().level("low").shed[Reason.TIMEOUT] == 100

    run(body)


def test_a_per_call_timeout_raises_rejected_and_leaves_the_queue() -> None:
    async def body() -> None:
        gate = Gate(1)
        async with gate.slot("normal"):
            with pytest.raises(Rejected) as shed:
                async with gate.slot("high", timeout=2.5):
                    pass
            assert shed.value.reason is Reason.TIMEOUT
            assert gate.stats().waiting == 0
            assert gate.stats().level("high").cancelled == 1
        assert gate.stats().in_use == 0

    run(body)


def test_a_waiter_cancelled_in_the_queue_disappears_from_it() -> None:
    async def body() -> None:
        gate = Gate(1)
        async with gate.slot("normal"):
            task = asyncio.create_task(gate.slot("high").__aenter__())
            await settle()
            assert gate.stats().waiting == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert gate.stats().waiting == 0
        assert gate.stats().in_use == 0

    run(body)


def test_a_waiter_cancelled_as_it_is_granted_gives_the_seat_straight_back() -> None:
    async def body() -> None:
        gate = Gate(1)
        holder = gate.slot("normal")
        await holder.__aenter__()
        doomed = asyncio.create_task(gate.slot("high").__aenter__())
        next_in_line = asyncio.create_task(gate.slot("low").__aenter__())
        await settle()
        doomed.cancel()  # requested, not yet delivered: the task has not run again
        await holder.__aexit__(None, None, None)  # the scheduler grants doomed's ticket now
        with pytest.raises(asyncio.CancelledError):
            await doomed
        ticket = await next_in_line  # the seat went on to the next waiter
        assert ticket.level.name == "low"
        assert gate.stats().in_use == 1
        gate._release(ticket)
        assert gate.stats().in_use == 0

    run(body)


def test_a_cancellation_storm_leaks_no_seat_and_balances_every_count() -> None:
    async def body() -> None:
        rng = random.Random(7)
        gate = Gate(GatePolicy(capacity=5, queue=300, levels={"bulk": LevelPolicy(max_wait=3)}))
        levels = ["critical", "high", "normal", "low", "bulk"]
        served: set[int] = set()

        async def work(number: int, level: str) -> None:
            async with gate.slot(level, flow=rng.randrange(4)):
                served.add(number)
                await asyncio.sleep(rng.random())  # may be cancelled here, holding the seat

        tasks: list[asyncio.Task[None]] = []
        for number in range(3000):
            tasks.append(asyncio.create_task(work(number, rng.choice(levels))))
            if rng.random() < 0.5:
                await asyncio.sleep(rng.random() * 0.01)
            if rng.random() < 0.4:
                rng.choice(tasks).cancel()  # at whatever point that task has reached
        results = await asyncio.gather(*tasks, return_exceptions=True)
        stats = gate.stats()
        assert stats.in_use == 0
        assert stats.waiting == 0
        granted = sum(level.granted for level in stats.levels)
        assert granted == sum(level.released for level in stats.levels)
        assert len(served) <= granted  # a grant may land on a waiter cancelled at that instant
        shed = [n for n, r in enumerate(results) if isinstance(r, Rejected)]
        assert len(shed) == sum(level.shed_total for level in stats.levels)
        cancelled = [n for n, r in enumerate(results) if isinstance(r, asyncio.CancelledError)]
        cancelled_waiting = [n for n in cancelled if n not in served]
        assert len(served) + len(shed) + len(cancelled_waiting) == len(tasks)  # each ends once
        assert len(cancelled_waiting) >= sum(level.cancelled for level in stats.levels)
        for level in stats.levels:
            ended = level.granted + level.shed_total + level.cancelled
            assert level.submitted == ended

    run(body)


def test_try_slot_takes_a_free_seat_or_is_rejected_with_limit() -> None:
    async def body() -> None:
        gate = Gate(1)
        with gate.try_slot("bulk"):
            with pytest.raises(Rejected) as shed:
                async with gate.try_slot("critical"):
                    pass
            assert shed.value.reason is Reason.LIMIT
            assert gate.stats().waiting == 0
        async with gate.try_slot("critical") as ticket:
            assert ticket.waited == 0.0
        with (
            pytest.raises(TypeError, match=r"a waiting slot needs 'async with'"),
            gate.slot("high"),
        ):
            pass

    run(body)


def test_guard_runs_each_call_holding_a_seat_of_its_flow() -> None:
    async def body() -> None:
        gate = Gate(1)
        flows: list[object] = []

        @gate.guard("high", flow=lambda tenant, amount: tenant)
        async def charge(tenant: str, amount: int) -> int:
            flows.append(gate.stats().level("high").in_use)
            return amount * 2

        assert await charge("acme", 21) == 42
        assert flows == [1]
        assert charge.__name__ == "charge"
        assert gate.stats().in_use == 0

    run(body)


def test_close_sheds_waiters_and_later_requests_with_shutdown() -> None:
    async def body() -> None:
        gate = Gate(1)
        async with gate.slot("normal"):
            waiter = asyncio.create_task(gate.slot("high").__aenter__())
            await settle()
            gate.close()
            with pytest.raises(Rejected, match=r"\(shutdown\)"):
                await waiter
            with pytest.raises(Rejected, match=r"\(shutdown\)"):
                async with gate.slot("critical"):
                    pass

    run(body)


def test_resize_grants_waiters_when_capacity_grows() -> None:
    async def body() -> None:
        gate = Gate(1)
        async with gate.slot("normal"):
            waiter = asyncio.create_task(gate.slot("high").__aenter__())
            await settle()
            gate.resize(2)
            ticket = await waiter
            assert gate.capacity == 2
            gate._release(ticket)

    run(body)


def test_a_gate_comes_from_a_policy_file_by_name() -> None:
    policy = policy_from_toml(
        "[gates.api]\ncapacity = 3\n[gates.api.levels.critical]\nmin = 1\n", "inline.toml"
    )
    gate = Gate.from_policy(policy, "api")
    assert gate.capacity == 3
    assert gate.scheduler.limits("critical").min == 1


def test_bad_arguments_are_refused_with_clear_messages() -> None:
    with pytest.raises(
        TypeError, match=r"Gate\(\) takes a GatePolicy or a capacity \(int\), not str"
    ):
        Gate("ten")  # type: ignore[arg-type]
    gate = Gate(1)
    with pytest.raises(KeyError, match=r"unknown level 'urgent'; valid levels are"):
        gate.slot("urgent")


def test_a_gate_that_must_wait_belongs_to_one_event_loop() -> None:
    gate = Gate(1)

    async def use() -> None:
        async with gate.slot("high"):
            pass

    async def contend() -> None:
        async with gate.slot("high"):
            waiter = asyncio.create_task(use())
            with pytest.raises(PrioritizeError, match=r"bound to another event loop"):
                await waiter

    asyncio.run(use())  # binds the gate to this first loop
    asyncio.run(contend())
    assert gate.stats().in_use == 0


def test_a_slot_starts_as_a_fresh_ticket() -> None:
    gate = Gate(1)
    slot = gate.slot("high", "acme")
    ticket = Ticket(slot.level, "acme")
    shared = [name for cls in Ticket.__mro__ for name in getattr(cls, "__slots__", ())]
    assert shared
    assert {n: getattr(slot, n) for n in shared} == {n: getattr(ticket, n) for n in shared}
