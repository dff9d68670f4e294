"""`ProcessGate`: a policy's process gate and its levels' priorities, shared by every caller.

"At most N children at once" holds only if every caller in the process
counts against the same seats, so gates are shared: `ProcessGate.of`
returns one gate per policy object and gate name, and the module-level
functions go through it. A policy given as None is the one
`prioritize.load_policy` finds, read once, on first use.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Hashable
from typing import Any, final

from ..config import load_policy
from ..context import current_level
from ..core.config import Policy
from ..core.levels import Level
from ..core.policy import GatePolicy
from ..core.process_policy import ProcessPriority
from ..core.stats import GateStats
from ..errors import ConfigError, Problem
from . import _aio
from ._cgroup import Cgroups
from ._popen import PrioritizedPopen, communicate_run
from ._seats import SeatGate
from ._spawn import report, start

__all__ = ["ProcessGate"]

_registry_lock = threading.Lock()
_registry: dict[tuple[int, str], ProcessGate] = {}
_default: list[Policy] = []


@final
class ProcessGate:
    """The seats of one process gate of a policy, and the priorities children get per level.

    Most code uses the module functions (`prioritize.process.run` and
    friends), which share one `ProcessGate` per policy and gate name
    (`ProcessGate.of`); build one directly for seats of its own. Raises
    `ConfigError` for a policy without the gate, or whose ``[processes]``
    names a level it does not have.
    """

    __slots__ = ("_cgroups", "_policy", "_priorities", "_seats", "_strict")

    def __init__(self, policy: Policy, gate: str = "processes") -> None:
        if not isinstance(policy, Policy):
            raise TypeError(
                f"policy must be a Policy (from load_policy() or parse_policy()), not {policy!r}"
            )
        unknown = policy.processes.unknown_levels(policy.levels)
        if unknown:
            raise ConfigError(unknown, policy.source)
        self._policy = policy
        self._seats = SeatGate(_gate_policy(policy, gate))
        self._priorities = {
            level: policy.processes.priority(level, policy.levels, policy.default_level)
            for level in policy.levels
        }
        self._cgroups = Cgroups(policy.processes.cgroup)
        self._strict = policy.processes.strict

    @classmethod
    def of(cls, policy: Policy | None = None, gate: str = "processes") -> ProcessGate:
        """The gate every caller with this policy object and gate name shares.

        With no policy: the one `prioritize.load_policy()` finds, read on first use.
        """
        if policy is None:
            policy = _default_policy()
        key = (id(policy), gate)
        with _registry_lock:
            found = _registry.get(key)
            if found is None or found._policy is not policy:
                found = _registry[key] = cls(policy, gate)
            return found

    @property
    def policy(self) -> Policy:
        return self._policy

    def level(self, level: Level | str | None = None) -> Level:
        """The level a child runs at: ``level``, else the current request's or job's,
        else the policy's default level.

        A `Level` of another level set is taken by its name. Raises
        `UnknownLevelError` for a level the policy does not have.
        """
        if level is None:
            level = current_level()
            if level is None:
                return self._policy.default_level
        levels = self._policy.levels
        if isinstance(level, Level):
            return level if level in levels else levels[level.name]
        return levels.resolve(level)

    def priority(self, level: Level | str | None = None) -> ProcessPriority:
        """What a child of ``level`` runs with (see `level` for the default)."""
        return self._priorities[self.level(level)]

    def stats(self) -> GateStats:
        """Seats in use (children running) and waiting, per level."""
        return self._seats.stats()

    # -- starting children ---------------------------------------------------------------

    def popen(
        self,
        args: Any,
        *,
        level: Level | str | None = None,
        flow: Hashable | None = None,
        **kwargs: Any,
    ) -> PrioritizedPopen:
        """`subprocess.Popen` after waiting for a seat; the child runs at the level's priority.

        Blocks as the gate's policy says; `Rejected` (``reason``,
        ``retry_after``) if shed. The seat is held until the child exits.
        """
        return self._popen(args, level, flow, kwargs)

    def run(
        self,
        args: Any,
        *,
        level: Level | str | None = None,
        flow: Hashable | None = None,
        input: Any = None,
        capture_output: bool = False,
        timeout: float | None = None,
        check: bool = False,
        **kwargs: Any,
    ) -> subprocess.CompletedProcess[Any]:
        """`subprocess.run` after waiting for a seat (see `popen`)."""
        return communicate_run(
            lambda options: self._popen(args, level, flow, options),
            kwargs,
            input=input,
            capture_output=capture_output,
            timeout=timeout,
            check=check,
        )

    async def create_subprocess_exec(
        self,
        program: Any,
        *args: Any,
        level: Level | str | None = None,
        flow: Hashable | None = None,
        stdin: Any = None,
        stdout: Any = None,
        stderr: Any = None,
        limit: int = _aio.DEFAULT_LIMIT,
        **kwargs: Any,
    ) -> _aio.AsyncProcess:
        """`asyncio.create_subprocess_exec` after waiting for a seat without blocking the loop."""
        _aio.check_exec_options(kwargs)
        streams = {"stdin": stdin, "stdout": stdout, "stderr": stderr}
        return await self._start_async(
            [program, *args],
            False,
            level=level,
            flow=flow,
            streams=streams,
            limit=limit,
            kwargs=kwargs,
        )

    async def create_subprocess_shell(
        self,
        cmd: str | bytes,
        *,
        level: Level | str | None = None,
        flow: Hashable | None = None,
        stdin: Any = None,
        stdout: Any = None,
        stderr: Any = None,
        limit: int = _aio.DEFAULT_LIMIT,
        **kwargs: Any,
    ) -> _aio.AsyncProcess:
        """`asyncio.create_subprocess_shell` after waiting for a seat, as the exec variant."""
        _aio.check_shell_options(cmd, kwargs)
        streams = {"stdin": stdin, "stdout": stdout, "stderr": stderr}
        return await self._start_async(
            cmd, True, level=level, flow=flow, streams=streams, limit=limit, kwargs=kwargs
        )

    # -- internals ----------------------------------------------------------------------

    def _popen(
        self,
        args: Any,
        level: Level | str | None,
        flow: Hashable | None,
        kwargs: dict[str, Any],
    ) -> PrioritizedPopen:
        resolved = self.level(level)
        seat = self._seats.acquire(resolved, flow)
        try:
            popen, problems = start(
                args,
                kwargs,
                level=resolved,
                priority=self._priorities[resolved],
                cgroups=self._cgroups,
                strict=self._strict,
                gate=self._seats,
                seat=seat,
            )
        except BaseException:
            self._seats.release(seat)
            raise
        report(problems)
        return popen

    async def _start_async(
        self,
        args: Any,
        shell: bool,
        *,
        level: Level | str | None,
        flow: Hashable | None,
        streams: dict[str, Any],
        limit: int,
        kwargs: dict[str, Any],
    ) -> _aio.AsyncProcess:
        resolved = self.level(level)
        seat = await self._seats.acquire_async(resolved, flow)
        watch = _aio.ExitWatch()
        try:
            popen, problems = start(
                args,
                {**kwargs, **streams, "shell": shell, "bufsize": 0},
                level=resolved,
                priority=self._priorities[resolved],
                cgroups=self._cgroups,
                strict=self._strict,
                gate=self._seats,
                seat=seat,
                on_exit=watch.exited,
            )
        except BaseException:
            self._seats.release(seat)
            raise
        process = await _aio.AsyncProcess.adopt(popen, watch, limit)
        report(problems)
        return process

    def __repr__(self) -> str:
        s = self._seats.scheduler
        return (
            f"<ProcessGate {s.name} of {self._policy.source}: {s.in_use}/{s.capacity} "
            f"children, {s.waiting} waiting>"
        )


def _gate_policy(policy: Policy, gate: str) -> GatePolicy:
    try:
        return policy.gate(gate)
    except ConfigError as exc:
        problem = exc.problems[0]
        hint = (
            f"; child processes need one: [gates.{gate}] with a capacity, "
            "the most children running at once"
        )
        raise ConfigError([Problem(problem.path, problem.message + hint)]) from None


def _default_policy() -> Policy:
    with _registry_lock:
        if not _default:
            _default.append(load_policy())
        return _default[0]
