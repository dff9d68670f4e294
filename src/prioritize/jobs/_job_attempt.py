"""One attempt at a job: arguments decoded, task called, result encoded, a failure judged.

Kept apart from the worker's loop, which only holds the slot and sends the
outcome: this is where a run turns into success or failure, and which kind
of failure. Failures that no retry can mend (`Permanent`: a payload that is
not ``[args, kwargs]``, a result the serializer cannot write, since running
the task again would repeat its side effects to fail the same way) are
reported ``permanent``, so the job goes to the dead-letter set at once.
Every other exception, and a timeout, is left to the job's `RetryPolicy`.
A job whose task is not registered is dead-lettered by the worker, with
`unknown_task` as its error.

A sync job past its timeout is reported failed at once (``fail`` is called
from `call_sync`), while its thread runs on; when the thread returns, this
only logs how late it was.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import Any

from ._job_call import (
    LATE,
    Permanent,
    TimedOut,
    call_async,
    call_sync,
    decode_arguments,
    describe,
    format_error,
)
from ._job_run import Run, log_late
from .queue import Task
from .serializer import Serializer

__all__ = ["attempt", "unknown_task"]


async def attempt(
    run: Run,
    task: Task[Any, Any],
    serializer: Serializer,
    pool: Executor | None,
    *,
    succeed: Callable[[bytes], None],
    fail: Callable[[str, str | None, bool], None],
) -> None:
    """Run ``task`` for ``run``'s job once, then call ``succeed`` or ``fail`` (at most once).

    ``fail`` takes the error (``"TypeName: message"``), its traceback text,
    and whether the failure is permanent. ``pool`` runs a sync task; it is
    None only outside a worker's run.
    """
    job = run.job
    try:
        args, kwargs = decode_arguments(serializer, job)
        timeout = job.timeout if job.timeout is not None else task.timeout
        if task.is_async:
            value = await call_async(task.function, args, kwargs, run.level, timeout)
        else:
            assert pool is not None
            value = await call_sync(
                pool,
                task.function,
                args,
                kwargs,
                level=run.level,
                timeout=timeout,
                on_timeout=lambda timed_out: fail(str(timed_out), timed_out.stack, False),
            )
        if value is LATE:
            log_late(run)
            return
        try:
            result = serializer.dumps(value)
        except Exception as exc:
            raise Permanent(exc) from exc
    except Permanent as exc:
        cause = exc.args[0]
        fail(describe(cause), format_error(cause), True)
    except TimedOut as exc:
        fail(str(exc), exc.stack, False)
    except Exception as exc:
        fail(describe(exc), format_error(exc), False)
    else:
        succeed(result)


def unknown_task(name: str, tasks: Mapping[str, object]) -> str:
    """The error of a job whose task is not registered: what is, and how to run the job again."""
    known = ", ".join(sorted(tasks)) or "none"
    return (
        f"no task named {name!r} is registered on this worker's queue (registered: {known}); "
        "deploy the code that defines it, then requeue the job from the dead-letter set"
    )
