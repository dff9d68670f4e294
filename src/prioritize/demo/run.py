"""The demo end to end: an unloaded baseline, then the same overload with priorities and FIFO.

Three runs, each against a real uvicorn server in a child process:

1. **unloaded** — a light load (a quarter of the capacity by default) through
   the policy with priorities, for each level's latency when nothing waits;
2. **priorities** — the overload (4× the capacity by default) through the
   same server;
3. **fifo** — the *same* requests (same seed, same send times, same work)
   through a second server whose policy has one level and no rules: the
   same seats, queue bound and longest ``max_wait``, so arrival order alone
   decides.

The comparison the demo exists to show is computed here from the measured
figures (`Comparison`); nothing is assumed.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import final

from .client import HttpClient, ProtocolError
from .driver import drive
from .figures import RunFigures, run_figures
from .load import Arrival, offered_load, schedule
from .process import running_server
from .service import CPU_PATH
from .setup import Setup

__all__ = [
    "AIM",
    "DURATION_RANGE",
    "MAX_RATE_FACTOR",
    "TARGET",
    "Comparison",
    "DemoOptions",
    "DemoResult",
    "RunProgressFn",
    "option_problems",
    "run_demo",
]

#: Critical p99 under overload should stay within this many times its unloaded p99 ...
TARGET = 2.0
#: ... and the demo aims for this.
AIM = 1.5

#: Called with the run's name, requests answered and requests in its schedule.
RunProgressFn = Callable[[str, int, int], None]

#: Extra connections opened beyond capacity + queue, for the shed answers in flight.
_SPARE_CONNECTIONS = 64


@final
@dataclass(frozen=True, slots=True)
class DemoOptions:
    """How long and how hard the demo drives the service.

    Construction checks every value and raises `ValueError` naming each bad one.
    """

    #: measured seconds of each overload run
    duration: float = 15.0
    #: seconds of overload sent first and left out of the figures (queues fill up)
    warmup: float = 2.0
    #: offered requests over what the seats can serve: 4 is 4× overload
    rate_factor: float = 4.0
    seed: int = 1
    #: the unloaded run's rate, as a fraction of the capacity
    unloaded_factor: float = 0.25
    #: the unloaded run's length, as a fraction of ``duration``
    unloaded_share: float = field(default=1 / 3)

    def __post_init__(self) -> None:
        problems = [
            f"{name} = {message}"
            for name, message in option_problems(
                self.duration, self.warmup, self.rate_factor, self.seed
            ).items()
        ]
        if not 0 < self.unloaded_factor <= 1:
            problems.append(f"unloaded_factor = {self.unloaded_factor!r}: expected > 0 and ≤ 1")
        if not 0 < self.unloaded_share <= 1:
            problems.append(f"unloaded_share = {self.unloaded_share!r}: expected > 0 and ≤ 1")
        if problems:
            raise ValueError("; ".join(problems))


#: Accepted measured seconds per overload run.
DURATION_RANGE = (1.0, 300.0)
#: The most overload accepted: beyond it a Python client and server on a small machine
#: measure their own CPU, not the queues.
MAX_RATE_FACTOR = 8.0


def option_problems(
    duration: float, warmup: float, rate_factor: float, seed: int
) -> dict[str, str]:
    """What is wrong with each option, by option name; empty when all are fine."""
    problems = {}
    low, high = DURATION_RANGE
    if not (math.isfinite(duration) and low <= duration <= high):
        problems["duration"] = f"{duration:g}: expected seconds from {low:g} to {high:g}"
    longest = duration if "duration" not in problems else high
    if not (math.isfinite(warmup) and 0 <= warmup <= longest):
        problems["warmup"] = f"{warmup:g}: expected seconds from 0 to the duration ({longest:g})"
    if not (math.isfinite(rate_factor) and 0 < rate_factor <= MAX_RATE_FACTOR):
        problems["rate_factor"] = (
            f"{rate_factor:g}: expected a number > 0 and ≤ {MAX_RATE_FACTOR:g} "
            "(more would measure this machine's CPU, not the queues)"
        )
    if not 0 <= seed < 2**63:
        problems["seed"] = f"{seed}: expected a whole number from 0 to 2**63 - 1"
    return problems


@final
@dataclass(frozen=True, slots=True)
class Comparison:
    """One level's p99 latency unloaded, under overload with priorities, and with FIFO."""

    level: str
    unloaded: float | None
    priorities: float | None
    fifo: float | None
    #: the overload's measured offered load over the capacity
    load: float

    @staticmethod
    def _ratio(value: float | None, base: float | None) -> float | None:
        if value is None or base is None or base <= 0:
            return None
        return value / base

    @property
    def priorities_ratio(self) -> float | None:
        return self._ratio(self.priorities, self.unloaded)

    @property
    def fifo_ratio(self) -> float | None:
        return self._ratio(self.fifo, self.unloaded)

    @property
    def is_within_target(self) -> bool:
        ratio = self.priorities_ratio
        return ratio is not None and ratio <= TARGET

    @property
    def is_within_aim(self) -> bool:
        ratio = self.priorities_ratio
        return ratio is not None and ratio <= AIM


