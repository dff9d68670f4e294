"""What the demo runs: the endpoint's seats and work, its two policies, the mix of requests.

Why these numbers
-----------------
The demo must measure queueing, not a busy CPU. A Python load generator and
a uvicorn server sharing two cores slow each other down long before either
is saturated, and then latency measures CPU contention. So the endpoint's
scarce resource is *awaited* time, as with a database or a downstream call:
16 seats × 100 ms of mean work serve 160 requests a second, and 4× overload
is 640 a second. On two shared cores that costs the server about 0.6 ms of
CPU per request and the load generator about 0.3 ms: some 40 % and 20 % of
a core (the demo prints what it measured).

Sixteen seats rather than four: a critical request that finds its reserved
seats taken waits for the next seat to free, about ``work / capacity``
later, and what the demo compares is that wait relative to the unloaded
latency: a sixteenth of the work with 16 seats, a quarter with 4.

Work varies (uniform, ±50 % around the mean) because with one fixed duration
seats granted together free together, in waves, and a request arriving
between two waves waits for the next one.

The mix puts critical and high at 40 % of the capacity each under 4×
overload, so the policy can serve them in full; normal gets part of what is
left, low and bulk their one guaranteed seat each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import final

__all__ = ["DEFAULT_ROUTES", "GATE", "Route", "Setup"]

#: The name of the demo's one gate.
GATE = "api"


@final
@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint path: the level its rule gives it and its knobs at the gate."""

    level: str
    path: str
    #: fraction of all requests sent to this path
    share: float
    #: seats kept for the level, as the policy file writes it (``4`` or ``"25%"``)
    min: int | str = 0
    #: seconds a request of this level may wait before it is shed
    max_wait: float = 2.0


DEFAULT_ROUTES = (
    Route("critical", "/checkout", 0.10, min="25%", max_wait=1),
    Route("high", "/search", 0.10, min="10%", max_wait=2),
    Route("normal", "/browse", 0.20, max_wait=2),
    Route("low", "/recommendations", 0.20, min=1, max_wait=5),
    Route("bulk", "/export", 0.40, min=1, max_wait=5),
)


@final
@dataclass(frozen=True, slots=True)
class Setup:
    """The service under test: ``capacity`` seats of ``work`` seconds each, and its routes.

    Each request's work is drawn uniformly from ``work × (1 ± spread)`` by the
    load generator and sent with the request, so the run with priorities and
    the FIFO run see identical requests.
    """

    capacity: int = 16
    #: most requests waiting at the gate, all levels together
    queue: int = 256
    #: mean seconds of awaited work per request
    work: float = 0.1
    spread: float = 0.5
    routes: tuple[Route, ...] = field(default=DEFAULT_ROUTES)

    def __post_init__(self) -> None:
        if not isinstance(self.capacity, int) or self.capacity < 1:
            raise ValueError(f"capacity = {self.capacity!r}: expected a whole number ≥ 1")
        if not isinstance(self.queue, int) or self.queue < 0:
            raise ValueError(f"queue = {self.queue!r}: expected a whole number ≥ 0")
        if not self.work > 0:
            raise ValueError(f"work = {self.work!r}: expected seconds > 0")
        if not 0 <= self.spread < 1:
            raise ValueError(f"spread = {self.spread!r}: expected a fraction from 0 to below 1")
        if not self.routes or abs(sum(r.share for r in self.routes) - 1) > 1e-9:
            shares = [r.share for r in self.routes]
            raise ValueError(f"route shares {shares} must add up to 1")

    @property
    def capacity_rate(self) -> float:
        """Requests per second the seats can serve at the mean work."""
        return self.capacity / self.work

    @property
    def work_range(self) -> tuple[float, float]:
        return self.work * (1 - self.spread), self.work * (1 + self.spread)

    @property
    def fifo_max_wait(self) -> float:
        """FIFO's one max_wait: the most patient level's, so FIFO never sheds sooner."""
        return max(route.max_wait for route in self.routes)

    def route(self, level: str) -> Route:
        for route in self.routes:
            if route.level == level:
                return route
        raise KeyError(f"no route for level {level!r}; levels: {[r.level for r in self.routes]}")

    def priority_toml(self) -> str:
        """The policy with priorities: one gate, each level's knobs, a rule per path."""
        lines = [
            f'default_level = "{self.routes[len(self.routes) // 2].level}"',
            "",
            f"[gates.{GATE}]",
            f"{f'capacity = {self.capacity}':<16}# requests in flight",
            f"{f'queue = {self.queue}':<16}# requests waiting, all levels together",
        ]
        for route in self.routes:
            lines += ["", f"[gates.{GATE}.levels.{route.level}]"]
            if route.min:
                lines.append(f"min = {_toml(route.min)}")
            lines.append(f"max_wait = {route.max_wait:g}")
        for route in self.routes:
            lines += ["", "[[rules]]", f'level = "{route.level}"', f'path_prefix = "{route.path}"']
        return "\n".join(lines) + "\n"

    def fifo_toml(self) -> str:
        """Plain FIFO admission: the same seats and queue, one level, no rules."""
        return "\n".join(
            [
                'levels = ["fifo"]',
                'default_level = "fifo"',
                "",
                f"[gates.{GATE}]",
                f"capacity = {self.capacity}",
                f"queue = {self.queue}",
                "",
                f"[gates.{GATE}.levels.fifo]",
                f"max_wait = {self.fifo_max_wait:g}",
                "",
            ]
        )


def _toml(value: int | str) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)
