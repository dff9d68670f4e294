"""A cgroup v2 per level, whose ``cpu.weight`` shares the CPU between the levels' children.

A nice value only orders threads against each other; a cgroup's
``cpu.weight`` gives a whole group of processes, however many threads and
grandchildren they have, a share of the CPU under contention. It needs a
cgroup v2 directory the service may write to ("delegated": systemd's
``Delegate=yes``, a container's own cgroup namespace, or root): the one
named by ``processes.cgroup``, else this process's own. Under it,
``prioritize-<level>/`` is created on first use, its ``cpu.weight`` set, and
each child of the level is moved there by writing its pid to
``cgroup.procs``.

That write happens right after the child started: cgroup v2 has no way to
put a thread's future children in a cgroup before they exist short of
``clone3(CLONE_INTO_CGROUP)``, which Python does not expose. With ``vfork``
the parent resumes once the child has called ``exec``, so the child has
run only the dynamic loader's first steps by the time it is moved; what it
forks in that window (nothing, for any program that has not finished
loading) would stay behind. A cgroup is only created when a level asks for
a ``cpu_weight``; they are left in place for the next child, empty
between uses.

Every step that fails says why, with the path, and what the child gets
instead (it stays in this process's cgroup).
"""

from __future__ import annotations

import errno
import os
import threading
from typing import final

__all__ = ["Cgroups"]

_PREFIX = "prioritize-"


class _NotApplied(Exception):
    """A step failed; the message says why."""


@final
class Cgroups:
    """The per-level cgroups of one policy, created on first use. Thread-safe."""

    __slots__ = ("_configured", "_lock", "_ready")

    def __init__(self, configured: str | None) -> None:
        self._configured = configured
        self._lock = threading.Lock()
        #: (level, weight) -> the level's cgroup directory, ready
        self._ready: dict[tuple[str, int], str] = {}

    def prepare(self, level: str, weight: int) -> tuple[str | None, str | None]:
        """The level's cgroup directory with ``cpu.weight`` set, or None and why not."""
        key = (level, weight)
        with self._lock:
            ready = self._ready.get(key)
            if ready is not None:
                return ready, None
            try:
                directory = self._create(level, weight)
            except _NotApplied as exc:
                return None, f"{_what(level, weight)}: {exc}; {_instead()}"
            self._ready[key] = directory
            return directory, None

    def move(self, level: str, weight: int, pid: int, directory: str) -> str | None:
        """Move a started child into the level's cgroup; None, or why it stayed."""
        try:
            _write(os.path.join(directory, "cgroup.procs"), f"{pid}\n")
        except OSError as exc:
            with self._lock:
                self._ready.pop((level, weight), None)  # prepared again next time
            return (
                f"{_what(level, weight)}: moving the child (pid {pid}) into {directory} "
                f"failed: {exc.strerror}; {_instead()}"
            )
        return None

    def _create(self, level: str, weight: int) -> str:
        base = self._base()
        controllers = _read(os.path.join(base, "cgroup.controllers")).split()
        if "cpu" not in controllers:
            listed = " ".join(controllers) or "none"
            raise _NotApplied(
                f"the cpu controller is not available in {base} (its cgroup.controllers "
                f"lists {listed}): it is not enabled in the parent's cgroup.subtree_control, "
                "or it is bound to a cgroup v1 hierarchy"
            )
        _enable_cpu(base)
        directory = os.path.join(base, _PREFIX + level)
        try:
            os.makedirs(directory, exist_ok=True)
            _write(os.path.join(directory, "cpu.weight"), f"{weight}\n")
        except OSError as exc:
            raise _NotApplied(f"cannot set up {directory}: {exc.strerror}") from None
        return directory

    def _base(self) -> str:
        """The delegated directory: the configured one, else this process's own."""
        if self._configured is not None:
            base = self._configured
            where = f"{base} (processes.cgroup)"
            if not os.path.isdir(base):
                raise _NotApplied(f"{where} does not exist")
            if not os.path.exists(os.path.join(base, "cgroup.controllers")):
                raise _NotApplied(
                    f"{where} is not a cgroup v2 directory: it has no cgroup.controllers"
                )
        else:
            base = own_directory()
            where = f"this process's cgroup {base}"
        if not os.access(base, os.W_OK):
            raise _NotApplied(
                f"{where} is not writable, so it is not delegated to this user (with "
                "systemd: Delegate=yes); set processes.cgroup to a delegated cgroup v2 directory"
            )
        return base


def own_directory() -> str:
    """This process's cgroup v2 directory; `_NotApplied` saying why there is none."""
    relative = own_path()
    if relative is None:
        raise _NotApplied(
            "this process is in no cgroup v2 hierarchy (/proc/self/cgroup has no '0::' line); "
            "set processes.cgroup to a delegated cgroup v2 directory"
        )
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as file:
            mounts = file.read().splitlines()
    except OSError as exc:
        raise _NotApplied(f"cannot read /proc/self/mountinfo: {exc.strerror}") from None
    for line in mounts:
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if rest.split()[:1] != ["cgroup2"] or len(parts) < 5:
            continue
        root, mount_point = parts[3], parts[4]
        if relative == root or relative.startswith(root.rstrip("/") + "/"):
            inside = relative[len(root.rstrip("/")) :].lstrip("/")
            return os.path.join(mount_point, inside) if inside else mount_point
    raise _NotApplied(
        f"this process's cgroup v2 path {relative} is not mounted here (no cgroup2 entry "
        "of /proc/self/mountinfo shows it); set processes.cgroup to a delegated directory"
    )


def own_path() -> str | None:
    """This process's path in the cgroup v2 hierarchy (``0::/...``), or None."""
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as file:
            lines = file.read().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            return line[3:]
    return None


def _enable_cpu(base: str) -> None:
    """Make the cpu controller available to the cgroups below ``base``."""
    control = os.path.join(base, "cgroup.subtree_control")
    if "cpu" in _read(control).split():
        return
    try:
        _write(control, "+cpu\n")
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise _NotApplied(
                f"cannot enable the cpu controller below {base}: it holds processes of its "
                "own, and cgroup v2 gives controllers only to the children of a cgroup "
                f"without processes; move this service into a leaf such as {base}/service, "
                "or set processes.cgroup to a delegated directory without processes"
            ) from None
        raise _NotApplied(
            f"cannot enable the cpu controller in {control}: {exc.strerror}"
        ) from None


def _what(level: str, weight: int) -> str:
    return f"level {level!r}: cpu_weight {weight} not applied"


def _instead() -> str:
    return f"the child stays in this process's cgroup ({own_path() or 'unknown'}) instead"


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except OSError as exc:
        raise _NotApplied(f"cannot read {path}: {exc.strerror}") from None


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)
