"""Start the demo's server as a child process and stop it again (the parent's half).

`running_server` starts ``python -m prioritize.demo.server`` with the policy,
waits for its ``listening PORT`` line (no polling, no sleeps: it reads the
pipe), and on exit closes the child's stdin, which shuts it down
gracefully; a child that does not stop within `STOP_TIMEOUT` is killed.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import final

__all__ = ["START_TIMEOUT", "STOP_TIMEOUT", "RunningServer", "ServerError", "running_server"]

#: Seconds the child may take to import, check its policy and listen.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


class ServerError(RuntimeError):
    """The demo's server could not be started."""


@final
@dataclass(frozen=True, slots=True)
class RunningServer:
    """The demo's server, as its parent sees it."""

    port: int
    process: asyncio.subprocess.Process

    def check_alive(self) -> None:
        """Raise `ServerError` if the server has exited: a run against it measured nothing."""
        if self.process.returncode is not None:
            raise ServerError(
                f"the demo server exited during the run (exit {self.process.returncode})"
            )


@asynccontextmanager
async def running_server(policy_toml: str) -> AsyncIterator[RunningServer]:
    """Serve ``policy_toml``'s service on 127.0.0.1 in a child process, for as long as the block."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "prioritize.demo.server",
        policy_toml,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    if child.stdin is None or child.stdout is None or child.stderr is None:  # pipes were asked for
        raise ServerError("the demo server's pipes could not be opened")
    errors = asyncio.ensure_future(child.stderr.read())
    try:
        try:
            line = await asyncio.wait_for(child.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            raise ServerError(
                f"the demo server did not listen within {START_TIMEOUT:g} s"
            ) from None
        word, _, port = line.decode().partition(" ")
        if word != "listening" or not port.strip().isdigit():
            await child.wait()
            message = (await errors).decode(errors="replace").strip() or f"exit {child.returncode}"
            raise ServerError(f"the demo server failed to start: {message}")
        yield RunningServer(int(port), child)
    finally:
        child.stdin.close()
        try:
            await asyncio.wait_for(child.wait(), STOP_TIMEOUT)
        except TimeoutError:
            child.kill()
            await child.wait()
        errors.cancel()
        with suppress(asyncio.CancelledError):
            await errors
