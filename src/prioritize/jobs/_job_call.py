"""How a worker calls a task's function: on the loop or on a thread, in the job's level, timed.

Kept apart from the worker's loop: this is the part that touches user
code. An async function runs in the job's own asyncio task and is
cancelled at its timeout. A sync function runs on a pool thread, in a copy
of the context with the job's level set (`contextvars.copy_context`), and
cannot be stopped: at its timeout the caller is told at once (so the run is
reported failed), with the thread's stack at that moment as the
traceback, and the call then waits for the thread to return, so its
worker slot stays busy meanwhile.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, final

from ..context import level_scope
from ..core.levels import Level
from .model import Job, SerializationError
from .serializer import Serializer

__all__ = [
    "LATE",
    "Permanent",
    "TimedOut",
    "call_async",
    "call_sync",
    "decode_arguments",
    "describe",
    "format_error",
]

#: what `call_sync` returns once a thread reported at its timeout has returned
LATE = object()


class Permanent(Exception):
    """A failure no retry can mend (``args[0]`` is the cause): the job goes to dead letter."""


class TimedOut(Exception):
    """A run that went past its timeout; ``stack`` is where it was."""

    def __init__(self, timeout: float, stack: str | None) -> None:
        super().__init__(f"TimeoutError: ran longer than {timeout:g} s")
        self.stack = stack


def describe(exc: BaseException) -> str:
    """``"TypeName: message"``, a job's ``error``."""
    return f"{type(exc).__name__}: {exc}"


def format_error(exc: BaseException) -> str:
    """The traceback text of ``exc``, a job's ``traceback``."""
    return "".join(traceback.format_exception(exc))


def decode_arguments(serializer: Serializer, job: Job) -> tuple[list[object], dict[str, Any]]:
    """The job's ``[args, kwargs]``; `Permanent` if the payload is not that."""
    try:
        value = serializer.loads(job.payload)
    except Exception as exc:
        raise Permanent(exc) from exc
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and isinstance(value[0], list | tuple)
        and isinstance(value[1], dict)
    ):
        return list(value[0]), value[1]
    raise Permanent(
        SerializationError(
            f"job {job.id} ({job.task}): its payload reads as {type(value).__name__}, "
            "not [args, kwargs]; was it enqueued with another serializer?"
        )
    )


async def call_async(
    function: Callable[..., Awaitable[object]],
    args: Sequence[object],
    kwargs: Mapping[str, object],
    level: Level | None,
    timeout: float | None,
) -> object:
    """Await ``function(*args, **kwargs)`` in ``level``; `TimedOut` if cancelled at ``timeout``."""
    with level_scope(level):
        if timeout is None:
            return await function(*args, **kwargs)
        scope = asyncio.timeout(timeout)
        try:
            async with scope:
                return await function(*args, **kwargs)
        except TimeoutError as exc:
            if scope.expired():  # ours, not a TimeoutError the function raised
                raise TimedOut(timeout, format_error(exc)) from None
            raise


async def call_sync(
    pool: Executor,
    function: Callable[..., object],
    args: Sequence[object],
    kwargs: Mapping[str, object],
    *,
    level: Level | None,
    timeout: float | None,
    on_timeout: Callable[[TimedOut], None],
) -> object:
    """Run ``function`` on a thread of ``pool`` in ``level``.

    Past ``timeout``, calls ``on_timeout`` at once, then waits for the
    thread all the same and returns `LATE`.
    """
    call = _ThreadCall(function, args, kwargs, level)
    context = contextvars.copy_context()
    future = asyncio.get_running_loop().run_in_executor(pool, context.run, call)
    future.add_done_callback(_retrieve)  # a thread outliving its job may still raise
    if timeout is None:
        return await future
    done, _ = await asyncio.wait((future,), timeout=timeout)
    if done:
        return future.result()
    on_timeout(TimedOut(timeout, call.stack()))
    await asyncio.wait((future,))
    return LATE


@final
@dataclass(slots=True)
class _ThreadCall:
    """A sync task's call on a pool thread, in the job's level; keeps the thread for its stack."""

    function: Callable[..., object]
    args: Sequence[object]
    kwargs: Mapping[str, object]
    level: Level | None
    thread: int | None = field(default=None)

    def __call__(self) -> object:
        self.thread = threading.get_ident()
        with level_scope(self.level):
            return self.function(*self.args, **self.kwargs)

    def stack(self) -> str | None:
        """Where the thread is now: the traceback of a sync job that ran past its timeout."""
        frame = sys._current_frames().get(self.thread) if self.thread is not None else None
        if frame is None:
            return None
        return "Stack of the thread at the timeout:\n" + "".join(traceback.format_stack(frame))


def _retrieve(future: asyncio.Future[object]) -> None:
    """Mark a thread's late exception seen: the run was reported at its timeout already."""
    if not future.cancelled():
        future.exception()
