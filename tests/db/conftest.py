"""A PostgreSQL database of its own for each test session.

``scripts/ensure-services`` (run by ``make test``) starts the machine's
PostgreSQL and makes sure the role ``prioritize`` exists. This fixture
connects as that role (or to ``PRIORITIZE_TEST_POSTGRES``, an admin DSN),
creates a database with a unique name, hands out its DSN, and drops it at
the end, so runs never collide and leave nothing behind. A server that
cannot be reached skips the database tests with the reason, except under
``CI=true``, where it is a failure.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

ADMIN_DSN = os.environ.get(
    "PRIORITIZE_TEST_POSTGRES", "postgresql://prioritize:prioritize@127.0.0.1:5432/postgres"
)


def with_database(dsn: str, name: str) -> str:
    """The same server and credentials, another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _where(dsn: str) -> str:
    parts = urlsplit(dsn)
    return f"{parts.hostname}:{parts.port or 5432} as {parts.username!r}"


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(ADMIN_DSN, timeout=10)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """The DSN of a fresh, empty database, created for this session and dropped after it."""
    name = f"prioritize_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        message = (
            f"PostgreSQL at {_where(ADMIN_DSN)} is not usable ({type(exc).__name__}: {exc}); "
            "run scripts/ensure-services as root (make test does), or set "
            "PRIORITIZE_TEST_POSTGRES to an admin DSN whose role may create databases"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield with_database(ADMIN_DSN, name)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def app_name() -> str:
    """An ``application_name`` of this test's own, to count its connections in pg_stat_activity."""
    return f"prioritize-test-{secrets.token_hex(6)}"
