"""cpu.weight per level: for real where this machine delegates a cgroup v2 directory with the
cpu controller, and every way it cannot be applied, with the exact message.

The machine the suite was written on has cgroup v2 mounted beside v1
(the cpu controller bound to v1), so its "no cpu controller" path runs
for real, and the file protocol (enable, create, weight, move) is checked
on a directory laid out like a delegated cgroup.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prioritize.process import (
    ProcessGate,
    ProcessPriorityError,
    ProcessPriorityWarning,
    create_subprocess_exec,
    create_subprocess_shell,
    popen,
    run,
)
from prioritize.process._cgroup import own_directory, own_path

from .children import children_of_this_process, policy

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="cgroups: Linux")


def own_cgroup() -> tuple[str | None, list[str]]:
    """This process's cgroup v2 directory and its controllers, if it has one it may write."""
    try:
        base = own_directory()
    except Exception:
        return None, []
    controllers = Path(base, "cgroup.controllers").read_text().split()
    return (base if os.access(base, os.W_OK) else None), controllers


BASE, CONTROLLERS = own_cgroup()
HAS_CPU = BASE is not None and "cpu" in CONTROLLERS


def cgroup_of(pid: int) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise AssertionError(f"pid {pid} is in no cgroup v2")


def weighted(level: str, weight: int, extra: str = "") -> str:
    return f"{extra}[processes.levels.{level}]\nnice = 19\ncpu_weight = {weight}\n"


def stand_in(tmp_path: Path) -> Path:
    """A directory laid out like a delegated cgroup v2 directory whose cpu controller is free."""
    base = tmp_path / "app.service"
    base.mkdir()
    (base / "cgroup.controllers").write_text("cpu io memory\n")
    (base / "cgroup.subtree_control").write_text("\n")
    (base / "cgroup.procs").write_text("")
    return base


@pytest.mark.skipif(not HAS_CPU, reason="no writable cgroup v2 directory with the cpu controller")
def test_children_of_a_level_run_in_its_cgroup_with_its_weight() -> None:
    assert BASE is not None
    with popen(
        ["sleep", "60"], level="bulk", policy=policy(processes=weighted("bulk", 20))
    ) as child:
        assert cgroup_of(child.pid).endswith("/prioritize-bulk")
        assert Path(BASE, "prioritize-bulk", "cpu.weight").read_text() == "20\n"
        child.kill()


@pytest.mark.skipif(
    BASE is None or HAS_CPU, reason="this machine's own cgroup has the cpu controller"
)
def test_an_own_cgroup_without_the_cpu_controller_is_a_warning_naming_it() -> None:
    listed = " ".join(CONTROLLERS) or "none"
    with pytest.warns(ProcessPriorityWarning) as caught:
        child = popen(["sleep", "60"], level="bulk", policy=policy(processes=weighted("bulk", 20)))
    try:
        assert [str(w.message) for w in caught] == [
            f"level 'bulk': cpu_weight 20 not applied: the cpu controller is not available in "
            f"{BASE} (its cgroup.controllers lists {listed}): it is not enabled in the parent's "
            "cgroup.subtree_control, or it is bound to a cgroup v1 hierarchy; the child stays "
            f"in this process's cgroup ({own_path()}) instead"
        ]
        assert caught[0].filename == __file__  # points at the caller
        assert cgroup_of(child.pid) == own_path()
        assert child.problems == (str(caught[0].message),)
    finally:
        child.kill()
        child.wait()


def test_a_configured_directory_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    configured = policy(processes=weighted("low", 50, f"[processes]\ncgroup = '{missing}'\n"))
    with pytest.warns(ProcessPriorityWarning) as caught:
        run_briefly(ProcessGate(configured), "low")
    assert [str(w.message) for w in caught] == [
        f"level 'low': cpu_weight 50 not applied: {missing} (processes.cgroup) does not exist; "
        f"the child stays in this process's cgroup ({own_path()}) instead"
    ]


