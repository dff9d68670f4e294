"""Child processes started by priority: a gate's seats, and the level's CPU and I/O priority.

A nightly export started with ``subprocess`` competes for the CPU and the
disk exactly as hard as the process answering a checkout. Here every child
first takes a seat of a process gate (``[gates.processes]``: at most
``capacity`` children at once, with per-level ``min``/``max`` and shedding
like any gate), and then runs with its level's nice value, I/O class and,
where the service has a delegated cgroup v2 directory, ``cpu.weight``
(``[processes]``; see `prioritize.core.process_policy` for the defaults).

* `run` and `popen` are `subprocess.run` and `subprocess.Popen` for threads;
* `create_subprocess_exec` and `create_subprocess_shell` are asyncio's;
* each takes ``level`` (default: the level of the request or job being
  served, `prioritize.current_level`, else the policy's default level),
  ``flow`` (a fairness key within the level), ``policy`` (default: the one
  `prioritize.load_policy` finds, read once) and ``gate``;
* overload raises `prioritize.Rejected` with ``reason`` and ``retry_after``;
* a priority that cannot be applied (raising one without privilege, no
  delegated cgroup, no I/O classes on this system) is a
  `ProcessPriorityWarning` naming what the child got instead, or, with
  ``strict = true``, a `ProcessPriorityError` and no child.

A seat is held exactly while the child runs: it is given back when the
child exits, is killed, or the ``with`` block around it raises (the child is
killed then), even if nobody waits for it. See docs/processes.md.
"""

from __future__ import annotations

import subprocess
from collections.abc import Hashable
from typing import Any

from ..core.config import Policy
from ..core.levels import Level
from ..core.process_policy import IoClass as IoClass
from ..core.process_policy import IoPriority as IoPriority
from ..core.process_policy import ProcessPolicy as ProcessPolicy
from ..core.process_policy import ProcessPriority as ProcessPriority
from ._aio import DEFAULT_LIMIT
from ._aio import AsyncProcess as AsyncProcess
from ._gate import ProcessGate as ProcessGate
from ._popen import PrioritizedPopen as PrioritizedPopen
from ._spawn import ProcessPriorityError as ProcessPriorityError
from ._spawn import ProcessPriorityWarning as ProcessPriorityWarning

__all__ = [
    "AsyncProcess",
    "IoClass",
    "IoPriority",
    "PrioritizedPopen",
    "ProcessGate",
    "ProcessPolicy",
    "ProcessPriority",
    "ProcessPriorityError",
    "ProcessPriorityWarning",
    "create_subprocess_exec",
    "create_subprocess_shell",
    "popen",
    "run",
]


def run(
    args: Any,
    *,
    level: Level | str | None = None,
    flow: Hashable | None = None,
    policy: Policy | None = None,
    gate: str = "processes",
    input: Any = None,
    capture_output: bool = False,
    timeout: float | None = None,
    check: bool = False,
    **kwargs: Any,
) -> subprocess.CompletedProcess[Any]:
    """`subprocess.run`, once a seat of ``gate`` is free, at the level's priority.

    Raises `Rejected` if shed while waiting for the seat, and what
    `subprocess.run` raises; everything else is passed to `subprocess.Popen`.
    """
    return ProcessGate.of(policy, gate).run(
        args,
        level=level,
        flow=flow,
        input=input,
        capture_output=capture_output,
        timeout=timeout,
        check=check,
        **kwargs,
    )


def popen(
    args: Any,
    *,
    level: Level | str | None = None,
    flow: Hashable | None = None,
    policy: Policy | None = None,
    gate: str = "processes",
    **kwargs: Any,
) -> PrioritizedPopen:
    """`subprocess.Popen`, once a seat of ``gate`` is free, at the level's priority.

    The seat is held until the child exits. Use it as a context manager
    (leaving by an exception kills the child), or ``wait()``; if neither,
    the seat still comes back when the child exits.
    """
    return ProcessGate.of(policy, gate).popen(args, level=level, flow=flow, **kwargs)


async def create_subprocess_exec(
    program: Any,
    *args: Any,
    level: Level | str | None = None,
    flow: Hashable | None = None,
    policy: Policy | None = None,
    gate: str = "processes",
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    limit: int = DEFAULT_LIMIT,
    **kwargs: Any,
) -> AsyncProcess:
    """`asyncio.create_subprocess_exec`, once a seat is free, at the level's priority.

    Waits for the seat without blocking the event loop; cancelling the wait
    withdraws it. The seat is given back when the child exits.
    """
    return await ProcessGate.of(policy, gate).create_subprocess_exec(
        program,
        *args,
        level=level,
        flow=flow,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        limit=limit,
        **kwargs,
    )


async def create_subprocess_shell(
    cmd: str | bytes,
    *,
    level: Level | str | None = None,
    flow: Hashable | None = None,
    policy: Policy | None = None,
    gate: str = "processes",
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    limit: int = DEFAULT_LIMIT,
    **kwargs: Any,
) -> AsyncProcess:
    """`asyncio.create_subprocess_shell`, once a seat is free, at the level's priority."""
    return await ProcessGate.of(policy, gate).create_subprocess_shell(
        cmd,
        level=level,
        flow=flow,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        limit=limit,
        **kwargs,
    )
