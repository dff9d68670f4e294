"""A prioritized asyncpg pool: who gets the next free connection is the policy's decision.

An ``asyncpg.Pool`` hands connections out first come, first served: once a
flood of bulk queries holds every connection, a critical query waits behind
all of them. `PriorityPool` puts a `prioritize.aio.Gate` in front of the
pool, with one seat per connection, so the gate's policy decides who gets
the next one: the levels' ``min`` keep connections reserved for important
work (and lend them while idle), ``max`` caps a level, flows take turns
within a level, and a checkout that cannot get a seat in time is shed with
`Rejected` (reason, retry_after) instead of hanging.

Theory of operation: a checkout takes its seat first, then its connection
from the asyncpg pool. Seats never outnumber connections (the gate's
capacity is the pool's ``max_size``, checked), so a seat always finds a
connection idle or room to open one; the asyncpg pool never queues. A
connection is handed back to asyncpg first and its seat released after, so
the next seat's holder finds it back in the pool. Every path gives both
back: the body raising, the task cancelled while it waits for its seat (the
gate withdraws it) or for its connection (the seat is released).

Use the pool's own ``acquire`` and passthroughs only; connections taken
from the asyncpg pool directly (``pool.pool.acquire()``) bypass the gate.
"""

from __future__ import annotations

from collections.abc import Generator, Hashable, Iterable, Sequence
from types import TracebackType
from typing import Any, final

import asyncpg  # type: ignore[import-untyped,unused-ignore]

from ..aio import Gate, Slot
from ..core.config import Policy
from ..core.levels import Level
from ..core.policy import GatePolicy
from ..core.stats import GateStats
from ..errors import PrioritizeError
from ._common import LevelChooser, check_flow, check_timeout, pool_policy

__all__ = ["Checkout", "PriorityPool", "create_pool"]


async def create_pool(
    dsn: str | None = None,
    *,
    policy: Policy | GatePolicy | None = None,
    gate: str = "db",
    min_size: int | None = None,
    max_size: int | None = None,
    default_level: Level | str | None = None,
    **connect_kwargs: object,
) -> PriorityPool:
    """Open an asyncpg pool of ``max_size`` connections behind the policy's gate ``gate``.

    ``max_size`` defaults to the gate's capacity; given, it must be equal
    (`ConfigError` otherwise). Without a policy the gate has ``max_size``
    seats (10 by default) and no reservations. ``min_size`` defaults to
    asyncpg's 10, lowered to ``max_size``. Every other keyword goes to
    ``asyncpg.create_pool`` (``server_settings``, ``init``, ``setup``...).
    ``default_level`` serves checkouts given no level outside any request
    or job (by default the policy's ``default_level``).
    """
    gate_policy, default = pool_policy(policy, gate, max_size, "max_size")
    size = gate_policy.capacity
    chooser = LevelChooser(gate_policy.level_set, default_level or default)
    if min_size is None:
        min_size = min(10, size)
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=size, **connect_kwargs)
    return PriorityPool._wrap(pool, Gate(gate_policy), chooser)


