"""The CPU and I/O priority of the calling thread: nice values and Linux I/O classes.

Why the calling thread: on Linux both the nice value and the I/O priority
belong to a thread, not to a process, and a child starts with those of the
thread that forked it. So a short-lived thread that lowers (or, with the
privilege, raises) its own priorities and then starts the child hands them
on race-free: the child runs with them from its first instruction, before
it could fork or start threads of its own, and nothing runs in the child
before ``exec`` (no ``preexec_fn``, which is unsafe in a threaded program
and disables the ``vfork`` fast path). Setting them on the child's pid
after it started would leave a window in which it runs, and forks, at the
parent's priority. Outcomes are the kernel's own answers (EACCES, EPERM),
not a guess from capabilities, which user namespaces make unreliable.

I/O priorities are set with the ``ioprio_set`` system call through `ctypes`
(Python has no wrapper); the call numbers of the common Linux architectures
are below, and anywhere else I/O priorities are reported unavailable.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from collections.abc import Callable

from ..core.process_policy import IO_CLASS_NUMBERS, IoClass, IoPriority, ProcessPriority

__all__ = [
    "IS_LINUX",
    "apply_to_pid",
    "apply_to_thread",
    "describe_io",
    "io_priority",
    "ionice_unavailable",
]

IS_LINUX = sys.platform == "linux"

#: (ioprio_set, ioprio_get) by machine
_SYSCALLS = {
    "x86_64": (251, 252),
    "amd64": (251, 252),
    "i386": (289, 290),
    "i686": (289, 290),
    "aarch64": (30, 31),
    "arm64": (30, 31),
    "riscv64": (30, 31),
    "loongarch64": (30, 31),
    "armv7l": (314, 315),
    "armv6l": (314, 315),
    "ppc64le": (273, 274),
    "ppc64": (273, 274),
    "s390x": (282, 283),
}
_WHO_PROCESS = 1
_CLASS_SHIFT = 13
_LEVEL_MASK = (1 << _CLASS_SHIFT) - 1
_CLASSES = {number: io_class for io_class, number in IO_CLASS_NUMBERS.items()}


@functools.cache
def _libc_syscall() -> Callable[..., int]:
    import ctypes  # only where I/O priorities are used: it is a heavy import

    return ctypes.CDLL(None, use_errno=True).syscall


def ionice_unavailable() -> str | None:
    """Why I/O priorities cannot be set here, or None if they can."""
    if not IS_LINUX:
        return f"I/O priorities are a Linux feature, and this is {sys.platform}"
    if platform.machine() not in _SYSCALLS:
        return f"the ioprio system calls of this machine ({platform.machine()}) are not known"
    return None


def _call(index: int, *args: int) -> int:
    """``syscall(2)`` of ioprio_set (0) or ioprio_get (1); errors as `OSError` subclasses."""
    import ctypes

    result = _libc_syscall()(_SYSCALLS[platform.machine()][index], *args)
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result


def io_priority(pid: int = 0) -> IoPriority | None:
    """The I/O priority of a thread (0: the calling one); None for class "none".

    Class "none" is what a thread has until someone sets one: the kernel
    then derives a best-effort level from the nice value.
    """
    value = _call(1, _WHO_PROCESS, pid)
    io_class = _CLASSES.get(value >> _CLASS_SHIFT)
    return None if io_class is None else IoPriority(io_class, value & _LEVEL_MASK)


def _set_io_priority(priority: IoPriority) -> None:
    number = IO_CLASS_NUMBERS[priority.io_class]
    _call(0, _WHO_PROCESS, 0, (number << _CLASS_SHIFT) | priority.level)


def describe_io(priority: IoPriority | None, nice: int) -> str:
    if priority is not None:
        return str(priority)
    return f"none (best-effort:{(nice + 20) // 5}, from nice {nice})"


def _io_rank(priority: IoPriority | None, nice: int) -> int:
    if priority is None:
        return IoPriority(IoClass.BEST_EFFORT, (nice + 20) // 5).rank
    return priority.rank


def apply_to_thread(level: str, priority: ProcessPriority) -> list[str]:
    """Give the calling thread the level's nice value and I/O priority (Linux).

    Returns a message for each one that could not be applied, saying why
    and what the thread (so the child it starts) keeps instead. Call it
    only in a thread of its own that starts the child and then ends: a
    lowered priority cannot be raised back without privilege.
    """
    problems, nice = _apply_nice(level, priority, 0)  # who=0: this thread, on Linux
    if priority.ionice is not None:
        unavailable = ionice_unavailable()
        if unavailable is not None:
            problems.append(
                f"level {level!r}: ionice {priority.ionice} is unavailable: {unavailable}; "
                "the child keeps the I/O priority it inherits"
            )
        else:
            problems += _apply_io(level, priority, nice)
    return problems


def apply_to_pid(level: str, priority: ProcessPriority, pid: int) -> list[str]:
    """The nice value set on a child that has started, where a thread's cannot be inherited.

    Outside Linux the nice value belongs to the process, so it is set on
    the child right after it started: it runs its first instructions at
    the parent's priority. I/O priorities are reported unavailable.
    """
    problems = _apply_nice(level, priority, pid)[0]
    if priority.ionice is not None:
        problems.append(
            f"level {level!r}: ionice {priority.ionice} is unavailable: {ionice_unavailable()}; "
            "the child keeps the I/O priority it inherits"
        )
    return problems


def _apply_nice(level: str, priority: ProcessPriority, who: int) -> tuple[list[str], int]:
    """Set the nice value of ``who`` (0: the calling thread); the problems and the value it has."""
    nice = os.getpriority(os.PRIO_PROCESS, who)
    target = priority.nice
    if target is not None and priority.is_default:
        target = max(target, nice)  # a default never raises a priority
    if target is None or target == nice:
        return [], nice
    try:
        os.setpriority(os.PRIO_PROCESS, who, target)
    except PermissionError:
        return [
            f"level {level!r}: nice {target} is not permitted: a nice value below the "
            f"current {nice} raises the priority, which needs CAP_SYS_NICE or an "
            f"RLIMIT_NICE of at least {20 - target}; the child runs at nice {nice} instead"
        ], nice
    return [], target


def _apply_io(level: str, priority: ProcessPriority, nice: int) -> list[str]:
    wanted = priority.ionice
    assert wanted is not None
    current = io_priority()
    if priority.is_default and _io_rank(current, nice) >= wanted.rank:
        return []  # already at or below the default
    try:
        _set_io_priority(wanted)
    except PermissionError:
        need = (
            "the realtime I/O class needs CAP_SYS_ADMIN or CAP_SYS_NICE"
            if wanted.io_class is IoClass.REALTIME
            else "the kernel refused it"
        )
        inherited = describe_io(current, nice)
        return [
            f"level {level!r}: ionice {wanted} is not permitted: {need}; the child keeps "
            f"the inherited I/O priority {inherited} instead"
        ]
    except OSError as exc:
        inherited = describe_io(current, nice)
        return [
            f"level {level!r}: ionice {wanted} failed: {exc.strerror}; the child keeps "
            f"the inherited I/O priority {inherited} instead"
        ]
    return []
