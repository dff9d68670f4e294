"""How child processes of each level run (``[processes]``), and its parsing from the policy file.

A gate decides how many children run at once; this decides how hard each
one may press on the machine while it runs: its nice value (CPU), its I/O
scheduling class (``ionice``) and, where the service has a delegated cgroup
v2 directory, the ``cpu.weight`` of a cgroup per level. It is a section of
its own rather than more keys under ``[gates.processes.levels.*]`` because
it describes the level, not a gate: every gate that starts processes (the
``gate=`` argument of `prioritize.process.run`) applies the same priorities.

Defaults, for levels the file does not list (``defaults = false`` turns them
off): levels as important as the default level or more run as the service
does; the least important level runs at nice 19 in the idle I/O class; the
levels between them at nice 10, best-effort I/O level 7. A default only ever
lowers a priority: a service already running at nice 15 starts its ``low``
children at 15, not 10. A level the file lists gets exactly what its table
says and inherits the rest, so ``[processes.levels.bulk]`` with only
``nice = 5`` leaves bulk's I/O class alone. ``cpu_weight`` has no default:
cgroups are only created when asked for.

`ProcessPolicy` checks itself; `parse_processes` only checks what the raw
TOML can get wrong before it exists (types, keys, level names), reporting
into the caller's `_Report`, so one `ConfigError` lists every problem of the
whole file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeGuard, final

from ..errors import ConfigError, Problem, show
from .classify import _unknown_name
from .levels import Level, LevelSet

if TYPE_CHECKING:
    from .config import _Report

__all__ = [
    "IoClass",
    "IoPriority",
    "ProcessPolicy",
    "ProcessPriority",
    "default_priority",
    "parse_processes",
]

_KEYS = ("cgroup", "defaults", "levels", "strict")
_LEVEL_KEYS = ("cpu_weight", "ionice", "nice")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_IONICE = re.compile(r"^(realtime|best-effort|idle)(?::(\d+))?$")
#: what a ``nice`` value may be, for messages
NICE_ACCEPTED = "a whole number from -20 (most favoured) to 19 (least)"
#: what an ``ionice`` value may be, for messages
IONICE_ACCEPTED = (
    "'idle', 'best-effort' or 'realtime', optionally with a level from 0 (highest) "
    "to 7, like 'best-effort:7' (idle has no level)"
)
#: what a ``cpu_weight`` value may be, for messages
CPU_WEIGHT_ACCEPTED = "a whole number from 1 to 10000 (cgroup v2 cpu.weight; 100 is the default)"
_CGROUP_ACCEPTED = "an absolute path to a cgroup v2 directory, like '/sys/fs/cgroup/app.service'"


def _is_whole(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class IoClass(StrEnum):
    """The Linux I/O scheduling classes, most favoured first."""

    #: served before everything else; needs privilege
    REALTIME = "realtime"
    #: the normal class, levels 0 (highest) to 7
    BEST_EFFORT = "best-effort"
    #: served only when no other process wants the disk
    IDLE = "idle"


#: the kernel's number for each class (``IOPRIO_CLASS_*``)
IO_CLASS_NUMBERS = {IoClass.REALTIME: 1, IoClass.BEST_EFFORT: 2, IoClass.IDLE: 3}


@final
@dataclass(frozen=True, slots=True)
class IoPriority:
    """An I/O scheduling class and its level, as ``ionice`` sets them: ``best-effort:7``."""

    io_class: IoClass
    level: int = 4

    def __post_init__(self) -> None:
        if not isinstance(self.io_class, IoClass):
            raise ConfigError(f"ionice class {show(self.io_class)} is not an IoClass")
        if self.io_class is IoClass.IDLE:
            object.__setattr__(self, "level", 0)
        elif not _is_whole(self.level) or not 0 <= self.level <= 7:
            raise ConfigError(f"ionice level {show(self.level)} is not a whole number from 0 to 7")

    @classmethod
    def parse(cls, text: str) -> IoPriority:
        """``"idle"``, ``"best-effort"`` (level 4), ``"best-effort:7"``, ``"realtime:0"``.

        Raises ``ValueError`` naming what is accepted.
        """
        match = _IONICE.match(text) if isinstance(text, str) else None
        if match is None or (match.group(1) == "idle" and match.group(2) is not None):
            raise ValueError(f"{show(text)} is not {IONICE_ACCEPTED}")
        level = 4 if match.group(2) is None else int(match.group(2))
        if level > 7:
            raise ValueError(f"{show(text)} is not {IONICE_ACCEPTED}")
        return cls(IoClass(match.group(1)), level)

    @property
    def rank(self) -> int:
        """0 for realtime:0 up to 16 for idle: a larger rank is less favoured."""
        if self.io_class is IoClass.IDLE:
            return 16
        return self.level + (0 if self.io_class is IoClass.REALTIME else 8)

    def __str__(self) -> str:
        return "idle" if self.io_class is IoClass.IDLE else f"{self.io_class.value}:{self.level}"


@final
@dataclass(frozen=True, slots=True)
class ProcessPriority:
    """What a child of one level runs with; None means inherited from the service.

    ``is_default`` marks the built-in defaults, which never raise a priority
    above what the service itself runs with.
    """

    nice: int | None = None
    ionice: IoPriority | None = None
    cpu_weight: int | None = None
    is_default: bool = False

    def __post_init__(self) -> None:
        problems = self.problems("processes.levels.<level>")
        if problems:
            raise ConfigError(problems)

    def problems(self, path: str) -> list[Problem]:
        """What is out of range, each with its key path under ``path``."""
        found: list[Problem] = []
        if self.nice is not None and not (_is_whole(self.nice) and -20 <= self.nice <= 19):
            found.append(Problem(f"{path}.nice", f"{show(self.nice)} is not {NICE_ACCEPTED}"))
        if self.ionice is not None and not isinstance(self.ionice, IoPriority):
            message = f"{show(self.ionice)} is not an IoPriority, like IoPriority.parse('idle')"
            found.append(Problem(f"{path}.ionice", message))
        weight = self.cpu_weight
        if weight is not None and not (_is_whole(weight) and 1 <= weight <= 10000):
            found.append(
                Problem(f"{path}.cpu_weight", f"{show(weight)} is not {CPU_WEIGHT_ACCEPTED}")
            )
        return found

    @property
    def is_inherited(self) -> bool:
        """True if the child runs exactly as the service does."""
        return self.nice is None and self.ionice is None and self.cpu_weight is None

    def __str__(self) -> str:
        parts = [
            "inherited nice" if self.nice is None else f"nice {self.nice}",
            "inherited I/O class" if self.ionice is None else f"ionice {self.ionice}",
            "no cgroup" if self.cpu_weight is None else f"cpu.weight {self.cpu_weight}",
        ]
        return ", ".join(parts)


_INHERIT = ProcessPriority()
_BELOW_DEFAULT = ProcessPriority(10, IoPriority(IoClass.BEST_EFFORT, 7), is_default=True)
_LEAST = ProcessPriority(19, IoPriority(IoClass.IDLE), is_default=True)


def default_priority(level: Level, levels: LevelSet, default_level: Level) -> ProcessPriority:
    """The built-in priority of a level the policy does not list (see the module docstring)."""
    if level.rank <= default_level.rank:
        return _INHERIT
    return _LEAST if level == levels.least_important else _BELOW_DEFAULT


@final
@dataclass(frozen=True, slots=True)
class ProcessPolicy:
    """The ``[processes]`` section: each level's priorities and where cgroups go.

    ``levels`` maps level names to what the file says for them; levels it
    does not name get `default_priority` unless ``defaults`` is false.
    ``cgroup`` is the delegated cgroup v2 directory in which per-level
    cgroups are created (None: this process's own cgroup, if writable).
    ``strict`` makes a priority that cannot be applied an error instead of
    a warning.
    """

    levels: Mapping[str, ProcessPriority] = field(default_factory=dict, hash=False)
    cgroup: str | None = None
    strict: bool = False
    defaults: bool = True

    def __post_init__(self) -> None:
        problems: list[Problem] = []
        for name, priority in self.levels.items():
            if not isinstance(priority, ProcessPriority):
                message = f"{show(priority)} is not a ProcessPriority"
                problems.append(Problem(_join("processes.levels", name), message))
        if self.cgroup is not None and not _is_cgroup_path(self.cgroup):
            problems.append(
                Problem("processes.cgroup", f"{show(self.cgroup)} is not {_CGROUP_ACCEPTED}")
            )
        if problems:
            raise ConfigError(problems)
        object.__setattr__(self, "levels", MappingProxyType(dict(self.levels)))

    def priority(self, level: Level, levels: LevelSet, default_level: Level) -> ProcessPriority:
        """What a child of ``level`` runs with, defaults included."""
        listed = self.levels.get(level.name)
        if listed is not None:
            return listed
        return default_priority(level, levels, default_level) if self.defaults else _INHERIT

    def unknown_levels(self, levels: LevelSet) -> list[Problem]:
        """A problem for every listed level that is not in ``levels``."""
        return [
            Problem(_join("processes.levels", name), _unknown_level(name, levels))
            for name in self.levels
            if name not in levels
        ]

    def describe(self, levels: LevelSet, default_level: Level) -> list[str]:
        """Plain lines for ``prioritize check``: what children of each level run with."""
        where = self.cgroup or "this process's own cgroup v2 directory, if it is writable"
        mode = "an error (strict)" if self.strict else "a warning"
        lines = ["child processes (prioritize.process), per level:"]
        for level in levels:
            priority = self.priority(level, levels, default_level)
            origin = " (default)" if priority.is_default else ""
            lines.append(f"  {level.name}: {priority}{origin}")
        lines.append(f"  cgroups per level in: {where}")
        lines.append(f"  a priority that cannot be applied is {mode}")
        return lines


def parse_processes(raw: object, levels: LevelSet | None, report: _Report) -> ProcessPolicy:
    """The ``[processes]`` table, every problem recorded in ``report`` (defaults stand in)."""
    if raw is None:
        return ProcessPolicy()
    table = report.table(raw, "processes", _KEYS)
    if table is None:
        return ProcessPolicy()
    cgroup = report.get(table, "cgroup", "processes", _CGROUP_ACCEPTED, _is_cgroup_path)
    strict = report.get(table, "strict", "processes", "true or false", _is_bool)
    defaults = report.get(table, "defaults", "processes", "true or false", _is_bool)
    out: dict[str, ProcessPriority] = {}
    for name, value in (
        report.table(table.get("levels", {}), "processes.levels", None) or {}
    ).items():
        path = _join("processes.levels", name)
        if levels is not None and name not in levels:
            report.add(path, _unknown_level(name, levels))
            continue
        priority = _parse_level(value, path, report)
        if priority is not None:
            out[name] = priority
    return ProcessPolicy(
        levels=out,
        cgroup=cgroup,
        strict=bool(strict),
        defaults=True if defaults is None else defaults,
    )


def _parse_level(raw: object, path: str, report: _Report) -> ProcessPriority | None:
    table = report.table(raw, path, _LEVEL_KEYS)
    if table is None:
        return None
    nice = report.get(table, "nice", path, NICE_ACCEPTED, _is_nice)
    ionice: IoPriority | None = None
    value = table.get("ionice")
    if value is not None:
        try:
            ionice = IoPriority.parse(value)  # type: ignore[arg-type]  # checked: a str or refused
        except ValueError:
            report.bad(f"{path}.ionice", value, IONICE_ACCEPTED)
    weight = report.get(table, "cpu_weight", path, CPU_WEIGHT_ACCEPTED, _is_weight)
    return ProcessPriority(nice, ionice, weight)


def _unknown_level(name: str, levels: LevelSet) -> str:
    return _unknown_name("level", name, levels.names)


def _join(path: str, key: str) -> str:
    text = key if _BARE_KEY.match(str(key)) else json.dumps(key)
    return f"{path}.{text}"


def _is_nice(value: object) -> TypeGuard[int]:
    return _is_whole(value) and -20 <= value <= 19


def _is_weight(value: object) -> TypeGuard[int]:
    return _is_whole(value) and 1 <= value <= 10000


def _is_bool(value: object) -> TypeGuard[bool]:
    return isinstance(value, bool)


def _is_cgroup_path(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and value.startswith("/") and "\0" not in value
