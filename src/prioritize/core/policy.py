"""The policy model: how one gate shares its seats between levels.

A `GatePolicy` holds the knobs described in docs/concepts.md as the user wrote them (ints or
percentages of capacity). `GatePolicy.resolve` turns them into whole
numbers for one capacity; the gate calls it again after every resize, so a
``min = "40%"`` keeps meaning 40 % when an adaptive limit moves capacity.

Percentages are resolved with the largest-remainder method so the resolved
``min`` values add up to exactly ``floor(sum of percents × capacity)``:
rounding each one on its own could promise more seats than exist.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import final

from ..errors import ConfigError, Problem, show
from .levels import DEFAULT_LEVELS, LevelSet

__all__ = [
    "DEFAULT_MAX_WAIT",
    "DEFAULT_QUEUE",
    "GatePolicy",
    "LevelLimits",
    "LevelPolicy",
    "Order",
    "Percent",
    "Quantity",
]

#: Seconds a request may wait by default before it is shed with reason ``timeout``.
DEFAULT_MAX_WAIT = 30.0
#: Default bound on the number of requests waiting at one gate, all levels together.
DEFAULT_QUEUE = 1000

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


class Order(StrEnum):
    """How contended seats are shared once every guaranteed ``min`` is met."""

    #: the most important eligible waiting level always goes first
    STRICT = "strict"
    #: waiting levels share seats in proportion to their ``weight``
    WEIGHTED = "weighted"


@final
@dataclass(frozen=True, slots=True)
class Percent:
    """A share of a gate's capacity, e.g. ``Percent(40)`` for ``"40%"``."""

    value: float

    @classmethod
    def parse(cls, text: str) -> Percent:
        match = _PERCENT.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a percentage like '40%'")
        return cls(float(match.group(1)))

    def of(self, capacity: int) -> float:
        return self.value * capacity / 100.0

    def __str__(self) -> str:
        return f"{self.value:g}%"


#: A seat count: a whole number or a percentage of capacity.
Quantity = int | Percent


def _quantity(value: int | str | Percent | None) -> Quantity | None:
    if isinstance(value, str):
        return Percent.parse(value)
    return value


@final
@dataclass(frozen=True, slots=True)
class LevelPolicy:
    """The knobs of one level at one gate, as configured.

    ``min`` and ``max`` accept an int, a `Percent` or a string like ``"40%"``.
    ``queue = None`` means the level is bounded only by the gate's total queue.
    ``max_wait = 0`` means requests of this level never wait: no seat, no entry.
    """

    min: Quantity = 0
    max: Quantity | None = None
    weight: float = 1.0
    queue: int | None = None
    max_wait: float = DEFAULT_MAX_WAIT

    def __init__(
        self,
        min: int | str | Percent = 0,
        max: int | str | Percent | None = None,
        weight: float = 1.0,
        queue: int | None = None,
        max_wait: float = DEFAULT_MAX_WAIT,
    ) -> None:
        object.__setattr__(self, "min", _quantity(min))
        object.__setattr__(self, "max", _quantity(max))
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "queue", queue)
        object.__setattr__(self, "max_wait", max_wait)


@final
@dataclass(frozen=True, slots=True)
class LevelLimits:
    """One level's knobs resolved to whole seats for a given capacity."""

    min: int
    max: int
    weight: float
    queue: int
    max_wait: float


