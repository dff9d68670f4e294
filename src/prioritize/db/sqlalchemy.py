"""Prioritized SQLAlchemy engines: change how the engine is made, and nothing else.

SQLAlchemy's `QueuePool` hands connections out first come, first served.
The pools here put a gate in front of it, one seat per connection, so the
policy (``[gates.db]``: ``min`` reserved per level and lent while idle,
``max``, ``max_wait``) decides which checkout gets the next one, and a
checkout that cannot get one in time raises `Rejected` (reason,
retry_after) rather than SQLAlchemy's pool ``TimeoutError``::

    engine = prioritize.db.sqlalchemy.create_engine(url, policy=policy)
    engine = prioritize.db.sqlalchemy.create_async_engine(url, policy=policy)

or, for an engine made elsewhere, ``sqlalchemy.create_engine(url,
poolclass=PriorityQueuePool, policy=policy, gate="db")`` (SQLAlchemy hands
the pool class the keywords its constructor names).

A checkout's level is the level of the request or job being served
(`current_level`), or ``with prioritize.level_scope(level):`` around the
code that connects, else the pool's ``default_level``. Synchronous engines
wait in the checking-out thread (`BlockingGate`); async engines wait on the
event loop (`prioritize.aio.Gate`), from inside SQLAlchemy's greenlet.

Theory of operation: `_do_get` takes the seat, then the connection from the
`QueuePool` underneath; `_do_return_conn` puts the connection back, then
releases the seat. SQLAlchemy routes every way a checked-out connection
ends through `_do_return_conn` (close, garbage collection, invalidation,
``detach``, a failed connect after checkout), so every seat is released
once. The gate's capacity is ``pool_size + max_overflow``, so a seat always
finds a pooled connection or room to open one, and the QueuePool never
waits. ``engine.dispose()`` makes a new pool sharing the same gate: the old
pool's connections still count until they are returned to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import sqlalchemy
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, QueuePool
from sqlalchemy.util import await_only

from ..aio import Gate, Slot
from ..core.config import Policy
from ..core.levels import Level
from ..core.policy import GatePolicy
from ..core.stats import GateStats
from ..errors import ConfigError, Problem
from ._blocking import BlockingGate, Seat
from ._common import LevelChooser, check_size, check_timeout, pool_policy

__all__ = [
    "PriorityAsyncQueuePool",
    "PriorityQueuePool",
    "create_async_engine",
    "create_engine",
]


def create_engine(
    url: str | sqlalchemy.URL,
    *,
    policy: Policy | GatePolicy | None = None,
    gate: str = "db",
    **kwargs: Any,
) -> sqlalchemy.Engine:
    """``sqlalchemy.create_engine`` with a `PriorityQueuePool` governed by ``policy``.

    Every keyword SQLAlchemy accepts is accepted, ``pool_size``,
    ``max_overflow`` and ``pool_timeout`` included (see `PriorityQueuePool`
    for how they must agree with the gate's capacity); ``default_level``
    goes to the pool.
    """
    _no_other_pool(kwargs, PriorityQueuePool)
    return sqlalchemy.create_engine(
        url, poolclass=PriorityQueuePool, policy=policy, gate=gate, **kwargs
    )


def create_async_engine(
    url: str | sqlalchemy.URL,
    *,
    policy: Policy | GatePolicy | None = None,
    gate: str = "db",
    **kwargs: Any,
) -> AsyncEngine:
    """``sqlalchemy.ext.asyncio.create_async_engine`` with a `PriorityAsyncQueuePool`.

    As `create_engine`, for an async driver (``postgresql+asyncpg://``).
    """
    _no_other_pool(kwargs, PriorityAsyncQueuePool)
    return _create_async_engine(
        url, poolclass=PriorityAsyncQueuePool, policy=policy, gate=gate, **kwargs
    )


def _no_other_pool(kwargs: dict[str, Any], ours: type) -> None:
    for key in ("pool", "poolclass"):
        if key in kwargs and kwargs[key] is not ours:
            raise TypeError(
                f"{key}={kwargs[key]!r}: this engine's pool is a {ours.__name__}; "
                f"leave {key} out, or use sqlalchemy's own create_engine with another pool"
            )
    kwargs.pop("poolclass", None)


def _sizes(
    capacity: int, pool_size: int | None, max_overflow: int | None, name: str
) -> tuple[int, int]:
    """``pool_size`` and ``max_overflow`` that add up to the gate's ``capacity``.

    Neither given: every seat is a pooled connection. One given: the other
    makes up the rest. Both given: they must add up.
    """
    _limited(max_overflow)
    if max_overflow is not None:
        check_size(max_overflow, "max_overflow", least=0)
    if pool_size is not None:
        check_size(pool_size, "pool_size")
    if pool_size is None:
        given = f"max_overflow is {max_overflow}"
        overflow = max_overflow or 0
        size = capacity - overflow
    elif max_overflow is None:
        given = f"pool_size is {pool_size}"
        size, overflow = pool_size, capacity - pool_size
    else:
        given = f"pool_size + max_overflow is {pool_size} + {max_overflow}"
        size, overflow = pool_size, max_overflow
    if size < 1 or overflow < 0 or size + overflow != capacity:
        raise ConfigError(
            [
                Problem(
                    f"gates.{name}.capacity",
                    f"is {capacity}, but the pool's {given}: a database pool holds one "
                    "connection per seat, so pool_size + max_overflow must equal the "
                    "capacity (pool_size ≥ 1); leave both out to pool every seat's connection",
                )
            ]
        )
    return size, overflow


def _limited(max_overflow: object) -> None:
    if max_overflow == -1:
        raise ValueError(
            "max_overflow = -1 (no limit) cannot be prioritized: every connection is a seat "
            "of the gate; leave max_overflow out, or give a whole number ≥ 0"
        )


class _Prioritized:
    """What both pools share: the policy's gate, its level chooser, and the seats held."""

    _chooser: LevelChooser
    _gate_policy: GatePolicy
    _timeout: float

    def _setup(
        self,
        *,
        policy: Policy | GatePolicy | None,
        gate: str,
        pool_size: int | None,
        max_overflow: int | None,
        timeout: float,
        default_level: Level | str | None,
    ) -> tuple[int, int, float]:
        """Check the arguments; the pool's sizes and timeout for `QueuePool.__init__`."""
        size = None
        _limited(max_overflow)
        if policy is None:  # the gate is as large as the pool: 10 connections unless told
            size = 10 if pool_size is None else check_size(pool_size, "pool_size")
            if max_overflow is not None:
                size += check_size(max_overflow, "max_overflow", least=0)
        gate_policy, default = pool_policy(policy, gate, size, "pool_size + max_overflow")
        sizes = _sizes(gate_policy.capacity, pool_size, max_overflow, gate_policy.name)
        checked = check_timeout(timeout, "timeout (pool_timeout)")
        self._gate_policy = gate_policy
        self._chooser = LevelChooser(gate_policy.level_set, default_level or default)
        self._timeout = 30.0 if checked is None else checked
        return sizes[0], sizes[1], self._timeout

    def _recreated(self, pool: QueuePool) -> Any:
        """A fresh pool of the same class and settings sharing this pool's gate."""
        return pool.__class__(
            pool._creator,
            pool_size=pool.size(),
            max_overflow=pool._max_overflow,
            timeout=pool._timeout,
            pre_ping=pool._pre_ping,
            use_lifo=pool._pool.use_lifo,
            recycle=pool._recycle,
            echo=pool.echo,
            logging_name=pool._orig_logging_name,
            reset_on_return=pool._reset_on_return,
            _dispatch=pool.dispatch,
            dialect=pool._dialect,
            policy=self._gate_policy,
            default_level=self._chooser.default,
        )


class PriorityQueuePool(_Prioritized, QueuePool):
    """A `QueuePool` whose checkouts wait for a seat of the policy's gate, in their thread.

    ``policy`` is a `Policy` (its gate ``gate`` is used) or a `GatePolicy`;
    without one, the gate has ``pool_size + max_overflow`` seats and no
    reservations. ``pool_size`` and ``max_overflow`` default so that every
    seat has a pooled connection; given, they must add up to the gate's
    capacity (`ConfigError`), ``max_overflow = -1`` (no limit) is refused.
    ``timeout`` (``pool_timeout``) bounds the wait for a seat, with the
    level's ``max_wait``. Thread-safe.
    """

    def __init__(  # noqa: PLR0917  # create_engine passes the keywords named here, not kw-only ones
        self,
        creator: Callable[..., Any],
        pool_size: int | None = None,
        max_overflow: int | None = None,
        timeout: float = 30.0,
        policy: Policy | GatePolicy | None = None,
        gate: str = "db",
        default_level: Level | str | None = None,
        **kw: Any,
    ) -> None:
        size, overflow, wait = self._setup(
            policy=policy,
            gate=gate,
            pool_size=pool_size,
            max_overflow=max_overflow,
            timeout=timeout,
            default_level=default_level,
        )
        super().__init__(creator, pool_size=size, max_overflow=overflow, timeout=wait, **kw)
        self._seats = BlockingGate(self._gate_policy)
        self._held: dict[int, Seat] = {}

    @property
    def gate(self) -> BlockingGate:
        """The gate that hands out the seats, one per connection."""
        return self._seats

    def stats(self) -> GateStats:
        """Seats held and waiting per level, and their counters, as a frozen snapshot."""
        return self._seats.stats()

    def _do_get(self) -> ConnectionPoolEntry:
        seat = self._seats.acquire(self._chooser.choose(None), None, self._timeout)
        try:
            record = super()._do_get()
        except BaseException:
            self._seats.release(seat)
            raise
        self._held[id(record)] = seat
        return record

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        try:
            super()._do_return_conn(record)
        finally:
            seat = self._held.pop(id(record), None)
            if seat is not None:
                self._seats.release(seat)

    def recreate(self) -> PriorityQueuePool:
        new = cast(PriorityQueuePool, self._recreated(self))
        new._seats = self._seats
        return new

    def __repr__(self) -> str:
        return f"<PriorityQueuePool {self._seats!r}>"


class PriorityAsyncQueuePool(_Prioritized, AsyncAdaptedQueuePool):
    """The asyncio `PriorityQueuePool`, for ``create_async_engine``: waits on the event loop.

    The same arguments and rules. The gate is a `prioritize.aio.Gate`, bound
    to the loop of the first checkout that waits, like the engine's
    connections: use the engine from that loop only.
    """

    def __init__(  # noqa: PLR0917  # create_engine passes the keywords named here, not kw-only ones
        self,
        creator: Callable[..., Any],
        pool_size: int | None = None,
        max_overflow: int | None = None,
        timeout: float = 30.0,
        policy: Policy | GatePolicy | None = None,
        gate: str = "db",
        default_level: Level | str | None = None,
        **kw: Any,
    ) -> None:
        size, overflow, wait = self._setup(
            policy=policy,
            gate=gate,
            pool_size=pool_size,
            max_overflow=max_overflow,
            timeout=timeout,
            default_level=default_level,
        )
        super().__init__(creator, pool_size=size, max_overflow=overflow, timeout=wait, **kw)
        self._slots = Gate(self._gate_policy)
        self._held: dict[int, Slot] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def gate(self) -> Gate:
        """The gate that hands out the seats, one per connection."""
        return self._slots

    def stats(self) -> GateStats:
        """Seats held and waiting per level, and their counters, as a frozen snapshot."""
        return self._slots.stats()

    def _do_get(self) -> ConnectionPoolEntry:
        slot = self._slots.slot(self._chooser.choose(None), None, timeout=self._timeout)
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if not slot.request():
            await_only(slot.granted())  # in SQLAlchemy's greenlet: the task waits on the loop
        try:
            record = super()._do_get()
        except BaseException:
            slot.release()
            raise
        self._held[id(record)] = slot
        return record

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        try:
            super()._do_return_conn(record)
        finally:
            slot = self._held.pop(id(record), None)
            if slot is not None:
                self._give_back(slot)

    def _give_back(self, slot: Slot) -> None:
        """Release a seat on its loop: a connection collected in another thread is returned
        from there, and the gate's waiters may only be woken from their loop."""
        loop = self._loop
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            slot.release()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(slot.release)

    def recreate(self) -> PriorityAsyncQueuePool:
        new = cast(PriorityAsyncQueuePool, self._recreated(self))
        new._slots = self._slots
        new._loop = self._loop
        return new

    def __repr__(self) -> str:
        return f"<PriorityAsyncQueuePool {self._slots!r}>"
