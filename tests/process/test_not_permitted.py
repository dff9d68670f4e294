"""Raising a priority without the privilege: the exact warning, or under strict the exact error.

The test machine runs as root, where everything is permitted, so each case
runs in a helper process that drops to user 65534 (nobody, no capabilities,
RLIMIT_NICE 0) before starting its child (tests/process/unprivileged.py).
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path

import pytest

from prioritize.process import ProcessPriorityError
from prioritize.process._cgroup import own_directory, own_path

HELPER = Path(__file__).with_name("unprivileged.py")

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="Linux priorities"),
    pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root"),
]


def unprivileged(toml: str, level: str) -> dict[str, object]:
    import subprocess

    policy = f"[gates.processes]\ncapacity = 2\n{toml}"
    done = subprocess.run(
        [sys.executable, str(HELPER), policy, level], capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_a_negative_nice_without_cap_sys_nice_is_a_warning_and_the_child_keeps_its_nice() -> None:
    result = unprivileged("[processes.levels.critical]\nnice = -5\n", "critical")
    assert result["nice"] == 0
    assert result["warnings"] == [
        "ProcessPriorityWarning: level 'critical': nice -5 is not permitted: a nice value "
        "below the current 0 raises the priority, which needs CAP_SYS_NICE or an RLIMIT_NICE "
        "of at least 25; the child runs at nice 0 instead"
    ]
    assert result["warned_at"] == ["unprivileged.py"]  # the caller's line, not ours


def test_the_realtime_io_class_without_privilege_is_a_warning() -> None:
    result = unprivileged("[processes.levels.critical]\nionice = 'realtime:1'\n", "critical")
    assert result["io"] is None  # class "none": inherited
    assert result["warnings"] == [
        "ProcessPriorityWarning: level 'critical': ionice realtime:1 is not permitted: the "
        "realtime I/O class needs CAP_SYS_ADMIN or CAP_SYS_NICE; the child keeps the "
        "inherited I/O priority none (best-effort:4, from nice 0) instead"
    ]


def test_lowering_priorities_needs_no_privilege() -> None:
    result = unprivileged("", "bulk")
    assert (result["nice"], result["io"], result["warnings"]) == (19, "idle", [])


def test_under_strict_nothing_is_started_and_the_error_says_why() -> None:
    result = unprivileged(
        "[processes]\nstrict = true\n[processes.levels.critical]\nnice = -5\n"
        "ionice = 'realtime:0'\n",
        "critical",
    )
    assert result["children"] == []
    assert result["error"] == (
        "2 priorities could not be applied:\n"
        "  - level 'critical': nice -5 is not permitted: a nice value below the current 0 "
        "raises the priority, which needs CAP_SYS_NICE or an RLIMIT_NICE of at least 25; the "
        "child runs at nice 0 instead\n"
        "  - level 'critical': ionice realtime:0 is not permitted: the realtime I/O class "
        "needs CAP_SYS_ADMIN or CAP_SYS_NICE; the child keeps the inherited I/O priority none "
        "(best-effort:4, from nice 0) instead"
    )


def test_an_own_cgroup_that_is_not_writable_is_not_delegated() -> None:
    try:
        base = own_directory()
    except Exception as exc:
        pytest.skip(f"no cgroup v2 directory for this process: {exc}")
    result = unprivileged("[processes.levels.low]\nnice = 12\ncpu_weight = 20\n", "low")
    assert result["nice"] == 12  # the other priorities still apply
    assert result["warnings"] == [
        f"ProcessPriorityWarning: level 'low': cpu_weight 20 not applied: this process's "
        f"cgroup {base} is not writable, so it is not delegated to this user (with systemd: "
        "Delegate=yes); set processes.cgroup to a delegated cgroup v2 directory; the child "
        f"stays in this process's cgroup ({own_path()}) instead"
    ]


def test_the_strict_error_survives_pickling() -> None:
    error = ProcessPriorityError(["level 'low': one", "level 'low': two"])
    copy = pickle.loads(pickle.dumps(error))
    assert copy.problems == error.problems
    assert str(copy) == (
        "2 priorities could not be applied:\n  - level 'low': one\n  - level 'low': two"
    )
