"""``prioritize worker`` in child processes, for the tests that need real processes.

Each process logs to a file of its own (a pipe nobody reads would fill and
block it), read back to wait for a line or to show why a test failed.
Waiting polls a condition under a deadline; the deadline only guards
against a hang.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PRIORITIZE = Path(sys.executable).with_name("prioritize")
ROOT = Path(__file__).resolve().parents[3]
#: seconds before a wait is declared hung
HANG = 60.0


class WorkerProcess:
    """One ``prioritize worker APP ARGS...`` with ``env`` added to this process's environment."""

    def __init__(self, app: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as err:
            self.process = subprocess.Popen(
                [str(PRIORITIZE), "worker", app, *args],
                cwd=ROOT,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = HANG) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker {self.pid} still runs; its log:\n{self.output()}"
            ) from None

    async def wait_for_output(self, text: str) -> None:
        """Until ``text`` is in the log; fails at once if the process exits first."""

        def seen() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"worker {self.pid} exited ({self.process.returncode}) before logging "
                    f"{text!r}; its log:\n{self.output()}"
                )
            return text in self.output()

        await wait_until(seen, f"worker {self.pid} to log {text!r}")

    def stop(self) -> int:
        """SIGTERM, then the exit status."""
        self.signal(signal.SIGTERM)
        return self.wait()


async def wait_until(
    condition: Callable[[], Any], what: str, *, asynchronous: bool = False, timeout: float = HANG
) -> None:
    """Poll ``condition`` (a coroutine function if ``asynchronous``) every 20 ms until true.

    AssertionError naming ``what`` at the deadline.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (await condition() if asynchronous else condition()):
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


@contextmanager
def worker_processes(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """``start(app, *args, **env)`` starting workers; any still running are killed on leaving."""
    started: list[WorkerProcess] = []

    def start(app: str, *args: str, **env: str) -> WorkerProcess:
        log = tmp_path / f"worker-{len(started)}.log"
        worker = WorkerProcess(app, list(args), env, log)
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()
