"""Starting one child with its level's priorities, and saying what could not be applied.

The order: the level's cgroup is made ready first (a problem there is known
before anything runs); then a short-lived thread takes the level's nice
value and I/O priority and starts the child, which inherits them (see
`_os`); then the child is moved into the cgroup and its watcher started.
The thread exists only when there is something to set: a level that
inherits everything is started from the caller's thread.

A priority that cannot be applied is never ignored silently. By default it
is a `ProcessPriorityWarning` (the child runs with what it got, which the
message says); with ``strict = true`` it is a `ProcessPriorityError`, raised
before the child starts when the problem shows up before (nice, ionice, the
cgroup's setup), or after killing it when it shows up after (the move).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from ..core.levels import Level
from ..core.process_policy import ProcessPriority
from ..errors import PrioritizeError
from ._cgroup import Cgroups
from ._os import IS_LINUX, apply_to_pid, apply_to_thread
from ._popen import PrioritizedPopen
from ._seats import Seat, SeatGate

__all__ = ["ProcessPriorityError", "ProcessPriorityWarning", "report", "start"]

_PACKAGE = __name__.rpartition(".")[0]


class ProcessPriorityWarning(RuntimeWarning):
    """A child runs, but without some of its level's priorities; the message says which and why."""


class ProcessPriorityError(PrioritizeError, OSError):
    """A level's priority could not be applied under ``strict = true``; no child is left running.

    ``problems`` lists each priority that failed, why, and what the child would have got.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems) if len(self.problems) == 1 else self._lines())

    def _lines(self) -> str:
        listed = "\n".join(f"  - {p}" for p in self.problems)
        return f"{len(self.problems)} priorities could not be applied:\n{listed}"

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[type[ProcessPriorityError], tuple[tuple[str, ...]]]:
        # picklable with its problems, so it crosses process pools and job results intact
        return (type(self), (self.problems,))


def report(problems: Sequence[str]) -> None:
    """Warn once per problem, pointing at the first line outside this package that led here."""
    if not problems:
        return
    frame = sys._getframe(1)
    stacklevel = 2
    while frame.f_back is not None and _is_ours(frame.f_globals.get("__name__", "")):
        frame = frame.f_back
        stacklevel += 1
    for problem in problems:
        warnings.warn(problem, ProcessPriorityWarning, stacklevel=stacklevel)


def _is_ours(module: str) -> bool:
    return module == _PACKAGE or module.startswith(_PACKAGE + ".")


def start(
    args: Any,
    kwargs: dict[str, Any],
    *,
    level: Level,
    priority: ProcessPriority,
    cgroups: Cgroups,
    strict: bool,
    gate: SeatGate,
    seat: Seat,
    on_exit: Callable[[int], object] | None = None,
) -> tuple[PrioritizedPopen, list[str]]:
    """Start the child holding ``seat``; the child and the problems to report.

    On any exception no child is left running, and the seat is the caller's
    to give back.
    """
    problems: list[str] = []
    directory: str | None = None
    weight = priority.cpu_weight
    if weight is not None:
        directory, problem = cgroups.prepare(level.name, weight)
        problems += [problem] if problem else []
    _raise_if(strict, problems)
    has_thread_settings = priority.nice is not None or priority.ionice is not None
    if IS_LINUX and has_thread_settings:
        popen = _start_in_thread(
            level.name, priority, strict=strict, args=args, kwargs=kwargs, problems=problems
        )
    else:
        popen = PrioritizedPopen(args, **kwargs)
    try:
        if has_thread_settings and not IS_LINUX:
            problems += apply_to_pid(level.name, priority, popen.pid)
            _raise_if(strict, problems)
        if directory is not None and weight is not None:
            problem = cgroups.move(level.name, weight, popen.pid, directory)
            problems += [problem] if problem else []
            _raise_if(strict, problems)
        popen.hold(gate, seat, level, problems, on_exit)
    except BaseException:  # strict, or interrupted: no child runs without its seat and watcher
        _kill(popen)
        raise
    return popen, problems


def _start_in_thread(
    level: str,
    priority: ProcessPriority,
    *,
    strict: bool,
    args: Any,
    kwargs: dict[str, Any],
    problems: list[str],
) -> PrioritizedPopen:
    """Start the child from a thread of its own that takes the level's priorities first."""
    outcome: list[PrioritizedPopen | BaseException] = []

    def spawn() -> None:
        try:
            found = apply_to_thread(level, priority)
            problems.extend(found)
            if not (strict and found):
                outcome.append(PrioritizedPopen(args, **kwargs))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=spawn, name=f"prioritize-spawn-{level}")
    thread.start()
    try:
        thread.join()
    except BaseException:  # interrupted: let the start finish, and stop what it started
        thread.join()
        for started in outcome:
            if isinstance(started, PrioritizedPopen):
                _kill(started)
        raise
    _raise_if(strict, problems)
    found = outcome[0]
    if isinstance(found, BaseException):
        raise found
    return found


def _raise_if(strict: bool, problems: list[str]) -> None:
    if strict and problems:
        raise ProcessPriorityError(problems)


def _kill(popen: PrioritizedPopen) -> None:
    with contextlib.suppress(OSError):
        popen.kill()
    popen.wait()
    for stream in (popen.stdin, popen.stdout, popen.stderr):
        if stream is not None:
            stream.close()
