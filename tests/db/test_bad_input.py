"""Every bad input to the database pools gets an error naming what was wrong and what is accepted.

None of these needs a server: arguments are checked before anything connects.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from prioritize import (
    ConfigError,
    GatePolicy,
    LevelSet,
    PrioritizeError,
    UnknownLevelError,
    level_scope,
    policy_from_toml,
)
from prioritize.db.asyncpg import PriorityPool, create_pool
from prioritize.db.sqlalchemy import PriorityQueuePool, create_async_engine, create_engine
from tests.db.helpers import reserved_policy

NOWHERE = "postgresql://nobody@127.0.0.1:1/nothing"
SYNC_URL = "postgresql+psycopg://nobody@127.0.0.1:1/nothing"
LEVELS = "['critical', 'high', 'normal', 'low']"


def opening(**kwargs: object) -> Callable[[], object]:
    return lambda: asyncio.run(create_pool(NOWHERE, **kwargs))  # type: ignore[arg-type]


ASYNCPG_CASES = [
    (
        {"policy": reserved_policy(), "max_size": 5},
        ConfigError,
        "gates.db.capacity: is 10, but the pool's max_size is 5: a database pool holds one "
        "connection per seat, so they must be equal; leave max_size out to use the gate's "
        "capacity",
    ),
    (
        {"policy": reserved_policy(), "gate": "dbs"},
        ConfigError,
        "gates.dbs: no such gate in reserved.toml; did you mean 'db'? gates defined: 'db'",
    ),
    (
        {"policy": reserved_policy(), "gate": 3},
        TypeError,
        "gate must be the name of a gate of the policy (a str), not 3",
    ),
    (
        {"policy": "prioritize.toml"},
        TypeError,
        "policy must be a Policy (load_policy(), policy_from_toml(), parse_policy()), "
        "a GatePolicy or None, not 'prioritize.toml'",
    ),
    (
        {"max_size": "10"},
        TypeError,
        "max_size must be a whole number of connections (an int), not '10'",
    ),
    ({"max_size": True}, TypeError, "max_size must be a whole number of connections"),
    ({"max_size": 0}, ValueError, "max_size must be ≥ 1, not 0"),
    (
        {"policy": reserved_policy(), "default_level": "urgent"},
        UnknownLevelError,
        f"default_level 'urgent' is not a level of this pool; valid levels are {LEVELS}",
    ),
    (
        {
            "policy": policy_from_toml(
                '[gates.db]\ncapacity = {adaptive = "gradient", min = 2, max = 20}\n', "ad.toml"
            )
        },
        ConfigError,
        "gates.db.capacity: an adaptive capacity cannot size a database pool: give a whole "
        "number of connections (capacity = 20) (in ad.toml)",
    ),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), ASYNCPG_CASES)
def test_create_pool_refuses_bad_arguments_before_connecting(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        opening(**kwargs)()


def test_wrapping_needs_an_asyncpg_pool() -> None:
    with pytest.raises(TypeError, match=re.escape("PriorityPool() wraps an asyncpg.Pool")):
        PriorityPool("not a pool")  # type: ignore[arg-type]


def test_checkouts_refuse_bad_levels_timeouts_and_flows(postgres_dsn: str) -> None:
    async def body() -> None:
        async with await create_pool(postgres_dsn, policy=reserved_policy(), min_size=1) as pool:
            cases: list[tuple[Callable[[], object], type[Exception], str]] = [
                (
                    lambda: pool.acquire("urgent"),
                    UnknownLevelError,
                    f"level 'urgent' is not a level of this pool; valid levels are {LEVELS}",
                ),
                (
                    lambda: pool.acquire(2),  # type: ignore[arg-type]
                    TypeError,
                    f"level must be a level name (one of {LEVELS}), a Level or None, not 2",
                ),
                (
                    lambda: pool.acquire(timeout=-1),
                    ValueError,
                    "timeout must be a number of seconds ≥ 0 or None, not -1",
                ),
                (
                    lambda: pool.acquire(timeout="1"),  # type: ignore[arg-type]
                    TypeError,
                    "timeout must be a number of seconds or None, not '1'",
                ),
                (
                    lambda: pool.acquire(flow=["a"]),
                    TypeError,
                    "flow must be hashable (a tenant or user id: str, int, tuple), not ['a']",
                ),
            ]
            for call, error, message in cases:
                with pytest.raises(error, match=re.escape(message)):
                    call()
            with pytest.raises(UnknownLevelError, match="level 'bulk' is not a level of this"):
                await pool.fetchval("SELECT 1", level="bulk")
            foreign_level = LevelSet(["urgent", "later"])["urgent"]
            with level_scope(foreign_level), pytest.raises(UnknownLevelError) as foreign:
                pool.acquire()
            assert str(foreign.value) == (
                "the current level 'urgent' (of the request or job being served) is not a "
                f"level of this pool; its levels are {LEVELS}: use the same level names in "
                "both policies, or pass level="
            )
            raw = await pool.pool.acquire()
            with pytest.raises(PrioritizeError, match="is not checked out of this pool"):
                await pool.release(raw)
            await pool.pool.release(raw)
            checkout = pool.acquire()
            async with checkout:
                with pytest.raises(PrioritizeError, match="this checkout is in use already"):
                    await checkout.__aenter__()
            assert pool.stats().in_use == 0

    asyncio.run(body())


SQLALCHEMY_CASES = [
    (
        {"policy": reserved_policy(), "pool_size": 4, "max_overflow": 4},
        ConfigError,
        "gates.db.capacity: is 10, but the pool's pool_size + max_overflow is 4 + 4: a "
        "database pool holds one connection per seat, so pool_size + max_overflow must equal "
        "the capacity (pool_size ≥ 1); leave both out to pool every seat's connection",
    ),
    (
        {"policy": reserved_policy(), "pool_size": 12},
        ConfigError,
        "gates.db.capacity: is 10, but the pool's pool_size is 12:",
    ),
    (
        {"policy": reserved_policy(), "max_overflow": 10},
        ConfigError,
        "gates.db.capacity: is 10, but the pool's max_overflow is 10:",
    ),
    (
        {"max_overflow": -1},
        ValueError,
        "max_overflow = -1 (no limit) cannot be prioritized: every connection is a seat of "
        "the gate; leave max_overflow out, or give a whole number ≥ 0",
    ),
    ({"pool_size": 0}, ValueError, "pool_size must be ≥ 1, not 0"),
    (
        {"pool_size": 2.5},
        TypeError,
        "pool_size must be a whole number of connections (an int), not 2.5",
    ),
    (
        {"pool_timeout": -1},
        ValueError,
        "timeout (pool_timeout) must be a number of seconds ≥ 0 or None, not -1",
    ),
    (
        {"pool_timeout": "soon"},
        TypeError,
        "timeout (pool_timeout) must be a number of seconds or None, not 'soon'",
    ),
    (
        {"poolclass": sa.pool.NullPool},
        TypeError,
        "poolclass=<class 'sqlalchemy.pool.impl.NullPool'>: this engine's pool is a "
        "PriorityQueuePool; leave poolclass out, or use sqlalchemy's own create_engine with "
        "another pool",
    ),
    (
        {"policy": reserved_policy(), "gate": "api"},
        ConfigError,
        "gates.api: no such gate in reserved.toml; gates defined: 'db'",
    ),
    (
        {"policy": reserved_policy(), "default_level": 3},
        TypeError,
        f"default_level must be a level name (one of {LEVELS}), a Level or None, not 3",
    ),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), SQLALCHEMY_CASES)
def test_create_engine_refuses_bad_arguments(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        create_engine(SYNC_URL, **kwargs)


def test_create_async_engine_refuses_bad_arguments() -> None:
    with pytest.raises(TypeError, match="this engine's pool is a PriorityAsyncQueuePool"):
        create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/x", pool=object())
    with pytest.raises(ConfigError, match=re.escape("but the pool's pool_size is 11")):
        create_async_engine(
            "postgresql+asyncpg://nobody@127.0.0.1:1/x", policy=reserved_policy(), pool_size=11
        )


def test_a_foreign_current_level_is_refused_at_checkout() -> None:
    engine = create_engine(SYNC_URL, policy=reserved_policy())
    with level_scope(LevelSet(["urgent"])["urgent"]), pytest.raises(UnknownLevelError) as foreign:
        engine.connect()
    assert "the current level 'urgent'" in str(foreign.value)
    assert engine.pool.stats().in_use == 0  # type: ignore[attr-defined]
    engine.dispose()


@given(
    capacity=st.integers(1, 40),
    pool_size=st.none() | st.integers(-2, 50),
    max_overflow=st.none() | st.integers(-2, 50),
)
def test_pool_sizes_must_add_up_to_the_capacity(
    capacity: int, pool_size: int | None, max_overflow: int | None
) -> None:
    policy = GatePolicy(capacity=capacity, name="db")
    size = capacity - (max_overflow or 0) if pool_size is None else pool_size
    overflow = capacity - size if max_overflow is None else max_overflow
    valid = (pool_size is None or pool_size >= 1) and (max_overflow is None or max_overflow >= 0)
    if valid and size >= 1 and overflow >= 0 and size + overflow == capacity:
        pool = PriorityQueuePool(
            lambda: None, pool_size=pool_size, max_overflow=max_overflow, policy=policy
        )
        assert (pool.size(), pool._max_overflow, pool.gate.capacity) == (size, overflow, capacity)
    else:
        with pytest.raises((ConfigError, ValueError)) as refused:
            PriorityQueuePool(
                lambda: None, pool_size=pool_size, max_overflow=max_overflow, policy=policy
            )
        text = str(refused.value)
        assert "pool_size" in text or "max_overflow" in text
        if isinstance(refused.value, ConfigError):
            assert text.startswith(f"gates.db.capacity: is {capacity}, but the pool's ")
