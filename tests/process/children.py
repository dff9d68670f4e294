"""Reading a real child's priorities from outside it, and the policies the process tests use."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from prioritize import Policy, parse_policy


def nice_of(pid: int) -> int:
    """Field 19 of /proc/<pid>/stat (the command name, field 2, may hold spaces)."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    return int(stat.rpartition(")")[2].split()[16])


def io_of(pid: int) -> str:
    """The I/O priority as util-linux's ``ionice -p`` reports it: 'idle', 'best-effort:7'..."""
    out = subprocess.run(
        ["ionice", "-p", str(pid)], capture_output=True, text=True, check=True
    ).stdout.strip()
    io_class, _, prio = out.partition(": prio ")
    return io_class if not prio else f"{io_class}:{prio}"


def children_of_this_process() -> set[int]:
    """Pids of this process's live children, from every thread's /proc children list."""
    found: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            found.update(int(pid) for pid in (task / "children").read_text().split())
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return found


def grandchild(pid: int) -> int:
    """The one child of ``pid``."""
    (only,) = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(only)


def eventually(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Wait for ``condition`` to hold: for a state another thread reaches, not a delay."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout} s: {what}")
        time.sleep(0.001)


def in_thread(target: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Run ``target`` in a thread; the list receives its result or exception."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(target())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def policy(capacity: int = 4, toml_levels: str = "", processes: str = "") -> Policy:
    """A policy with a process gate of ``capacity`` seats, from TOML fragments."""
    import tomllib

    text = f"[gates.processes]\ncapacity = {capacity}\n{toml_levels}\n{processes}\n"
    return parse_policy(tomllib.loads(text), "test.toml")
