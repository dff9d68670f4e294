"""Interpreter exit, as `concurrent.futures.thread` handles it.

Just before the interpreter joins its non-daemon threads, every pool that
has started a thread closes (queued calls still run, later submits raise
``RuntimeError``) and is joined.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, final

if TYPE_CHECKING:
    from ._pool import Pool

__all__ = ["interpreter_refusal", "register", "registry"]


@final
class _Registry:
    """The pools that have started a thread, for the interpreter-exit hook."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pools: weakref.WeakSet[Pool] = weakref.WeakSet()
        self.exiting = False


registry = _Registry()


def register(pool: Pool) -> None:
    with registry.lock:
        registry.pools.add(pool)


def interpreter_refusal() -> BaseException:
    return RuntimeError("cannot schedule new futures after interpreter shutdown")


def _python_exit() -> None:
    with registry.lock:
        registry.exiting = True
        pools = list(registry.pools)
    for pool in pools:
        pool.close(interpreter_refusal, cancel_futures=False)
    for pool in pools:
        pool.join()


def _reinit_after_fork() -> None:
    registry.lock = threading.Lock()


_register_atexit: Callable[[Callable[[], None]], object] | None = getattr(
    threading, "_register_atexit", None
)
(_register_atexit or atexit.register)(_python_exit)  # atexit: joins later than the stdlib does
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)
