"""The asyncio variant: real children, seats shared with threads, cancellation, argument checks."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from prioritize import Reason, Rejected, level_scope
from prioritize.process import (
    AsyncProcess,
    ProcessGate,
    create_subprocess_exec,
    create_subprocess_shell,
)

from .children import io_of, nice_of, policy

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


async def settle() -> None:
    """Let every ready task run until all of them wait again."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_a_child_runs_at_its_level_and_communicates() -> None:
    async def body() -> tuple[bytes | None, int, int, str]:
        child = await create_subprocess_exec(
            "sh",
            "-c",
            "cat; cut -d' ' -f19 /proc/self/stat",
            level="bulk",
            policy=policy(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        nice, io = nice_of(child.pid), io_of(child.pid)
        out, err = await child.communicate(b"hello\n")
        assert err is None
        return out, await child.wait(), nice, io

    assert run(body()) == (b"hello\n19\n", 0, 19, "idle")


def test_streams_read_and_write_while_the_child_runs() -> None:
    async def body() -> list[bytes]:
        gate = ProcessGate(policy(capacity=1))
        child = await gate.create_subprocess_exec(
            "cat", stdin=subprocess.PIPE, stdout=subprocess.PIPE, level="low"
        )
        assert child.stdin is not None
        assert child.stdout is not None
        lines = []
        for word in (b"one\n", b"two\n"):
            child.stdin.write(word)
            await child.stdin.drain()
            lines.append(await child.stdout.readline())
        child.stdin.close()
        assert await child.wait() == 0
        assert gate.stats().in_use == 0  # given back before wait() returned
        assert child.returncode == 0
        return lines

    assert run(body()) == [b"one\n", b"two\n"]


def test_a_shell_command_runs_at_its_level() -> None:
    async def body() -> tuple[bytes | None, bytes | None]:
        child = await create_subprocess_shell(
            "cut -d' ' -f19 /proc/self/stat; echo oops >&2",
            level="low",
            policy=policy(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        return await child.communicate()

    assert run(body()) == (b"10\n", b"oops\n")


def test_threads_and_coroutines_count_against_the_same_seats() -> None:
    async def body() -> None:
        gate = ProcessGate(policy(capacity=1))
        held = gate.popen(["cat"], stdin=subprocess.PIPE)  # a thread's child
        waiter = asyncio.create_task(gate.create_subprocess_exec("true", level="high"))
        await settle()
        assert gate.stats().waiting == 1
        assert held.stdin is not None
        held.stdin.close()  # its exit hands the seat to the coroutine
        child = await waiter
        assert await child.wait() == 0
        assert held.wait() == 0
        assert gate.stats().in_use == 0

    run(body())


def test_cancelling_a_waiting_coroutine_withdraws_it() -> None:
    async def body() -> None:
        gate = ProcessGate(policy(capacity=1))
        holder = await gate.create_subprocess_exec("cat", stdin=subprocess.PIPE)
        waiter = asyncio.create_task(gate.create_subprocess_exec("true"))
        await settle()
        assert gate.stats().waiting == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert gate.stats().waiting == 0
        assert gate.stats().level("normal").cancelled == 1
        assert holder.stdin is not None
        holder.stdin.close()
        await holder.wait()
        assert gate.stats().in_use == 0

    run(body())


def test_a_coroutine_is_shed_with_rejected() -> None:
    async def body() -> None:
        gate = ProcessGate(
            policy(capacity=1, toml_levels="[gates.processes.levels.low]\nmax_wait = 0.05\n")
        )
        holder = await gate.create_subprocess_exec("sleep", "60", level="critical")
        with pytest.raises(Rejected) as shed:
            await gate.create_subprocess_exec("true", level="low")
        assert shed.value.reason is Reason.TIMEOUT
        holder.kill()
        assert await holder.wait() == -9
        assert gate.stats().in_use == 0

    run(body())


def test_the_current_level_of_the_task_is_used() -> None:
    async def body() -> str:
        configured = policy()
        with level_scope(configured.levels["low"]):
            child = await create_subprocess_exec("sleep", "60", policy=configured)
        assert child.level == configured.levels["low"]
        nice = nice_of(child.pid)
        child.kill()
        await child.wait()
        return f"{nice} {child!r}"

    out = run(body())
    assert out.startswith("10 <AsyncProcess ")
    assert out.endswith(" low returncode=-9>")


def test_a_dropped_process_still_gives_its_seat_back_when_it_exits() -> None:
    async def body() -> None:
        gate = ProcessGate(policy(capacity=1))
        await gate.create_subprocess_exec("true")  # never waited for
        second: AsyncProcess = await gate.create_subprocess_exec("true")  # gets the seat back
        assert await second.wait() == 0

    run(body())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"shell": True}, "shell must be False"),
        ({"text": True}, "text must be False"),
        ({"universal_newlines": True}, "universal_newlines must be False"),
        ({"bufsize": 1}, "bufsize must be 0"),
        ({"encoding": "utf-8"}, "encoding must be None"),
        ({"errors": "strict"}, "errors must be None"),
    ],
)
def test_exec_refuses_what_asyncio_refuses(options: dict[str, object], message: str) -> None:
    gate = ProcessGate(policy())
    with pytest.raises(ValueError, match=f"^{message}$"):
        run(gate.create_subprocess_exec("true", **options))
    assert gate.stats().in_use == 0


def test_shell_refuses_what_asyncio_refuses() -> None:
    gate = ProcessGate(policy())
    with pytest.raises(ValueError, match=r"^cmd must be a string$"):
        run(gate.create_subprocess_shell(["true"]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^shell must be True$"):
        run(gate.create_subprocess_shell("true", shell=False))