@final
class PriorityPool:
    """An asyncpg pool whose connections are handed out by a gate's policy.

    Made by `create_pool`, or around an existing ``asyncpg.Pool`` with
    ``PriorityPool(pool, policy=..., gate="db")`` (its ``max_size`` must be
    the gate's capacity). Closing it closes the asyncpg pool too. It binds to
    the event loop that first waits on it, as asyncpg's pool does.
    """

    __slots__ = ("_chooser", "_gate", "_held", "_pool")

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        policy: Policy | GatePolicy | None = None,
        gate: str = "db",
        default_level: Level | str | None = None,
    ) -> None:
        if not isinstance(pool, asyncpg.Pool):
            raise TypeError(
                f"PriorityPool() wraps an asyncpg.Pool (asyncpg.create_pool()), not {pool!r}; "
                "or open one with prioritize.db.asyncpg.create_pool()"
            )
        gate_policy, default = pool_policy(policy, gate, pool.get_max_size(), "max_size")
        chooser = LevelChooser(gate_policy.level_set, default_level or default)
        self._init(pool, Gate(gate_policy), chooser)

    @classmethod
    def _wrap(cls, pool: asyncpg.Pool, gate: Gate, chooser: LevelChooser) -> PriorityPool:
        self = cls.__new__(cls)
        self._init(pool, gate, chooser)
        return self

    def _init(self, pool: asyncpg.Pool, gate: Gate, chooser: LevelChooser) -> None:
        self._pool = pool
        self._gate = gate
        self._chooser = chooser
        #: connections handed out by `acquire`, by id, with the seat each holds
        self._held: dict[int, Slot] = {}

    # -- checking connections out ---------------------------------------------------

    def acquire(
        self,
        level: Level | str | None = None,
        flow: Hashable | None = None,
        *,
        timeout: float | None = None,
    ) -> Checkout:
        """A connection, once the policy gives this checkout a seat.

        ``async with pool.acquire("critical") as conn:`` gives it back on
        exit, whatever happens in the block; ``conn = await
        pool.acquire()`` needs ``await pool.release(conn)``. The level is
        ``level``, else `current_level()` (the request's or job's), else the
        pool's default; ``flow`` (a tenant, a user) takes turns with the
        other flows of its level. Waits at most the level's ``max_wait`` and
        at most ``timeout`` seconds, then raises `Rejected` (reason
        ``timeout``, ``retry_after``); a full queue or a closed pool raises
        it at once.
        """
        chosen = self._chooser.choose(level)
        if flow is not None:
            check_flow(flow)
        return Checkout(self, chosen, flow, check_timeout(timeout))

    async def release(
        self, connection: asyncpg.Connection, *, timeout: float | None = None
    ) -> None:
        """Give back a connection taken with ``await pool.acquire()``, then its seat.

        The seat is released even if asyncpg fails to reset the connection.
        """
        slot = self._held.pop(id(connection), None)
        if slot is None:
            raise PrioritizeError(
                f"{connection!r} is not checked out of this pool: release only a connection "
                "that this pool's acquire() returned, once"
            )
        try:
            await self._pool.release(connection, timeout=timeout)
        finally:
            slot.release()

    async def _checkout(
        self, level: Level, flow: Hashable | None, timeout: float | None
    ) -> asyncpg.Connection:
        slot = self._gate.slot(level, flow, timeout=timeout)
        if not slot.request():
            await slot.granted()
        try:
            # No timeout here: a seat always finds a connection idle or room to open one,
            # and opening one is bounded by asyncpg's own connect timeout.
            connection = await self._pool.acquire()
        except BaseException:
            slot.release()
            raise
        self._held[id(connection)] = slot
        return connection

    # -- queries on a connection of their own -----------------------------------------

    async def execute(
        self,
        query: str,
        *args: object,
        level: Level | str | None = None,
        flow: Hashable | None = None,
        acquire_timeout: float | None = None,
        **kwargs: Any,
    ) -> str:
        """``Connection.execute`` on a connection checked out at ``level`` for the call.

        ``acquire_timeout`` bounds the wait for a seat (`acquire`'s
        ``timeout``); ``timeout`` and other keywords are asyncpg's own.
        """
        async with self.acquire(level, flow, timeout=acquire_timeout) as connection:
            result: str = await connection.execute(query, *args, **kwargs)
            return result

    async def executemany(
        self,
        command: str,
        args: Iterable[Sequence[object]],
        *,
        level: Level | str | None = None,
        flow: Hashable | None = None,
        acquire_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        """``Connection.executemany`` on a connection checked out at ``level`` (see `execute`)."""
        async with self.acquire(level, flow, timeout=acquire_timeout) as connection:
            await connection.executemany(command, args, **kwargs)

    async def fetch(
        self,
        query: str,
        *args: object,
        level: Level | str | None = None,
        flow: Hashable | None = None,
        acquire_timeout: float | None = None,
        **kwargs: Any,
    ) -> list[asyncpg.Record]:
        """``Connection.fetch`` on a connection checked out at ``level`` (see `execute`)."""
        async with self.acquire(level, flow, timeout=acquire_timeout) as connection:
            rows: list[asyncpg.Record] = await connection.fetch(query, *args, **kwargs)
            return rows

    async def fetchrow(
        self,
        query: str,
        *args: object,
        level: Level | str | None = None,
        flow: Hashable | None = None,
        acquire_timeout: float | None = None,
        **kwargs: Any,
    ) -> asyncpg.Record | None:
        """``Connection.fetchrow`` on a connection checked out at ``level`` (see `execute`)."""
        async with self.acquire(level, flow, timeout=acquire_timeout) as connection:
            row: asyncpg.Record | None = await connection.fetchrow(query, *args, **kwargs)
            return row

    async def fetchval(
        self,
        query: str,
        *args: object,
        column: int = 0,
        level: Level | str | None = None,
        flow: Hashable | None = None,
        acquire_timeout: float | None = None,
        **kwargs: Any,
    ) -> object:
        """``Connection.fetchval`` on a connection checked out at ``level`` (see `execute`)."""
        async with self.acquire(level, flow, timeout=acquire_timeout) as connection:
            return await connection.fetchval(query, *args, column=column, **kwargs)

    # -- the pool -------------------------------------------------------------------------

    @property
    def pool(self) -> asyncpg.Pool:
        """The asyncpg pool behind the gate (read it; check out through `acquire`)."""
        return self._pool

    @property
    def gate(self) -> Gate:
        """The gate that hands out the seats, one per connection."""
        return self._gate

    def stats(self) -> GateStats:
        """Seats held and waiting per level, and their counters, as a frozen snapshot."""
        return self._gate.stats()

    async def close(self) -> None:
        """Shed every waiting checkout (reason ``shutdown``), then close the asyncpg pool.

        Like ``asyncpg.Pool.close``, this waits for checked-out connections to be
        given back; later checkouts are shed.
        """
        self._gate.close()
        await self._pool.close()

    def terminate(self) -> None:
        """Shed every waiting checkout and close every connection at once."""
        self._gate.close()
        self._pool.terminate()

    async def __aenter__(self) -> PriorityPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        s = self._gate.scheduler
        return (
            f"<PriorityPool {s.name} {s.in_use}/{s.capacity} connections checked out, "
            f"{s.waiting} waiting>"
        )


@final
class Checkout:
    """One checkout in progress: ``async with`` it, or ``await`` it (then `release`)."""

    __slots__ = ("_connection", "_flow", "_level", "_pool", "_timeout")

    def __init__(
        self, pool: PriorityPool, level: Level, flow: Hashable | None, timeout: float | None
    ) -> None:
        self._pool = pool
        self._level = level
        self._flow = flow
        self._timeout = timeout
        self._connection: asyncpg.Connection | None = None

    def __await__(self) -> Generator[Any, None, asyncpg.Connection]:
        return self._pool._checkout(self._level, self._flow, self._timeout).__await__()

    async def __aenter__(self) -> asyncpg.Connection:
        if self._connection is not None:
            raise PrioritizeError("this checkout is in use already: call acquire() again")
        self._connection = await self._pool._checkout(self._level, self._flow, self._timeout)
        return self._connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection, self._connection = self._connection, None
        await self._pool.release(connection)

    def __repr__(self) -> str:
        return f"<Checkout {self._level.name} of {self._pool!r}>"
