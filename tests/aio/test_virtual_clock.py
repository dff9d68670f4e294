"""VirtualClock: time that moves by hand, or jumps to the next timer of an asyncio loop."""

from __future__ import annotations

import asyncio

import pytest

from prioritize.testing import VirtualClock


def test_a_clock_moves_only_when_advanced() -> None:
    clock = VirtualClock(start=10.0)
    assert clock() == 10.0
    assert clock.advance(2.5) == 12.5
    assert clock.time() == 12.5
    assert repr(clock) == "<VirtualClock t=12.5>"


def test_a_clock_never_goes_backwards() -> None:
    with pytest.raises(ValueError, match=r"cannot advance a clock by -1 seconds; use a number ≥ 0"):
        VirtualClock().advance(-1)


def test_an_hour_of_sleeping_takes_no_real_time_and_keeps_timer_order() -> None:
    clock = VirtualClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        woke.append((name, asyncio.get_running_loop().time()))

    async def main() -> None:
        with clock.patch_loop():
            await asyncio.gather(sleeper("late", 3600), sleeper("early", 60))

    asyncio.run(main())
    # exact readings: only virtual time gives these (a real clock drifts past them)
    assert woke == [("early", 60.0), ("late", 3600.0)]
    assert clock() == 3600.0


def test_the_loop_gets_its_own_clock_back_after_the_block() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with VirtualClock(start=-5.0).patch_loop():
            assert loop.time() == -5.0
        assert loop.time() > 0

    asyncio.run(main())


def test_patch_loop_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="no running event loop"), VirtualClock().patch_loop():
        pass


def test_run_virtual_returns_what_main_returns_after_virtual_time_only() -> None:
    from prioritize.testing import run_virtual

    async def main() -> float:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(3600)  # an hour, at once
        return loop.time()

    assert run_virtual(main, start=100.0) == 3700.0
