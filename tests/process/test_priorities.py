"""Children run with their level's nice value and I/O class, read from outside the child.

These run as root (the test machine's user), so raising a priority is
permitted here; test_not_permitted.py drops privileges for the other case.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from prioritize.process import ProcessGate, popen, run

from .children import grandchild, in_thread, io_of, nice_of, policy

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="nice and ionice per thread: Linux")

OWN_NICE = os.getpriority(os.PRIO_PROCESS, 0)


def own_io() -> str:
    return io_of(threading.get_native_id())


@pytest.mark.parametrize(
    ("level", "nice", "io"),
    [
        ("critical", OWN_NICE, None),
        ("normal", OWN_NICE, None),
        ("low", 10, "best-effort:7"),
        ("bulk", 19, "idle"),
    ],
)
def test_each_level_runs_at_its_default_nice_value_and_io_class(
    level: str, nice: int, io: str | None
) -> None:
    with popen(["sleep", "60"], level=level, policy=policy()) as child:
        assert nice_of(child.pid) == nice
        assert io_of(child.pid) == (io or own_io())
        assert child.problems == ()
        child.kill()


def test_the_policy_sets_each_levels_priorities() -> None:
    configured = policy(
        processes="[processes.levels.critical]\nnice = -5\nionice = 'realtime:2'\n"
        "[processes.levels.low]\nnice = 7\nionice = 'best-effort:3'\n",
    )
    with popen(["sleep", "60"], level="critical", policy=configured) as critical:
        assert (nice_of(critical.pid), io_of(critical.pid)) == (-5, "realtime:2")
        critical.kill()
    with popen(["sleep", "60"], level="low", policy=configured) as low:
        assert (nice_of(low.pid), io_of(low.pid)) == (7, "best-effort:3")
        low.kill()


def test_a_child_reads_its_own_nice_value_from_its_first_instruction() -> None:
    code = "print(open('/proc/self/stat').read().rpartition(')')[2].split()[16])"
    done = run([sys.executable, "-c", code], level="bulk", policy=policy(), capture_output=True)
    assert done.returncode == 0
    assert done.stdout.strip() == b"19"


def test_what_the_child_forks_inherits_its_priorities() -> None:
    script = "sleep 60 & echo started; wait"
    with popen(["sh", "-c", script], level="low", policy=policy(), stdout=subprocess.PIPE) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == b"started\n"
        forked = grandchild(child.pid)
        assert (nice_of(forked), io_of(forked)) == (10, "best-effort:7")
        os.kill(forked, 9)
        child.kill()


def test_the_callers_thread_keeps_its_own_priorities() -> None:
    before = (os.getpriority(os.PRIO_PROCESS, 0), own_io())
    run(["true"], level="bulk", policy=policy())
    assert (os.getpriority(os.PRIO_PROCESS, 0), own_io()) == before


def test_a_default_never_raises_a_priority() -> None:
    """From a thread already at nice 15 in the idle class, low's default (10, best-effort:7)
    would raise both; the child keeps 15 and idle instead, without a warning."""

    def start_low_child() -> tuple[int, str]:
        os.setpriority(os.PRIO_PROCESS, 0, 15)
        subprocess.run(["ionice", "-c", "3", "-p", str(threading.get_native_id())], check=True)
        with popen(["sleep", "60"], level="low", policy=policy()) as child:
            found = nice_of(child.pid), io_of(child.pid)
            child.kill()
        return found

    thread, outcome = in_thread(start_low_child)
    thread.join()
    assert outcome == [(15, "idle")]


def test_a_level_that_inherits_everything_starts_from_the_callers_thread() -> None:
    gate = ProcessGate(policy(processes="[processes]\ndefaults = false\n"))
    with gate.popen(["sleep", "60"], level="bulk") as child:
        assert nice_of(child.pid) == OWN_NICE
        assert io_of(child.pid) == own_io()
        child.kill()
    assert gate.priority("bulk").is_inherited
