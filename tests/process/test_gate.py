"""The process gate: how many children run at once, per level, and when a seat comes back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from prioritize import (
    ConfigError,
    LevelSet,
    Policy,
    Reason,
    Rejected,
    UnknownLevelError,
    level_scope,
    parse_policy,
)
from prioritize.process import (
    PrioritizedPopen,
    ProcessGate,
    ProcessPolicy,
    ProcessPriority,
    popen,
    run,
)

from .children import children_of_this_process, eventually, in_thread, nice_of, policy


def blocker(gate: ProcessGate, level: str = "normal") -> PrioritizedPopen:
    """A child that runs until its stdin is closed."""
    return gate.popen(["cat"], level=level, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)


def finish(child: PrioritizedPopen) -> None:
    assert child.stdin is not None
    child.stdin.close()
    child.wait()


def test_at_most_capacity_children_run_at_once() -> None:
    gate = ProcessGate(policy(capacity=2))
    first, second = blocker(gate), blocker(gate)
    thread, outcome = in_thread(lambda: blocker(gate))
    eventually(lambda: gate.stats().waiting == 1, "the third child waits for a seat")
    assert children_of_this_process() >= {first.pid, second.pid}
    assert gate.stats().in_use == 2
    finish(first)  # its seat goes to the third
    thread.join()
    (third,) = outcome
    assert isinstance(third, PrioritizedPopen)
    assert {second.pid, third.pid} <= children_of_this_process()
    assert first.pid not in children_of_this_process()
    finish(second)
    finish(third)
    assert gate.stats().in_use == 0


def test_a_levels_max_limits_its_children_while_others_still_start() -> None:
    gate = ProcessGate(
        policy(capacity=3, toml_levels="[gates.processes.levels.bulk]\nmax = 1\nmax_wait = 0\n")
    )
    bulk = blocker(gate, "bulk")
    with pytest.raises(Rejected) as shed:
        blocker(gate, "bulk")
    assert shed.value.reason is Reason.LIMIT
    assert shed.value.retry_after > 0
    critical = blocker(gate, "critical")
    assert {bulk.pid, critical.pid} <= children_of_this_process()
    assert gate.stats().level("bulk").in_use == 1
    finish(bulk)
    finish(critical)


def test_a_seat_reserved_for_critical_is_kept_from_bulk() -> None:
    gate = ProcessGate(
        policy(
            capacity=2,
            toml_levels="[gates.processes.levels.critical]\nmin = 1\n"
            "[gates.processes.levels.bulk]\nmax_wait = 0\n",
        )
    )
    bulk = blocker(gate, "bulk")
    with pytest.raises(Rejected) as shed:
        blocker(gate, "bulk")
    assert shed.value.reason is Reason.LIMIT
    critical = blocker(gate, "critical")
    finish(bulk)
    finish(critical)


def test_a_full_queue_rejects_with_a_reason_and_retry_after() -> None:
    gate = ProcessGate(policy(capacity=1, toml_levels="queue = 0"))
    holder = blocker(gate)
    with pytest.raises(Rejected) as shed:
        gate.run(["true"])
    assert shed.value.reason is Reason.QUEUE_FULL
    assert shed.value.retry_after > 0
    assert str(shed.value).startswith("normal request shed (queue_full); retry after")
    finish(holder)


def test_a_waiter_past_max_wait_is_shed_with_timeout() -> None:
    gate = ProcessGate(
        policy(capacity=1, toml_levels="[gates.processes.levels.low]\nmax_wait = 0.05\n")
    )
    holder = blocker(gate)
    with pytest.raises(Rejected) as shed:
        blocker(gate, "low")
    assert shed.value.reason is Reason.TIMEOUT
    assert gate.stats().waiting == 0
    finish(holder)


def test_the_seat_comes_back_when_the_child_exits_though_nobody_waits() -> None:
    gate = ProcessGate(policy(capacity=1))
    child = blocker(gate)
    assert child.stdin is not None
    child.stdin.close()  # it exits; nobody calls wait()
    again = blocker(gate)  # waits for the watcher to give the seat back
    assert child.returncode == 0  # reaped by the watcher: no zombie
    finish(again)


def test_the_seat_is_free_once_wait_returns_after_a_kill() -> None:
    gate = ProcessGate(policy(capacity=1))
    child = gate.popen(["sleep", "60"])
    assert gate.stats().in_use == 1
    child.kill()
    assert child.wait() == -9
    assert gate.stats().in_use == 0


def test_a_poll_that_sees_the_exit_has_given_the_seat_back() -> None:
    gate = ProcessGate(policy(capacity=1))
    child = gate.popen(["true"])
    eventually(lambda: child.poll() is not None, "the child has exited")
    assert gate.stats().in_use == 0


def test_a_with_block_that_raises_kills_the_child_and_frees_the_seat() -> None:
    gate = ProcessGate(policy(capacity=1))
    with pytest.raises(RuntimeError, match="boom"), gate.popen(["sleep", "60"]) as child:
        raise RuntimeError("boom")
    assert child.returncode == -9
    assert gate.stats().in_use == 0


def test_a_child_that_cannot_start_gives_its_seat_back() -> None:
    gate = ProcessGate(policy(capacity=1))
    with pytest.raises(FileNotFoundError):
        gate.popen(["/nonexistent/program"], level="low")  # started from a thread of its own
    with pytest.raises(FileNotFoundError):
        gate.popen(["/nonexistent/program"], level="critical")  # from the caller's thread
    assert gate.stats().in_use == 0


def test_run_is_subprocess_run_and_frees_its_seat() -> None:
    gate = ProcessGate(policy(capacity=1))
    done = gate.run(["sh", "-c", "cat; exit 3"], input=b"hi", capture_output=True)
    assert (done.returncode, done.stdout, done.stderr) == (3, b"hi", b"")
    with pytest.raises(subprocess.CalledProcessError) as failed:
        gate.run(["false"], check=True)
    assert failed.value.returncode == 1
    with pytest.raises(subprocess.TimeoutExpired):
        gate.run(["sleep", "60"], timeout=0.01)
    assert gate.stats().in_use == 0


def test_run_refuses_what_subprocess_run_refuses() -> None:
    gate = ProcessGate(policy())
    with pytest.raises(ValueError, match="stdin and input arguments may not both be used"):
        gate.run(["true"], input=b"x", stdin=subprocess.PIPE)
    with pytest.raises(ValueError, match="stdout and stderr arguments may not be used"):
        gate.run(["true"], capture_output=True, stdout=subprocess.PIPE)
    assert gate.stats().in_use == 0


def test_the_current_level_is_used_when_none_is_given() -> None:
    configured = policy()
    with level_scope(configured.levels["bulk"]), popen(["sleep", "60"], policy=configured) as child:
        assert child.level == configured.levels["bulk"]
        assert nice_of(child.pid) == 19
        child.kill()


def test_without_a_current_level_the_policys_default_level_is_used() -> None:
    with popen(["true"], policy=policy()) as child:
        assert child.level is not None
        assert child.level.name == "normal"


def test_a_current_level_of_another_level_set_is_taken_by_name() -> None:
    configured = policy()
    elsewhere = LevelSet(["low", "high"])["low"]
    gate = ProcessGate(configured)
    with level_scope(elsewhere):
        assert gate.level() == configured.levels["low"]


def test_an_unknown_level_is_refused_naming_the_valid_ones() -> None:
    with pytest.raises(UnknownLevelError) as info:
        popen(["true"], level="urgent", policy=policy())
    assert str(info.value) == (
        "unknown level 'urgent'; valid levels are ['critical', 'high', 'normal', 'low', 'bulk']"
    )


def test_callers_with_the_same_policy_share_one_gate() -> None:
    configured = policy(capacity=1, toml_levels="[gates.processes.levels.normal]\nmax_wait = 0\n")
    holder = popen(["cat"], policy=configured, stdin=subprocess.PIPE)
    with pytest.raises(Rejected):
        run(["true"], policy=configured)  # the module functions count against the same seat
    assert ProcessGate.of(configured) is ProcessGate.of(configured)
    assert ProcessGate.of(configured) is not ProcessGate.of(policy(capacity=1))
    finish(holder)
    assert repr(ProcessGate.of(configured)) == (
        "<ProcessGate processes of test.toml: 0/1 children, 0 waiting>"
    )


def test_without_a_policy_the_policy_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "prioritize.toml").write_text(
        "[gates.processes]\ncapacity = 1\n[processes.levels.high]\nnice = 4\n", encoding="utf-8"
    )
    code = (
        "from prioritize.process import run\n"
        "out = run(['cut', '-d', ' ', '-f19', '/proc/self/stat'], level='high', "
        "capture_output=True, text=True)\n"
        "print(out.stdout.strip())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "4"


def test_a_gate_refuses_a_code_built_policy_naming_an_unknown_level() -> None:
    policy = Policy(
        gates=parse_policy({"gates": {"processes": {"capacity": 1}}}).gates,
        processes=ProcessPolicy(levels={"urgent": ProcessPriority(nice=-1)}),
    )
    with pytest.raises(ConfigError) as info:
        ProcessGate(policy)
    assert str(info.value) == (
        "processes.levels.urgent: unknown level 'urgent'; valid levels are "
        "['critical', 'high', 'normal', 'low', 'bulk'] (in <code>)"
    )


def test_a_gate_needs_the_policy_to_have_its_gate() -> None:
    with pytest.raises(ConfigError) as info:
        ProcessGate(parse_policy({"gates": {"api": {"capacity": 4}}}), "processes")
    assert str(info.value) == (
        "gates.processes: no such gate in <dict>; gates defined: 'api'; child processes "
        "need one: [gates.processes] with a capacity, the most children running at once"
    )
