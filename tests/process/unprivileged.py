"""Start one child as an unprivileged user and print, as JSON, what it got and what was said.

Run as root: ``python unprivileged.py '<policy TOML>' <level>``. Everything it
will need is imported (or cached) first, because after dropping to user
65534 (nobody) the interpreter's own files may no longer be readable. It
prints ``{"nice": ..., "io": ..., "warnings": [...]}`` for a child that ran,
or ``{"error": ..., "children": [...]}`` for one refused under ``strict``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tomllib
import warnings
from pathlib import Path

from prioritize import parse_policy
from prioritize.process import ProcessPriorityError, popen
from prioritize.process._os import io_priority

NOBODY = 65534


def children() -> list[int]:
    me = os.getpid()
    found: list[int] = []
    for task in Path(f"/proc/{me}/task").iterdir():
        found += [int(pid) for pid in (task / "children").read_text().split()]
    return found


def main() -> None:
    policy = parse_policy(tomllib.loads(sys.argv[1]), "unprivileged.toml")
    level = sys.argv[2]
    platform.machine()  # cached: later calls read nothing
    io_priority()  # loads ctypes and libc now
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            child = popen(["sleep", "60"], level=level, policy=policy)
        except ProcessPriorityError as exc:
            print(json.dumps({"error": str(exc), "children": children()}))
            return
    stat = Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()
    io = io_priority(child.pid)
    child.kill()
    child.wait()
    result = {
        "nice": int(stat[16]),
        "io": None if io is None else str(io),
        "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
        "warned_at": [Path(w.filename).name for w in caught],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
