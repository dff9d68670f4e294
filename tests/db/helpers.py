"""What the database tests share: the reservation policy, waiting for a state, the server's view.

Waiting is for a *state* (a count in ``pg_stat_activity``, a gate's
counters), polled with a deadline; no test sleeps a fixed time in the hope
that something has happened.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from prioritize import Policy, policy_from_toml

#: the source document's pool: 40/30/20/10 % reserved, higher levels borrowing lower ones' seats
RESERVED_TOML = """
levels = ["critical", "high", "normal", "low"]
default_level = "normal"

[gates.db]
capacity = 10

[gates.db.levels.critical]
min = "40%"

[gates.db.levels.high]
min = "30%"

[gates.db.levels.normal]
min = "20%"

[gates.db.levels.low]
min = "10%"
"""

#: a gate whose bulk may fill every seat critical does not reserve, and wait as long as it
#: takes; low waits 50 ms at most
FLOOD_TOML = """
[gates.db]
capacity = 8

[gates.db.levels.critical]
min = 3

[gates.db.levels.low]
max_wait = 0.05

[gates.db.levels.bulk]
max_wait = inf
"""

DEADLINE = 20.0


def reserved_policy() -> Policy:
    return policy_from_toml(RESERVED_TOML, "reserved.toml")


def flood_policy() -> Policy:
    return policy_from_toml(FLOOD_TOML, "flood.toml")


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait until ``check()`` is true; fail, naming ``what``, if it never becomes so."""
    stop = time.monotonic() + DEADLINE
    while not await check():
        if time.monotonic() > stop:
            pytest.fail(f"never saw: {what}")
        await asyncio.sleep(0.005)


def until_sync(check: Callable[[], bool], what: str) -> None:
    """`until` for threads."""
    stop = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > stop:
            pytest.fail(f"never saw: {what}")
        time.sleep(0.005)


async def backends(admin: asyncpg.Connection, app_name: str, *, sleeping: bool = False) -> int:
    """Connections open on the server under ``app_name`` (only those in pg_sleep if asked)."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
    if sleeping:
        query += " AND state = 'active' AND query LIKE 'SELECT pg_sleep%'"
    count: int = await admin.fetchval(query, app_name)
    return count


async def cancel_sleepers(admin: asyncpg.Connection, app_name: str) -> None:
    """Cancel the pg_sleep queries running under ``app_name`` (their callers see an error)."""
    await admin.execute(
        "SELECT pg_cancel_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = $1 AND query LIKE 'SELECT pg_sleep%'",
        app_name,
    )
