"""`PrioritizedPopen`: a `subprocess.Popen` that gives its seat back when the child has exited.

A seat must never outlive its child, nor leak when the caller forgets it.
Three things give it back, whichever comes first, exactly once (the gate's
release is idempotent):

* the caller seeing the exit: `wait`, `poll` returning a code,
  `communicate`, the ``with`` block's end (which also kills the child if
  the block raised, as `subprocess.run` does, instead of waiting for a
  child that may never end);
* a watcher thread per child (a daemon, like asyncio's threaded child
  watcher) blocked in ``waitpid``: the seat goes back as soon as the child
  exits, even if nobody ever waits for it, and no zombie is left.

So a seat is held exactly while the child runs, and the caller that has
seen the exit can count on the seat being free. `run` is `subprocess.run`
on top of it.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..core.levels import Level

if TYPE_CHECKING:
    from ._seats import Seat, SeatGate

__all__ = ["PrioritizedPopen", "communicate_run"]


class PrioritizedPopen(subprocess.Popen[Any]):
    """A child started at a level, holding a seat of a process gate until it exits.

    Everything of `subprocess.Popen` works as usual. ``level`` is the level
    it runs at and ``problems`` lists the priorities that could not be
    applied (each also reported as a `ProcessPriorityWarning`). Leaving a
    ``with`` block by an exception kills the child first.
    """

    level: Level | None = None
    problems: tuple[str, ...] = ()
    _gate: SeatGate | None = None
    _seat: Seat | None = None

    def hold(
        self,
        gate: SeatGate,
        seat: Seat,
        level: Level,
        problems: list[str],
        on_exit: Callable[[int], object] | None,
    ) -> None:
        """Attach the child's seat and start its watcher (the spawner's last step)."""
        self.level = level
        self.problems = tuple(problems)
        self._gate = gate
        self._seat = seat
        watcher = threading.Thread(
            target=self._watch, args=(on_exit,), name=f"prioritize-child-{self.pid}", daemon=True
        )
        watcher.start()

    def wait(self, timeout: float | None = None) -> int:
        code = super().wait(timeout)
        self._give_back()
        return code

    def poll(self) -> int | None:
        code = super().poll()
        if code is not None:
            self._give_back()
        return code

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None and self.returncode is None:
            with contextlib.suppress(OSError):
                self.kill()
        super().__exit__(exc_type, value, traceback)

    def _give_back(self) -> None:
        if self._gate is not None and self._seat is not None:
            self._gate.release(self._seat)

    def _watch(self, on_exit: Callable[[int], object] | None) -> None:
        code = self.wait()
        if on_exit is not None:
            on_exit(code)

    def __repr__(self) -> str:
        level = "" if self.level is None else f" level={self.level.name}"
        return f"<PrioritizedPopen: returncode: {self.returncode} args: {self.args!r}{level}>"


def communicate_run(
    start: Callable[[dict[str, Any]], PrioritizedPopen],
    kwargs: dict[str, Any],
    *,
    input: Any,
    capture_output: bool,
    timeout: float | None,
    check: bool,
) -> subprocess.CompletedProcess[Any]:
    """`subprocess.run`'s body, over a child from ``start(kwargs)``."""
    if input is not None:
        if kwargs.get("stdin") is not None:
            raise ValueError("stdin and input arguments may not both be used.")
        kwargs["stdin"] = subprocess.PIPE
    if capture_output:
        if kwargs.get("stdout") is not None or kwargs.get("stderr") is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output.")
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    with start(kwargs) as process:
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()  # communicate already put the output so far on the exception
            raise
        except BaseException:
            process.kill()  # the with block waits
            raise
        code = process.poll()
        assert code is not None  # communicate has waited
        if check and code:
            raise subprocess.CalledProcessError(code, process.args, output=stdout, stderr=stderr)
    return subprocess.CompletedProcess(process.args, code, stdout, stderr)
