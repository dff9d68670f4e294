"""Prioritized SQLAlchemy engines against a real PostgreSQL: sync (threads) and async."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from prioritize import Reason, Rejected, level_scope
from prioritize.core.stats import GateStats, LevelStats
from prioritize.db.sqlalchemy import (
    PriorityAsyncQueuePool,
    PriorityQueuePool,
    create_async_engine,
    create_engine,
)
from tests.db.helpers import (
    backends,
    cancel_sleepers,
    flood_policy,
    reserved_policy,
    until,
    until_sync,
)


def level(stats: GateStats, name: str) -> LevelStats:
    return next(s for s in stats.levels if s.level == name)


def sync_url(dsn: str) -> sa.URL:
    return sa.make_url(dsn).set(drivername="postgresql+psycopg")


def async_url(dsn: str) -> sa.URL:
    return sa.make_url(dsn).set(drivername="postgresql+asyncpg")


def server_count(dsn: str, app_name: str, *, sleeping: bool = False) -> int:
    async def count() -> int:
        admin = await asyncpg.connect(dsn)
        try:
            return await backends(admin, app_name, sleeping=sleeping)
        finally:
            await admin.close()

    return asyncio.run(count())


def cancel_sync_sleepers(dsn: str, app_name: str) -> None:
    async def cancel() -> None:
        admin = await asyncpg.connect(dsn)
        try:
            await cancel_sleepers(admin, app_name)
        finally:
            await admin.close()

    asyncio.run(cancel())


@pytest.fixture
def engine(postgres_dsn: str, app_name: str) -> Iterator[sa.Engine]:
    engine = create_engine(
        sync_url(postgres_dsn),
        policy=flood_policy(),
        connect_args={"application_name": app_name},
    )
    yield engine
    engine.dispose()


def test_sync_critical_gets_a_connection_while_bulk_threads_hold_the_rest(
    engine: sa.Engine, postgres_dsn: str, app_name: str
) -> None:
    policy = flood_policy()
    pool = engine.pool
    assert isinstance(pool, PriorityQueuePool)
    outcomes: list[str] = []

    def bulk() -> None:
        with level_scope(policy.levels["bulk"]):
            try:
                with engine.connect() as connection:
                    connection.execute(sa.text("SELECT pg_sleep(60)"))
            except OperationalError:  # cancelled by the test, once it has seen enough
                outcomes.append("cancelled")

    threads = [threading.Thread(target=bulk) for _ in range(12)]
    for thread in threads:
        thread.start()
    until_sync(
        lambda: server_count(postgres_dsn, app_name, sleeping=True) == 5,
        "5 bulk queries running",
    )
    until_sync(lambda: level(pool.stats(), "bulk").waiting == 7, "7 bulk threads queued")
    with level_scope(policy.levels["critical"]):
        held = [engine.connect() for _ in range(3)]
        assert [c.execute(sa.text("SELECT 1")).scalar() for c in held] == [1, 1, 1]
    assert server_count(postgres_dsn, app_name, sleeping=True) == 5
    critical = level(pool.stats(), "critical")
    assert (critical.in_use, critical.wait.max) == (3, 0.0)
    for connection in held:
        connection.close()
    while any(thread.is_alive() for thread in threads):
        cancel_sync_sleepers(postgres_dsn, app_name)
        for thread in threads:
            thread.join(0.05)
    assert outcomes == ["cancelled"] * 12
    assert pool.stats().in_use == 0


def test_sync_checkout_times_out_with_rejected(postgres_dsn: str) -> None:
    engine = create_engine(sync_url(postgres_dsn), pool_size=1, pool_timeout=0.01)
    try:
        with engine.connect():
            with pytest.raises(Rejected) as late:
                engine.connect()
            assert (late.value.level, late.value.reason) == ("normal", Reason.TIMEOUT)
        with engine.connect() as connection:  # the timed-out waiter took nothing
            assert connection.execute(sa.text("SELECT 2")).scalar() == 2
    finally:
        engine.dispose()


def test_sync_seats_come_back_on_error_invalidation_detach_and_dispose(
    postgres_dsn: str, app_name: str
) -> None:
    engine = create_engine(
        sync_url(postgres_dsn),
        policy=reserved_policy(),
        pool_size=3,
        connect_args={"application_name": app_name},
    )
    pool = engine.pool
    assert isinstance(pool, PriorityQueuePool)
    gate = pool.gate
    assert (pool.size(), pool._max_overflow) == (3, 7)
    for _ in range(12):
        with pytest.raises(sa.exc.DataError), engine.connect() as connection:
            connection.execute(sa.text("SELECT 1 / 0"))
    assert gate.scheduler.in_use == 0
    connection = engine.connect()
    connection.invalidate()
    connection.close()
    assert gate.scheduler.in_use == 0
    raw = engine.raw_connection()
    raw.detach()  # leaves the pool, and its seat
    assert gate.scheduler.in_use == 0
    raw.close()
    old = engine.connect()
    engine.dispose()  # a new pool, the same gate: the old pool's connection still counts
    assert engine.pool is not pool
    assert engine.pool.gate is gate  # type: ignore[attr-defined]
    assert gate.scheduler.in_use == 1
    old.close()
    assert gate.scheduler.in_use == 0
    pool.dispose()  # the old pool kept that connection: close it
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT 3")).scalar() == 3
    engine.dispose()
    until_sync(lambda: server_count(postgres_dsn, app_name) == 0, "every connection closed")


def test_sync_a_failed_connect_gives_its_seat_back(postgres_dsn: str) -> None:
    url = sync_url(postgres_dsn).set(password="not-the-password")
    engine = create_engine(url, pool_size=2)
    pool = engine.pool
    assert isinstance(pool, PriorityQueuePool)
    for _ in range(5):
        with pytest.raises(OperationalError, match="password authentication failed"):
            engine.connect()
    assert pool.gate.scheduler.in_use == 0
    engine.dispose()


def test_sync_threads_never_open_more_than_pool_size_plus_overflow(
    postgres_dsn: str, app_name: str
) -> None:
    engine = create_engine(
        sync_url(postgres_dsn),
        pool_size=2,
        max_overflow=2,
        connect_args={"application_name": app_name},
    )
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(server_count(postgres_dsn, app_name))

    def work(i: int) -> None:
        for _ in range(5):
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT pg_sleep(0.01)"))

    watcher = threading.Thread(target=watch)
    watcher.start()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(10)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    done.set()
    watcher.join()
    engine.dispose()
    assert max(seen) <= 4
    assert 4 in seen


def test_an_engine_made_by_sqlalchemy_itself_takes_the_pool_class(postgres_dsn: str) -> None:
    policy = reserved_policy()
    engine = sa.create_engine(
        sync_url(postgres_dsn), poolclass=PriorityQueuePool, policy=policy, gate="db"
    )
    try:
        with level_scope(policy.levels["high"]), engine.connect() as connection:
            assert connection.execute(sa.text("SELECT 4")).scalar() == 4
        assert level(engine.pool.stats(), "high").granted == 1  # type: ignore[attr-defined]
        assert engine.pool.size() == 10
    finally:
        engine.dispose()


def test_async_engine_serves_critical_first_and_sheds_on_timeout(
    postgres_dsn: str, app_name: str
) -> None:
    policy = flood_policy()

    async def body() -> None:
        engine = create_async_engine(
            async_url(postgres_dsn),
            policy=policy,
            connect_args={"server_settings": {"application_name": app_name}},
        )
        pool = engine.sync_engine.pool
        assert isinstance(pool, PriorityAsyncQueuePool)
        admin = await asyncpg.connect(postgres_dsn)

        async def bulk() -> None:
            with level_scope(policy.levels["bulk"]):
                async with engine.connect() as connection:
                    await connection.execute(sa.text("SELECT pg_sleep(60)"))

        flood = [asyncio.create_task(bulk()) for _ in range(9)]

        async def five_running() -> bool:
            return await backends(admin, app_name, sleeping=True) == 5

        await until(five_running, "5 bulk queries running")
        assert level(pool.stats(), "bulk").waiting == 4
        with level_scope(policy.levels["critical"]):
            async with engine.connect() as connection:
                assert (await connection.execute(sa.text("SELECT 5"))).scalar() == 5
                assert level(pool.stats(), "critical").wait.max == 0.0
        assert await backends(admin, app_name, sleeping=True) == 5
        with level_scope(policy.levels["low"]), pytest.raises(Rejected) as late:
            await engine.connect()  # no seat reserved for low, none free: shed at max_wait
        assert (late.value.level, late.value.reason) == ("low", Reason.TIMEOUT)
        for task in flood:
            task.cancel()
        await asyncio.gather(*flood, return_exceptions=True)
        assert pool.stats().in_use == 0
        await engine.dispose()
        await admin.close()

    asyncio.run(body())


def test_async_a_cancelled_waiter_frees_its_place_and_errors_give_seats_back(
    postgres_dsn: str,
) -> None:
    async def body() -> None:
        engine = create_async_engine(async_url(postgres_dsn), pool_size=1)
        pool = engine.sync_engine.pool
        assert isinstance(pool, PriorityAsyncQueuePool)
        holder = await engine.connect()

        async def query(text: str) -> object:
            async with engine.connect() as connection:
                return (await connection.execute(sa.text(text))).scalar()

        cancelled = asyncio.create_task(query("SELECT 'cancelled'"))
        served = asyncio.create_task(query("SELECT 'served'"))

        async def two_wait() -> bool:
            return pool.stats().waiting == 2

        await until(two_wait, "two checkouts queued")
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        await holder.close()
        assert await served == "served"
        for _ in range(4):
            with pytest.raises(sa.exc.DBAPIError, match="division by zero"):
                await query("SELECT 1 / 0")
        assert pool.stats().in_use == 0
        assert level(pool.stats(), "normal").cancelled == 1
        await engine.dispose()

    asyncio.run(body())
