"""The level of the work being done right now, carried by a context variable.

Whoever admits work sets it for the work's duration — the HTTP middleware
for a request, a job worker for a job — so code deep inside (a database
pool, an outbound HTTP call, a log line) knows the level without it being
passed down by hand. A context variable follows asyncio tasks (each task
copies the context it was created in) and `contextvars.copy_context` for
threads, so concurrent requests never see each other's level.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

from .core.levels import Level

__all__ = ["current_level", "enter_level", "exit_level", "level_scope"]

_CURRENT: ContextVar[Level | None] = ContextVar("prioritize_current_level", default=None)


def current_level() -> Level | None:
    """The level of the request or job being served here, or None outside of one."""
    return _CURRENT.get()


@contextmanager
def level_scope(level: Level | None) -> Iterator[Level | None]:
    """Make ``level`` the current level inside the block, restoring the previous one after.

    Adapters use it around the work they admit; tests and code that admits
    work of its own (a script running a batch) may use it too.
    """
    if level is not None and not isinstance(level, Level):
        raise TypeError(
            f"level_scope() takes a Level (from a LevelSet or Gate) or None, not {level!r}"
        )
    token = _CURRENT.set(level)
    try:
        yield level
    finally:
        _CURRENT.reset(token)


def enter_level(level: Level | None) -> Token[Level | None]:
    """`level_scope` without the context manager, for adapters on a hot path.

    Pair every call with `exit_level` in a ``finally``; the token restores
    whatever was current before.
    """
    return _CURRENT.set(level)


def exit_level(token: Token[Level | None]) -> None:
    """Restore the level that was current before the matching `enter_level`."""
    _CURRENT.reset(token)