@final
@dataclass(frozen=True, slots=True)
class DemoResult:
    setup: Setup
    options: DemoOptions
    unloaded: RunFigures
    priorities: RunFigures
    fifo: RunFigures

    @property
    def runs(self) -> tuple[RunFigures, RunFigures, RunFigures]:
        return self.unloaded, self.priorities, self.fifo

    def comparison(self, level: str | None = None) -> Comparison:
        """The comparison for ``level``, by default the most important one."""
        name = level if level is not None else self.setup.routes[0].level
        return Comparison(
            name,
            self.unloaded.level(name).p99,
            self.priorities.level(name).p99,
            self.fifo.level(name).p99,
            self.priorities.load,
        )


async def run_demo(
    setup: Setup, options: DemoOptions, progress: RunProgressFn | None = None
) -> DemoResult:
    """Run the three runs and return their figures; raises `ServerError` if a server fails."""
    light_duration = options.duration * options.unloaded_share
    light = schedule(
        setup, setup.capacity_rate * options.unloaded_factor, light_duration, options.seed
    )
    end = options.warmup + options.duration
    heavy = schedule(setup, setup.capacity_rate * options.rate_factor, end, options.seed)
    heavy_load = offered_load(heavy, options.warmup, end, setup.capacity)
    unloaded, priorities = await _serve(
        setup,
        setup.priority_toml(),
        [
            _Plan(
                "unloaded",
                light,
                0.0,
                light_duration,
                offered_load(light, 0.0, light_duration, setup.capacity),
            ),
            _Plan("priorities", heavy, options.warmup, options.duration, heavy_load),
        ],
        progress,
    )
    (fifo,) = await _serve(
        setup,
        setup.fifo_toml(),
        [_Plan("fifo", heavy, options.warmup, options.duration, heavy_load)],
        progress,
    )
    return DemoResult(setup, options, unloaded, priorities, fifo)


@final
@dataclass(frozen=True, slots=True)
class _Plan:
    name: str
    arrivals: Sequence[Arrival]
    warmup: float
    duration: float
    load: float


async def _serve(
    setup: Setup, policy_toml: str, plans: Sequence[_Plan], progress: RunProgressFn | None
) -> list[RunFigures]:
    """Start a server for ``policy_toml`` and run each plan against it, one after the other."""
    levels = [route.level for route in setup.routes]
    async with running_server(policy_toml) as server:
        client = HttpClient("127.0.0.1", server.port)
        try:
            await client.prepare(setup.capacity + setup.queue + _SPARE_CONNECTIONS)
            # unmeasured requests first, so no run pays for the server's first-call costs
            await asyncio.gather(
                *(client.get(f"{route.path}?work_ms=0") for route in setup.routes for _ in "ab")
            )
            figures = []
            for plan in plans:
                figures.append(await _run(client, plan, levels, progress))
                server.check_alive()
            return figures
        finally:
            await client.aclose()


async def _run(
    client: HttpClient, plan: _Plan, levels: Sequence[str], progress: RunProgressFn | None
) -> RunFigures:
    def report(done: int, total: int) -> None:
        if progress is not None:
            progress(plan.name, done, total)

    server_before = await _server_cpu(client)
    client_before, started = time.process_time(), time.perf_counter()
    outcomes = await drive(client, plan.arrivals, report)
    wall = time.perf_counter() - started
    client_cpu = time.process_time() - client_before
    server_after = await _server_cpu(client)
    server_cpu = (
        None if server_before is None or server_after is None else server_after - server_before
    )
    return run_figures(
        plan.name,
        levels,
        outcomes,
        warmup=plan.warmup,
        duration=plan.duration,
        load=plan.load,
        client_cpu=client_cpu,
        server_cpu=server_cpu,
        wall=wall,
    )


async def _server_cpu(client: HttpClient) -> float | None:
    """The server's CPU seconds so far, or None if it would not say."""
    try:
        response = await client.get(CPU_PATH)
        cpu = json.loads(response.body)["cpu"]
    except (OSError, TimeoutError, ProtocolError, ValueError, KeyError, TypeError):
        return None
    return float(cpu) if isinstance(cpu, int | float) else None