def test_a_configured_directory_that_is_not_a_cgroup(tmp_path: Path) -> None:
    configured = policy(processes=weighted("low", 50, f"[processes]\ncgroup = '{tmp_path}'\n"))
    with pytest.warns(ProcessPriorityWarning) as caught:
        run_briefly(ProcessGate(configured), "low")
    assert [str(w.message) for w in caught] == [
        f"level 'low': cpu_weight 50 not applied: {tmp_path} (processes.cgroup) is not a cgroup "
        f"v2 directory: it has no cgroup.controllers; the child stays in this process's cgroup "
        f"({own_path()}) instead"
    ]


def test_strict_refuses_before_anything_starts(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    gate = ProcessGate(
        policy(processes=weighted("low", 50, f"[processes]\ncgroup = '{missing}'\nstrict = true\n"))
    )
    before = children_of_this_process()
    with pytest.raises(ProcessPriorityError) as refused:
        gate.popen(["sleep", "60"], level="low")
    assert str(refused.value) == (
        f"level 'low': cpu_weight 50 not applied: {missing} (processes.cgroup) does not exist; "
        f"the child stays in this process's cgroup ({own_path()}) instead"
    )
    assert isinstance(refused.value, OSError)
    assert children_of_this_process() == before
    assert gate.stats().in_use == 0


def test_the_cgroup_file_protocol_on_a_stand_in_directory(tmp_path: Path) -> None:
    base = stand_in(tmp_path)
    gate = ProcessGate(policy(processes=weighted("bulk", 20, f"[processes]\ncgroup = '{base}'\n")))
    first = run_briefly(gate, "bulk")
    assert (base / "cgroup.subtree_control").read_text() == "+cpu\n"
    assert (base / "prioritize-bulk" / "cpu.weight").read_text() == "20\n"
    assert (base / "prioritize-bulk" / "cgroup.procs").read_text() == f"{first}\n"
    second = run_briefly(gate, "bulk")  # the cgroup is ready: only the move
    assert (base / "prioritize-bulk" / "cgroup.procs").read_text() == f"{second}\n"


def test_a_move_that_fails_is_a_warning_and_under_strict_kills_the_child(tmp_path: Path) -> None:
    base = stand_in(tmp_path)
    (base / "prioritize-bulk" / "cgroup.procs").mkdir(parents=True)  # writing it fails
    lenient = ProcessGate(
        policy(processes=weighted("bulk", 20, f"[processes]\ncgroup = '{base}'\n"))
    )
    with pytest.warns(ProcessPriorityWarning) as caught:
        pid = run_briefly(lenient, "bulk")
    assert [str(w.message) for w in caught] == [
        f"level 'bulk': cpu_weight 20 not applied: moving the child (pid {pid}) into "
        f"{base}/prioritize-bulk failed: Is a directory; the child stays in this process's "
        f"cgroup ({own_path()}) instead"
    ]
    strict = ProcessGate(
        policy(processes=weighted("bulk", 20, f"[processes]\ncgroup = '{base}'\nstrict = true\n"))
    )
    before = children_of_this_process()
    with pytest.raises(ProcessPriorityError, match="failed: Is a directory"):
        strict.popen(["sleep", "60"], level="bulk")
    assert children_of_this_process() == before  # killed and reaped
    assert strict.stats().in_use == 0


def run_briefly(gate: ProcessGate, level: str) -> int:
    """Start a child that exits at once; its pid."""
    with gate.popen(["true"], level=level, stdout=subprocess.DEVNULL) as child:
        return child.pid


def test_every_way_of_starting_a_child_warns_at_the_callers_line(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    configured = policy(processes=weighted("low", 50, f"[processes]\ncgroup = '{missing}'\n"))
    with pytest.warns(ProcessPriorityWarning) as caught:
        run(["true"], level="low", policy=configured)
    with pytest.warns(ProcessPriorityWarning) as caught_method:
        ProcessGate.of(configured).run(["true"], level="low")

    async def start() -> None:
        child = await create_subprocess_exec("true", level="low", policy=configured)
        await child.wait()
        shell = await create_subprocess_shell("true", level="low", policy=configured)
        await shell.wait()

    with pytest.warns(ProcessPriorityWarning) as caught_async:
        asyncio.run(start())
    assert [w.filename for w in [*caught, *caught_method, *caught_async]] == [__file__] * 4
