"""A Gate with an adaptive capacity: every seat given back is a sample, and the capacity follows."""

from __future__ import annotations

import asyncio

from prioritize import AIMD, policy_from_toml
from prioritize.aio import Gate
from prioritize.testing import run_virtual as run

ADAPTIVE = """
[gates.api]
capacity = { adaptive = "aimd", min = 2, max = 50, initial = 10, max_rtt = 0.5, window = 1 }
"""


async def hold_for(gate: Gate, seconds: float, count: int) -> None:
    """``count`` requests at once, each holding its seat ``seconds`` of virtual time."""

    async def one() -> None:
        async with gate.slot():
            await asyncio.sleep(seconds)

    await asyncio.gather(*(one() for _ in range(count)))


def test_a_policy_gate_with_an_adaptive_capacity_backs_off_when_seats_are_held_long() -> None:
    async def body() -> None:
        gate = Gate.from_policy(policy_from_toml(ADAPTIVE, "adaptive.toml"), "api")
        assert gate.capacity == 10
        for _ in range(3):  # windows of slow requests: 2 s each, above max_rtt
            await hold_for(gate, 2.0, 10)
        assert gate.capacity < 10
        backed_off = gate.capacity
        for _ in range(30):  # fast requests again: the limit climbs back
            await hold_for(gate, 0.05, backed_off)
        assert gate.capacity > backed_off

    run(body)


def test_a_block_that_times_out_counts_as_dropped() -> None:
    async def body() -> None:
        gate = Gate(10, adaptive=AIMD(initial=10, min_limit=1, max_limit=10, window=1.0))
        for _ in range(3):

            async def times_out() -> None:
                async with gate.slot():
                    async with asyncio.timeout(0.01):
                        await asyncio.sleep(1)  # slower than the caller's deadline

            results = await asyncio.gather(*(times_out() for _ in range(5)), return_exceptions=True)
            assert all(isinstance(r, TimeoutError) for r in results)
            await asyncio.sleep(1.0)  # the next window
        assert gate.capacity < 10
        assert gate.stats().in_use == 0

    run(body)


def test_a_fixed_gate_keeps_its_capacity() -> None:
    async def body() -> None:
        gate = Gate(4)
        await hold_for(gate, 1.0, 8)
        assert gate.capacity == 4

    run(body)
