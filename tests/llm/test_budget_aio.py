"""prioritize.llm.Budget on a real event loop in virtual time: pacing, order, settling,
backing off, cancellation and misuse."""

from __future__ import annotations

import asyncio
import math

import pytest

from prioritize import Rejected, level_scope, parse_policy
from prioritize.core import DEFAULT_LEVELS, Reason
from prioritize.errors import ConfigError, PrioritizeError, TicketStateError
from prioritize.llm import Budget, BudgetLevelPolicy, BudgetPolicy
from prioritize.testing import run_virtual

FOREVER = BudgetLevelPolicy(max_wait=math.inf)


def budget(**knobs: object) -> Budget:
    levels = knobs.pop("levels", {"critical": FOREVER, "low": FOREVER})
    return Budget(BudgetPolicy(levels=levels, **knobs))  # type: ignore[arg-type]


def test_calls_are_paced_at_the_rate_once_the_burst_is_spent() -> None:
    async def main() -> list[float]:
        b = budget(rpm=60, burst=2)
        loop = asyncio.get_running_loop()
        started: list[float] = []

        async def one() -> None:
            async with b.spend("low"):
                started.append(loop.time())

        await asyncio.gather(*(one() for _ in range(5)))
        return started

    assert run_virtual(main) == pytest.approx([0, 0, 1, 2, 3])


def test_a_critical_call_starts_within_one_slot_of_a_low_backlog() -> None:
    async def main() -> tuple[float, int]:
        b = budget(rpm=60, burst=1)
        loop = asyncio.get_running_loop()
        lows = [asyncio.ensure_future(b.spend("low").__aenter__()) for _ in range(50)]
        await asyncio.sleep(10.5)
        async with b.spend("critical"):
            started = loop.time()
        for task in lows:
            task.cancel()
        await asyncio.gather(*lows, return_exceptions=True)
        return started, b.scheduler.waiting

    started, waiting = run_virtual(main)
    assert started == pytest.approx(11.0)
    assert waiting == 0  # the cancelled waiters left the queue


def test_call_reconciles_the_estimate_with_the_usage_reported() -> None:
    async def main() -> tuple[str, float]:
        b = budget(tpm=6000, burst=60)

        async def ask() -> dict[str, int]:
            return {"total_tokens": 1200}

        answer = await b.call(ask, level="low", tokens=4000, usage=lambda r: r["total_tokens"])
        return str(answer), b.stats().available["tokens"]

    answer, available = run_virtual(main)
    assert answer == "{'total_tokens': 1200}"
    assert available == pytest.approx(6000 - 1200)


def test_a_refused_call_backs_the_budget_off_and_pauses_it() -> None:
    async def main() -> tuple[float, float]:
        b = budget(rpm=60, burst=5)
        loop = asyncio.get_running_loop()
        async with b.spend("low") as spend:
            spend.refused(retry_after=3)
        async with b.spend("low"):
            started = loop.time()
        return started, b.stats().factor

    started, factor = run_virtual(main)
    assert started == pytest.approx(3.0)  # paused 3 s, the bucket emptied and refilling
    assert factor == pytest.approx(0.5 + 3 / 60)


def test_the_level_defaults_to_the_current_one_then_the_policys() -> None:
    policy = parse_policy({"default_level": "low", "budgets": {"api": {"rpm": 60}}})
    b = Budget.from_policy(policy, "api")

    async def main() -> list[str]:
        seen = []
        with level_scope(DEFAULT_LEVELS["high"]):
            async with b.spend() as spend:
                seen.append(spend.level.name)
        async with b.spend() as spend:
            seen.append(spend.level.name)
        return seen

    assert run_virtual(main) == ["high", "low"]


def test_shed_and_timed_out_calls_raise_rejected_with_retry_after() -> None:
    async def main() -> list[Rejected]:
        b = budget(rpm=60, burst=1, levels={"bulk": BudgetLevelPolicy(max_wait=0)})
        out = []
        async with b.spend("low"):
            pass
        for call in (b.spend("bulk"), b.spend("low", timeout=0.5)):
            try:
                async with call:
                    pass
            except Rejected as exc:
                out.append(exc)
        return out

    bulk, low = run_virtual(main)
    assert (bulk.reason, low.reason) == (Reason.LIMIT, Reason.TIMEOUT)
    assert low.retry_after == pytest.approx(0.5)


def test_close_sheds_waiters_with_shutdown() -> None:
    async def main() -> Reason:
        b = budget(rpm=60, burst=1)
        async with b.spend("low"):
            pass
        waiter = asyncio.ensure_future(b.spend("low").__aenter__())
        await asyncio.sleep(0.1)
        b.close()
        with pytest.raises(Rejected) as info:
            await waiter
        return info.value.reason

    assert run_virtual(main) is Reason.SHUTDOWN


def test_misuse_is_named() -> None:
    b = budget(rpm=60)
    with pytest.raises(
        ConfigError, match=r"budgets.nope: no such budget in <dict>; budgets defined"
    ):
        Budget.from_policy(parse_policy({"budgets": {"api": {"rpm": 1}}}), "nope")
    with pytest.raises(TypeError, match="Budget\\(\\) takes a BudgetPolicy, not int"):
        Budget(60)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"tokens = -1: expected an estimate, a number ≥ 0"):
        b.spend("low", tokens=-1)
    spend = b.spend("low")
    with pytest.raises(TicketStateError, match="holds no budget: report usage inside the block"):
        spend.actual(5)

    async def elsewhere() -> None:
        async with b.spend("low") as inside:
            with pytest.raises(ValueError, match=r"tokens = 'many': expected the actual count"):
                inside.actual("many")  # type: ignore[arg-type]

    asyncio.run(elsewhere())
    with pytest.raises(PrioritizeError, match="bound to another event loop"):
        asyncio.run(elsewhere())