@final
@dataclass(frozen=True, slots=True)
class GatePolicy:
    """How one resource with ``capacity`` seats is shared between levels.

    Levels not named in ``levels`` get `LevelPolicy()` defaults. Construction
    checks every knob and raises `ConfigError` listing all problems.
    """

    capacity: int
    levels: Mapping[str, LevelPolicy] = field(default_factory=dict)
    order: Order = Order.STRICT
    queue: int = DEFAULT_QUEUE
    level_set: LevelSet = DEFAULT_LEVELS
    name: str = "gate"

    def __post_init__(self) -> None:
        if (
            isinstance(self.order, str) and self.order in _ORDERS
        ):  # accept the plain strings "strict" and "weighted"
            object.__setattr__(self, "order", Order(self.order))
        object.__setattr__(self, "levels", dict(self.levels))
        problems = self.problems()
        if problems:
            raise ConfigError(problems)

    def policy_for(self, level_name: str) -> LevelPolicy:
        return self.levels.get(level_name) or _DEFAULT_LEVEL_POLICY

    def problems(self, prefix: str | None = None) -> list[Problem]:
        """Every problem with these knobs, each with its key path under ``prefix``."""
        base = f"gates.{self.name}" if prefix is None else prefix
        out: list[Problem] = []
        if not _is_whole(self.capacity) or self.capacity < 1:
            out.append(
                Problem(f"{base}.capacity", f"{show(self.capacity)} is not a whole number ≥ 1")
            )
            return out  # every other check depends on capacity
        if not isinstance(self.order, Order):
            out.append(
                Problem(f"{base}.order", f"{show(self.order)} is not one of 'strict', 'weighted'")
            )
        if not _is_whole(self.queue) or self.queue < 0:
            out.append(Problem(f"{base}.queue", f"{show(self.queue)} is not a whole number ≥ 0"))
        for name, lp in self.levels.items():
            path = f"{base}.levels.{name}"
            if name not in self.level_set:
                out.append(
                    Problem(
                        path, f"unknown level {name!r}; valid levels are {self.level_set.names}"
                    )
                )
                continue
            out.extend(_level_problems(lp, path, self.capacity))
        if not out:
            out.extend(self._cross_problems(base))
        return out

    def _cross_problems(self, base: str) -> list[Problem]:
        out: list[Problem] = []
        total_min = 0.0
        for lvl in self.level_set:
            lp = self.policy_for(lvl.name)
            lo = _amount(lp.min, self.capacity)
            total_min += lo
            if lp.max is not None and lo > _amount(lp.max, self.capacity):
                out.append(
                    Problem(
                        f"{base}.levels.{lvl.name}",
                        f"min ({lp.min}) is more than max ({lp.max}); min must be ≤ max",
                    )
                )
        if total_min > self.capacity + 1e-9:
            out.append(
                Problem(
                    f"{base}.levels",
                    f"the mins add up to {total_min:g} seats, more than capacity "
                    f"({self.capacity}); the sum of min must be ≤ capacity",
                )
            )
        return out

    def warnings(self, prefix: str | None = None) -> list[Problem]:
        """Valid but almost certainly unintended: levels that can never hold a seat.

        A level with ``max = 0`` is shed at once. A level with no ``min`` below
        levels whose mins already take every seat can never borrow one (trunk
        reservation keeps them free), so its requests only ever time out.
        """
        base = f"gates.{self.name}" if prefix is None else prefix
        out: list[Problem] = []
        reserved_above = 0
        for level, lim in zip(self.level_set, self.resolve(self.capacity), strict=True):
            path = f"{base}.levels.{level.name}"
            if lim.max == 0:
                out.append(Problem(path, "max is 0: every request of this level is shed"))
            elif lim.min == 0 and reserved_above >= self.capacity:
                out.append(
                    Problem(
                        path,
                        f"can never hold a seat: the mins of the levels above it take all "
                        f"{self.capacity} seats; give it a min, or lower theirs",
                    )
                )
            reserved_above += lim.min
        return out

    def resolve(self, capacity: int) -> list[LevelLimits]:
        """Per-level limits in whole seats for ``capacity``, most important first.

        If whole-number mins add up to more than a reduced capacity, the least
        important levels give up their reservation first.
        """
        mins = _resolve_mins([self.policy_for(lvl.name).min for lvl in self.level_set], capacity)
        out: list[LevelLimits] = []
        for lvl, lo in zip(self.level_set, mins, strict=True):
            lp = self.policy_for(lvl.name)
            hi = capacity if lp.max is None else _resolve_max(lp.max, capacity)
            out.append(
                LevelLimits(
                    min=lo,
                    max=max(hi, lo),
                    weight=float(lp.weight),
                    queue=self.queue if lp.queue is None else min(lp.queue, self.queue),
                    max_wait=float(lp.max_wait),
                )
            )
        return out


_DEFAULT_LEVEL_POLICY = LevelPolicy()
_ORDERS = {o.value for o in Order}


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _amount(q: Quantity, capacity: int) -> float:
    return q.of(capacity) if isinstance(q, Percent) else float(q)


def _quantity_problem(q: object, path: str) -> Problem | None:
    if isinstance(q, Percent):
        if not 0 <= q.value <= 100:
            return Problem(path, f"{q} is not a percentage from 0% to 100%")
        return None
    if not _is_whole(q) or q < 0:  # type: ignore[operator]
        return Problem(path, f"{show(q)} is not a whole number ≥ 0 or a percentage like '40%'")
    return None


def _level_problems(lp: LevelPolicy, path: str, capacity: int) -> list[Problem]:
    out = [
        p
        for p in (
            _quantity_problem(lp.min, f"{path}.min"),
            None if lp.max is None else _quantity_problem(lp.max, f"{path}.max"),
        )
        if p is not None
    ]
    if not _is_number(lp.weight) or not math.isfinite(lp.weight) or lp.weight <= 0:
        out.append(Problem(f"{path}.weight", f"{show(lp.weight)} is not a number > 0"))
    if lp.queue is not None and (not _is_whole(lp.queue) or lp.queue < 0):
        out.append(Problem(f"{path}.queue", f"{show(lp.queue)} is not a whole number ≥ 0"))
    if not _is_number(lp.max_wait) or math.isnan(lp.max_wait) or lp.max_wait < 0:
        out.append(
            Problem(
                f"{path}.max_wait", f"{show(lp.max_wait)} is not a number of seconds ≥ 0 (or inf)"
            )
        )
    return out


def _resolve_mins(values: list[Quantity], capacity: int) -> list[int]:
    mins = [0] * len(values)
    shares: list[tuple[float, int]] = []
    percent_total = 0.0
    for i, q in enumerate(values):
        if isinstance(q, Percent):
            exact = q.of(capacity)
            mins[i] = math.floor(exact + 1e-9)
            shares.append((exact - mins[i], i))
            percent_total += exact
        else:
            mins[i] = q
    # Largest remainder: hand out the seats lost to flooring, biggest fraction first,
    # ties to the more important level.
    spare = math.floor(percent_total + 1e-9) - sum(mins[i] for _, i in shares)
    for _, i in sorted(shares, key=lambda s: (-s[0], s[1]))[: max(spare, 0)]:
        mins[i] += 1
    excess = sum(mins) - capacity
    for i in reversed(range(len(mins))):
        if excess <= 0:
            break
        cut = min(mins[i], excess)
        mins[i] -= cut
        excess -= cut
    return mins


def _resolve_max(q: Quantity, capacity: int) -> int:
    if isinstance(q, Percent):
        return min(capacity, max(1 if q.value > 0 else 0, math.floor(q.of(capacity) + 0.5)))
    return min(q, capacity)
