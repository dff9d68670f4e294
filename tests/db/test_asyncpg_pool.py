"""The prioritized asyncpg pool against a real PostgreSQL: reservations, borrowing, no leaks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from prioritize import DEFAULT_LEVELS, Reason, Rejected, level_scope
from prioritize.core.stats import GateStats, LevelStats
from prioritize.db.asyncpg import PriorityPool, create_pool
from tests.db.helpers import (
    backends,
    flood_policy,
    reserved_policy,
    until,
)


def level(stats: GateStats, name: str) -> LevelStats:
    return next(s for s in stats.levels if s.level == name)


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())  # type: ignore[arg-type]


async def stop(tasks: list[asyncio.Task[object]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_critical_gets_a_connection_at_once_while_a_bulk_flood_holds_the_rest(
    postgres_dsn: str, app_name: str
) -> None:
    async def body() -> None:
        admin = await asyncpg.connect(postgres_dsn)
        pool = await create_pool(
            postgres_dsn, policy=flood_policy(), server_settings={"application_name": app_name}
        )
        flood = [
            asyncio.create_task(pool.execute("SELECT pg_sleep(60)", level="bulk"))
            for _ in range(40)
        ]

        async def five_bulk_queries_running() -> bool:
            return await backends(admin, app_name, sleeping=True) == 5

        await until(five_bulk_queries_running, "5 bulk queries running")
        bulk = level(pool.stats(), "bulk")
        assert (bulk.in_use, bulk.waiting) == (5, 35)  # every unreserved seat; the rest wait
        held = [await pool.acquire("critical") for _ in range(3)]
        assert [await c.fetchval("SELECT $1::int", i) for i, c in enumerate(held)] == [0, 1, 2]
        # the three came from critical's reserved seats: the bulk queries still run, still wait
        assert await backends(admin, app_name, sleeping=True) == 5
        assert level(pool.stats(), "bulk").waiting == 35
        critical = level(pool.stats(), "critical")
        assert (critical.granted, critical.wait.max) == (3, 0.0)  # not one waited
        for connection in held:
            await pool.release(connection)
        await stop(flood)
        await pool.close()
        assert await backends(admin, app_name) == 0
        await admin.close()

    run(body)


def test_higher_levels_borrow_idle_lower_seats_and_never_the_reverse(
    postgres_dsn: str, app_name: str
) -> None:
    async def body() -> None:
        policy = reserved_policy()  # 10 connections: 4/3/2/1 reserved
        async with await create_pool(
            postgres_dsn, policy=policy, server_settings={"application_name": app_name}
        ) as pool:
            low = await pool.acquire("low")
            # nine connections idle, but every one is reserved for a more important level
            with pytest.raises(Rejected) as refused:
                await pool.acquire("low", timeout=0)
            assert refused.value.reason is Reason.TIMEOUT
            # high borrows normal's and low's idle seats, never critical's four
            high = [await pool.acquire("high") for _ in range(5)]
            normal = asyncio.create_task(pool.fetchval("SELECT 'normal'", level="normal"))

            async def normal_waits() -> bool:
                return level(pool.stats(), "normal").waiting == 1

            await until(normal_waits, "the normal checkout queued")
            critical = [await pool.acquire("critical") for _ in range(4)]
            assert pool.stats().in_use == 10
            admin = await asyncpg.connect(postgres_dsn)
            assert await backends(admin, app_name) == 10
            await admin.close()
            # a seat given back goes to the level below its reservation first
            await pool.release(high.pop())
            assert await normal == "normal"
            for connection in [low, *high, *critical]:
                await pool.release(connection)
            assert pool.stats().in_use == 0

    run(body)


def test_a_cancelled_or_timed_out_waiter_gives_its_place_to_the_next(
    postgres_dsn: str, app_name: str
) -> None:
    async def body() -> None:
        async with await create_pool(
            postgres_dsn, max_size=2, server_settings={"application_name": app_name}
        ) as pool:
            a, b = await pool.acquire(), await pool.acquire()
            cancelled = asyncio.create_task(pool.fetchval("SELECT 'cancelled'"))
            timed_out = asyncio.create_task(pool.fetchval("SELECT 'late'", acquire_timeout=0.05))
            served = asyncio.create_task(pool.fetchval("SELECT 'served'"))

            async def three_wait() -> bool:
                return pool.stats().waiting == 3

            await until(three_wait, "three checkouts queued")
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            with pytest.raises(Rejected) as late:
                await timed_out
            assert late.value.reason is Reason.TIMEOUT
            assert late.value.retry_after >= 0
            assert pool.stats().waiting == 1
            await pool.release(a)  # the one seat freed goes to the only waiter left
            assert await served == "served"
            await pool.release(b)
            normal = level(pool.stats(), "normal")
            assert (normal.cancelled, normal.shed[Reason.TIMEOUT], normal.in_use) == (2, 0, 0)

    run(body)


def test_no_connection_leaks_when_the_block_raises(postgres_dsn: str, app_name: str) -> None:
    class Boom(Exception):
        pass

    async def body() -> None:
        async with await create_pool(
            postgres_dsn, max_size=3, server_settings={"application_name": app_name}
        ) as pool:

            async def fail_inside(level: str) -> None:
                async with pool.acquire(level) as connection:
                    await connection.execute("SET statement_timeout = 12345")
                    raise Boom

            for i in range(10):  # more times than there are connections
                with pytest.raises(Boom):
                    await fail_inside(("critical", "low")[i % 2])
                with pytest.raises(asyncpg.DivisionByZeroError):
                    async with pool.acquire() as connection, connection.transaction():
                        await connection.fetchval("SELECT 1 / 0")
                with pytest.raises(asyncpg.DivisionByZeroError):
                    await pool.fetchval("SELECT 1 / 0", level="high")
            assert pool.stats().in_use == 0
            assert pool.pool.get_idle_size() == pool.pool.get_size() == 3
            # every connection was reset on its way back: no setting survives
            results = await asyncio.gather(
                *(pool.fetchval("SELECT current_setting('statement_timeout')") for _ in range(6))
            )
            assert results == ["0"] * 6

    run(body)


def test_the_server_never_sees_more_connections_than_the_pool_size(
    postgres_dsn: str, app_name: str
) -> None:
    async def body() -> None:
        admin = await asyncpg.connect(postgres_dsn)
        seen: list[int] = []
        async with await create_pool(
            postgres_dsn,
            policy=reserved_policy(),
            min_size=1,
            server_settings={"application_name": app_name},
        ) as pool:
            done = asyncio.Event()

            async def watch() -> None:
                while not done.is_set():
                    seen.append(await backends(admin, app_name))

            watcher = asyncio.create_task(watch())
            names = ["critical", "high", "normal", "low"]
            await asyncio.gather(
                *(
                    pool.execute("SELECT pg_sleep(0.02)", level=names[i % 4], flow=i % 3)
                    for i in range(120)
                )
            )
            done.set()
            await watcher
            assert pool.stats().in_use == 0
        await admin.close()
        assert max(seen) <= 10
        assert 10 in seen  # the pool did fill: the bound was tested, not just never reached

    run(body)


def test_the_level_is_the_current_one_when_none_is_given(postgres_dsn: str) -> None:
    async def body() -> None:
        policy = reserved_policy()
        async with await create_pool(postgres_dsn, policy=policy, min_size=1) as pool:
            # a Level of another set with the same name (the HTTP middleware's) finds its seat
            with level_scope(DEFAULT_LEVELS["critical"]):
                assert await pool.fetchval("SELECT 1") == 1
                async with pool.acquire():
                    assert level(pool.stats(), "critical").in_use == 1
            with level_scope(policy.levels["low"]):
                assert await pool.fetchval("SELECT 2", level="high") == 2  # given wins
            assert await pool.fetchval("SELECT 3") == 3  # outside any request: default_level
            granted = {s.level: s.granted for s in pool.stats().levels}
            assert granted == {"critical": 2, "high": 1, "normal": 1, "low": 0}

        async with await create_pool(
            postgres_dsn, policy=policy, min_size=1, default_level="low"
        ) as pool:
            await pool.execute("SELECT 1")
            assert level(pool.stats(), "low").granted == 1

    run(body)


def test_flows_of_one_level_take_turns(postgres_dsn: str) -> None:
    async def body() -> None:
        async with await create_pool(postgres_dsn, max_size=1, min_size=1) as pool:
            order: list[str] = []
            holder = await pool.acquire()

            async def one(flow: str, i: int) -> None:
                async with pool.acquire("normal", flow):
                    order.append(f"{flow}{i}")

            tasks = [asyncio.create_task(one("noisy", i)) for i in range(3)]
            tasks.append(asyncio.create_task(one("quiet", 0)))

            async def four_wait() -> bool:
                return pool.stats().waiting == 4

            await until(four_wait, "four checkouts queued")
            await pool.release(holder)
            await asyncio.gather(*tasks)
            assert order == ["noisy0", "quiet0", "noisy1", "noisy2"]

    run(body)


def test_closing_sheds_the_waiters_and_refuses_new_checkouts(postgres_dsn: str) -> None:
    async def body() -> None:
        pool = await create_pool(postgres_dsn, max_size=1, min_size=1)
        holder = await pool.acquire()
        waiter = asyncio.create_task(pool.fetchval("SELECT 1", level="high"))

        async def one_waits() -> bool:
            return pool.stats().waiting == 1

        await until(one_waits, "a checkout queued")
        closing = asyncio.create_task(pool.close())
        with pytest.raises(Rejected) as shed:
            await waiter
        assert (shed.value.level, shed.value.reason) == ("high", Reason.SHUTDOWN)
        with pytest.raises(Rejected) as refused:
            await pool.acquire()
        assert refused.value.reason is Reason.SHUTDOWN
        await pool.release(holder)  # asyncpg's close waits for it
        await closing
        assert pool.pool.is_closing()

    run(body)


def test_an_existing_asyncpg_pool_can_be_wrapped(postgres_dsn: str) -> None:
    async def body() -> None:
        raw = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=10)
        pool = PriorityPool(raw, policy=reserved_policy(), default_level="high")
        assert pool.pool is raw
        async with pool.acquire() as connection:
            assert await connection.fetchval("SELECT 41 + 1") == 42
            assert repr(pool) == "<PriorityPool db 1/10 connections checked out, 0 waiting>"
        assert level(pool.stats(), "high").granted == 1
        await pool.close()
        assert raw.is_closing()

    run(body)
