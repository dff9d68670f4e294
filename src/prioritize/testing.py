"""Virtual time, so code running under a gate can be tested exactly and instantly.

`VirtualClock` is a clock a test moves by hand (``clock.advance(5)``) and,
under asyncio, the clock of the running event loop: inside
``with clock.patch_loop():`` the loop reads the virtual time, and whenever
every task is waiting for a timer the loop jumps straight to that timer
instead of sleeping. A test of "bulk is shed after its 30 s max_wait" then
runs in microseconds, and its outcome does not depend on how busy the machine
is. Nothing is mocked: the real loop runs the real callbacks in the real
order; only the passage of time is simulated.

How it works: the loop's ``time()`` is replaced by the virtual clock, and its
selector's ``select(timeout)`` (the only place an asyncio loop sleeps) is
wrapped so that a positive timeout advances virtual time by that much and
polls without blocking. Real I/O still works: it is polled at every step.
This is the approach of aiotools' and looptime's virtual clocks; it relies on
the selector-based event loops of CPython (the default on Linux and macOS).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar, final

__all__ = ["VirtualClock", "run_virtual"]

_T = TypeVar("_T")


class _Selector(Protocol):
    def select(self, timeout: float | None = None) -> list[tuple[object, int]]: ...


@final
class VirtualClock:
    """A clock that moves only when told to, or when an asyncio loop would sleep."""

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def __call__(self) -> float:
        """The current virtual time (use it wherever a ``clock()`` callable is taken)."""
        return self._now

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward; returns the new time. Time never goes backwards."""
        if not seconds >= 0:
            raise ValueError(f"cannot advance a clock by {seconds!r} seconds; use a number ≥ 0")
        self._now += seconds
        return self._now

    @contextmanager
    def patch_loop(self, loop: asyncio.AbstractEventLoop | None = None) -> Iterator[None]:
        """Run the (running) event loop on virtual time for the duration of the block."""
        loop = loop or asyncio.get_running_loop()
        selector: _Selector | None = getattr(loop, "_selector", None)
        if selector is None:
            raise TypeError(
                f"{type(loop).__name__} has no selector to drive; VirtualClock needs a "
                "selector event loop (asyncio's default on Linux and macOS)"
            )
        real_select = selector.select

        def select(timeout: float | None = None) -> list[tuple[object, int]]:
            if timeout is not None and timeout > 0:
                self._now += timeout  # the loop would sleep until its next timer: jump there
                return real_select(0)
            return real_select(timeout)

        loop.time = self.time  # type: ignore[method-assign]
        selector.select = select  # type: ignore[method-assign]
        try:
            yield
        finally:
            delattr(loop, "time")  # back to the class's own clock
            selector.select = real_select  # type: ignore[method-assign]

    def __repr__(self) -> str:
        return f"<VirtualClock t={self._now:g}>"


def run_virtual(main: Callable[[], Awaitable[_T]], start: float = 0.0) -> _T:
    """``asyncio.run(main())`` on a fresh loop whose time is a `VirtualClock` from ``start``.

    The usual shape of a test of code under a gate: timeouts and waits of
    minutes happen at once, and exactly. Returns what ``main()`` returns.
    """

    async def on_virtual_time() -> _T:
        with VirtualClock(start).patch_loop():
            return await main()

    return asyncio.run(on_virtual_time())
