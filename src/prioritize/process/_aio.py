"""`AsyncProcess`: the asyncio side of a prioritized child.

asyncio starts children from the event loop's own thread (``Popen`` inside
``loop.subprocess_exec``), where their priorities could only be set after
the fact or in a ``preexec_fn``. So the child is started as the threaded
API starts it (from a short-lived thread with the level's priorities; the
loop waits for that start, as it waits for asyncio's own) and adopted: its pipes become
`asyncio.StreamReader`/`StreamWriter` through ``connect_read_pipe`` and
``connect_write_pipe``, and its exit, seen by the watcher thread that also
gives its seat back, is passed to the loop with ``call_soon_threadsafe``.
`AsyncProcess` offers what `asyncio.subprocess.Process` does, with the same
argument checks as `asyncio.create_subprocess_exec`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import IO, Any, final

from ..core.levels import Level
from ._popen import PrioritizedPopen

__all__ = [
    "DEFAULT_LIMIT",
    "AsyncProcess",
    "ExitWatch",
    "check_exec_options",
    "check_shell_options",
]

#: the buffer limit of the child's output streams, as asyncio's
DEFAULT_LIMIT = 2**16


def check_exec_options(kwargs: dict[str, Any]) -> None:
    """Refuse what `asyncio.create_subprocess_exec` refuses, with its messages."""
    if kwargs.pop("shell", False):
        raise ValueError("shell must be False")
    _check_common(kwargs)


def check_shell_options(cmd: object, kwargs: dict[str, Any]) -> None:
    """Refuse what `asyncio.create_subprocess_shell` refuses, with its messages."""
    if not isinstance(cmd, bytes | str):
        raise ValueError("cmd must be a string")
    if not kwargs.pop("shell", True):
        raise ValueError("shell must be True")
    _check_common(kwargs)


def _check_common(kwargs: dict[str, Any]) -> None:
    if kwargs.get("universal_newlines"):
        raise ValueError("universal_newlines must be False")
    if kwargs.pop("bufsize", 0) != 0:
        raise ValueError("bufsize must be 0")
    if kwargs.get("text"):
        raise ValueError("text must be False")
    if kwargs.get("encoding") is not None:
        raise ValueError("encoding must be None")
    if kwargs.get("errors") is not None:
        raise ValueError("errors must be None")


@final
class ExitWatch:
    """Carries the child's exit from its watcher thread to the event loop."""

    __slots__ = ("_loop", "future")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.future: asyncio.Future[int] = self._loop.create_future()

    def exited(self, code: int) -> None:
        """Called by the watcher thread once the child is reaped (its seat is back)."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._settle, code)

    def _settle(self, code: int) -> None:
        if not self.future.done():
            self.future.set_result(code)


@final
class AsyncProcess:
    """A child started at a level, for asyncio: the `asyncio.subprocess.Process` interface.

    ``stdin`` is an `asyncio.StreamWriter`, ``stdout`` and ``stderr``
    `asyncio.StreamReader` (for ``PIPE``), else None. Its seat is given back
    when the child exits, before `wait` returns. ``popen`` is the underlying
    `PrioritizedPopen`.
    """

    __slots__ = ("_exited", "popen", "stderr", "stdin", "stdout")

    def __init__(
        self,
        popen: PrioritizedPopen,
        exited: asyncio.Future[int],
        stdin: asyncio.StreamWriter | None,
        stdout: asyncio.StreamReader | None,
        stderr: asyncio.StreamReader | None,
    ) -> None:
        self.popen = popen
        self._exited = exited
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr

    @classmethod
    async def adopt(cls, popen: PrioritizedPopen, watch: ExitWatch, limit: int) -> AsyncProcess:
        """Connect a started child's pipes to the running loop; kills the child if that fails."""
        loop = asyncio.get_running_loop()
        transports: list[asyncio.BaseTransport] = []
        try:
            stdin = None if popen.stdin is None else await _writer(loop, popen.stdin, transports)
            stdout = (
                None
                if popen.stdout is None
                else await _reader(loop, popen.stdout, limit, transports)
            )
            stderr = (
                None
                if popen.stderr is None
                else await _reader(loop, popen.stderr, limit, transports)
            )
        except BaseException:
            with contextlib.suppress(OSError):
                popen.kill()  # the watcher reaps it and gives the seat back
            for transport in transports:
                transport.close()  # stops watching its pipe at once
            for pipe in (popen.stdin, popen.stdout, popen.stderr):
                if pipe is not None:
                    pipe.close()
            raise
        return cls(popen, watch.future, stdin, stdout, stderr)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once the child has exited (negative: killed by that signal), else None."""
        return self.popen.returncode

    @property
    def level(self) -> Level | None:
        return self.popen.level

    @property
    def problems(self) -> tuple[str, ...]:
        """The priorities that could not be applied (each also warned about)."""
        return self.popen.problems

    async def wait(self) -> int:
        """Wait for the child to exit; its exit code. The seat is free by then."""
        return await asyncio.shield(self._exited)

    async def communicate(self, input: bytes | None = None) -> tuple[bytes | None, bytes | None]:
        """Send ``input`` to stdin, read stdout and stderr to the end, wait for the exit."""
        _, out, err = await asyncio.gather(
            self._feed(input), _read_all(self.stdout), _read_all(self.stderr)
        )
        await self.wait()
        return out, err

    def send_signal(self, signal: int) -> None:
        self.popen.send_signal(signal)

    def terminate(self) -> None:
        self.popen.terminate()

    def kill(self) -> None:
        self.popen.kill()

    async def _feed(self, input: bytes | None) -> None:
        if self.stdin is None:
            return
        if input is not None:
            self.stdin.write(input)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await self.stdin.drain()  # the child may have exited without reading
        self.stdin.close()

    def __repr__(self) -> str:
        level = "" if self.level is None else f" {self.level.name}"
        return f"<AsyncProcess {self.pid}{level} returncode={self.returncode}>"


async def _read_all(stream: asyncio.StreamReader | None) -> bytes | None:
    return None if stream is None else await stream.read()


async def _reader(
    loop: asyncio.AbstractEventLoop,
    pipe: IO[bytes],
    limit: int,
    transports: list[asyncio.BaseTransport],
) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=limit)
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await loop.connect_read_pipe(lambda: protocol, pipe)
    transports.append(transport)
    return reader


async def _writer(
    loop: asyncio.AbstractEventLoop, pipe: IO[bytes], transports: list[asyncio.BaseTransport]
) -> asyncio.StreamWriter:
    # StreamReaderProtocol gives the writer drain() and wait_closed(); its reader stays unused
    protocol = asyncio.StreamReaderProtocol(asyncio.StreamReader())
    transport, _ = await loop.connect_write_pipe(lambda: protocol, pipe)
    transports.append(transport)
    return asyncio.StreamWriter(transport, protocol, None, loop)
