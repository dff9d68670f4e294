"""The policy of a rate budget (``[budgets.<name>]``), and its parsing from the policy file.

A budget shares a provider's rate (requests and tokens per minute) between
levels as a gate shares seats, so its knobs are the gate's: ``min``, ``max``,
``weight``, ``queue`` and ``max_wait`` per level, ``order`` and ``queue`` for
the whole. One difference: a rate has no natural unit to count shares in
(requests? tokens?), so ``min`` and ``max`` are percentages of the rate and
apply to every dimension at once.

`BudgetPolicy` checks itself (as `GatePolicy` does) and `parse_budgets` only
checks what the raw TOML can get wrong before the object exists — types,
keys, level names — reporting into the caller's `_Report`, so that one
`ConfigError` lists every problem of the whole policy file.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, final

from ..errors import ConfigError, Problem, did_you_mean, show
from .levels import DEFAULT_LEVELS, LevelSet
from .policy import DEFAULT_MAX_WAIT, DEFAULT_QUEUE, Order, Percent

if TYPE_CHECKING:
    from .config import _Report

__all__ = [
    "DIMENSIONS",
    "BudgetLevelPolicy",
    "BudgetPolicy",
    "BudgetShare",
    "parse_budgets",
]

#: What a budget can limit, in the order they are checked: requests and tokens per minute.
DIMENSIONS = ("requests", "tokens")
_NO_SHARE = Percent(0)
_ORDERS = frozenset(o.value for o in Order)
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_PERCENT_ONLY = "a percentage like '40%' (a budget's shares are percentages of its rate)"


def _share(value: str | Percent | None, what: str) -> Percent | None:
    if value is None or isinstance(value, Percent):
        return value
    try:
        return Percent.parse(value) if isinstance(value, str) else None
    except ValueError:
        pass
    raise ConfigError([Problem(what, f"{show(value)} is not {_PERCENT_ONLY}")])


@final
@dataclass(frozen=True, slots=True)
class BudgetLevelPolicy:
    """The knobs of one level at one budget, as configured.

    ``min`` is the share of the rate kept for the level when the budget is
    saturated (a stock of ``min`` × burst that it finds even after an idle
    spell, refilled at ``min`` × rate, and lent to the others while full);
    ``max`` caps the level's share. Both are percentages: ``"40%"``.
    """

    min: Percent = _NO_SHARE
    max: Percent | None = None
    weight: float = 1.0
    queue: int | None = None
    max_wait: float = DEFAULT_MAX_WAIT

    def __init__(
        self,
        min: str | Percent = _NO_SHARE,
        max: str | Percent | None = None,
        weight: float = 1.0,
        queue: int | None = None,
        max_wait: float = DEFAULT_MAX_WAIT,
    ) -> None:
        object.__setattr__(self, "min", _share(min, "min") or _NO_SHARE)
        object.__setattr__(self, "max", _share(max, "max"))
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "queue", queue)
        object.__setattr__(self, "max_wait", max_wait)


@final
@dataclass(frozen=True, slots=True)
class BudgetShare:
    """One level's knobs resolved: shares as fractions of the rate (0.4 for 40 %)."""

    min: float
    max: float
    weight: float
    queue: int
    max_wait: float


_DEFAULT_LEVEL = BudgetLevelPolicy()


@final
@dataclass(frozen=True, slots=True)
class BudgetPolicy:
    """How one rate (``rpm`` requests and/or ``tpm`` tokens per minute) is shared between levels.

    ``burst`` is how many seconds of the rate may be spent at once after an
    idle spell (60: a full minute, as providers' own token buckets allow).
    A provider's 429 multiplies the rate by ``backoff``; it climbs back to
    the configured rate linearly, from nothing to all of it in ``recovery``
    seconds. Construction checks every knob and raises one `ConfigError`.
    """

    rpm: float | None = None
    tpm: float | None = None
    levels: Mapping[str, BudgetLevelPolicy] = field(default_factory=dict)
    order: Order = Order.STRICT
    queue: int = DEFAULT_QUEUE
    burst: float = 60.0
    backoff: float = 0.5
    recovery: float = 60.0
    level_set: LevelSet = DEFAULT_LEVELS
    name: str = "budget"

    def __post_init__(self) -> None:
        if isinstance(self.order, str) and self.order in _ORDERS:
            object.__setattr__(self, "order", Order(self.order))
        object.__setattr__(self, "levels", dict(self.levels))
        problems = self.problems()
        if problems:
            raise ConfigError(problems)

    @property
    def per_minute(self) -> dict[str, float]:
        """The configured dimensions and their rates per minute, e.g. ``{"requests": 500}``."""
        rates = {"requests": self.rpm, "tokens": self.tpm}
        return {dim: float(rate) for dim, rate in rates.items() if rate is not None}

    def policy_for(self, level_name: str) -> BudgetLevelPolicy:
        return self.levels.get(level_name) or _DEFAULT_LEVEL

    def resolve(self) -> list[BudgetShare]:
        """Per-level shares as fractions, most important first."""
        out = []
        for level in self.level_set:
            lp = self.policy_for(level.name)
            top = 1.0 if lp.max is None else lp.max.value / 100
            out.append(
                BudgetShare(
                    min=lp.min.value / 100,
                    max=max(top, lp.min.value / 100),
                    weight=float(lp.weight),
                    queue=self.queue if lp.queue is None else min(lp.queue, self.queue),
                    max_wait=float(lp.max_wait),
                )
            )
        return out

    def problems(self, prefix: str | None = None) -> list[Problem]:
        """Every problem with these knobs, each with its key path under ``prefix``."""
        base = f"budgets.{self.name}" if prefix is None else prefix
        out: list[Problem] = []
        if self.rpm is None and self.tpm is None:
            out.append(Problem(base, "sets no rate: give rpm, tpm or both (numbers > 0)"))
        for key in ("rpm", "tpm"):
            value = getattr(self, key)
            if value is not None and not _is_positive(value):
                out.append(Problem(f"{base}.{key}", f"{show(value)} is not a number > 0"))
        if not _is_positive(self.burst):
            out.append(
                Problem(f"{base}.burst", f"{show(self.burst)} is not a number of seconds > 0")
            )
        elif self.rpm is not None and _is_positive(self.rpm) and self.rpm * self.burst / 60 < 1:
            out.append(
                Problem(
                    f"{base}.burst",
                    f"{self.burst:g} s of {self.rpm:g} rpm is less than one request, so no "
                    f"request could ever be sent; burst must be ≥ {60 / self.rpm:g} s",
                )
            )
        if not isinstance(self.order, Order):
            out.append(
                Problem(f"{base}.order", f"{show(self.order)} is not one of 'strict', 'weighted'")
            )
        if not _is_whole(self.queue) or self.queue < 0:
            out.append(Problem(f"{base}.queue", f"{show(self.queue)} is not a whole number ≥ 0"))
        if not _is_number(self.backoff) or not 0 < self.backoff < 1:
            out.append(
                Problem(f"{base}.backoff", f"{show(self.backoff)} is not a number between 0 and 1")
            )
        if not _is_positive(self.recovery):
            out.append(
                Problem(f"{base}.recovery", f"{show(self.recovery)} is not a number of seconds > 0")
            )
        for name, lp in self.levels.items():
            path = f"{base}.levels.{name}"
            if name not in self.level_set:
                hint = did_you_mean(name, self.level_set.names)
                message = f"unknown level {name!r}; {hint}valid levels are {self.level_set.names}"
                out.append(Problem(path, message))
                continue
            out.extend(_level_problems(lp, path))
        if not out:
            out.extend(self._cross_problems(base))
        return out

    def _cross_problems(self, base: str) -> list[Problem]:
        out: list[Problem] = []
        total = 0.0
        for level in self.level_set:
            lp = self.policy_for(level.name)
            total += lp.min.value
            if lp.max is not None and lp.min.value > lp.max.value:
                out.append(
                    Problem(
                        f"{base}.levels.{level.name}",
                        f"min ({lp.min}) is more than max ({lp.max}); min must be ≤ max",
                    )
                )
        if total > 100 + 1e-9:
            out.append(
                Problem(
                    f"{base}.levels",
                    f"the mins add up to {total:g}%, more than the whole rate; "
                    "the sum of min must be ≤ 100%",
                )
            )
        return out

    def warnings(self, prefix: str | None = None) -> list[Problem]:
        """Valid but almost certainly unintended: levels that can never be served."""
        base = f"budgets.{self.name}" if prefix is None else prefix
        out: list[Problem] = []
        reserved = 0.0
        for level, share in zip(self.level_set, self.resolve(), strict=True):
            path = f"{base}.levels.{level.name}"
            if share.max == 0:
                out.append(Problem(path, "max is 0%: every request of this level is shed"))
            elif share.min == 0 and reserved >= 1 - 1e-9:
                out.append(
                    Problem(
                        path,
                        "can never be served: the mins of the levels above it take the whole "
                        "rate; give it a min, or lower theirs",
                    )
                )
            elif (
                self.rpm is not None
                and self.rpm * self.burst / 60 * min(share.max, 1 - reserved) < 1
            ):
                out.append(
                    Problem(
                        path,
                        f"can never send a request: its part of the {self.burst:g} s burst is "
                        "less than one request; raise burst",
                    )
                )
            reserved += share.min
        return out

    def describe(self) -> list[str]:
        """The budget in words and one line per level, for ``prioritize check``."""
        units = {"requests": "rpm", "tokens": "tpm"}
        rates = ", ".join(f"{rate:g} {units[dim]}" for dim, rate in self.per_minute.items())
        lines = [
            f"budget {self.name}: {rates}; burst {self.burst:g} s, order {self.order.value}, "
            f"queue {self.queue}; a 429 cuts the rate to {self.backoff:g}×, "
            f"back in {self.recovery:g} s"
        ]
        for level, share in zip(self.level_set, self.resolve(), strict=True):
            floor = ", ".join(f"{share.min * r:g} {units[d]}" for d, r in self.per_minute.items())
            wait = "∞" if math.isinf(share.max_wait) else f"{share.max_wait:g} s"
            lines.append(
                f"  {level.name:<10} min {share.min:>4.0%} ({floor})  max {share.max:>4.0%}  "
                f"weight {share.weight:g}  queue {share.queue}  max_wait {wait}"
            )
        lines += [f"warning: {problem}" for problem in self.warnings()]
        return lines


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_positive(value: object) -> bool:
    return _is_number(value) and math.isfinite(value) and value > 0  # type: ignore[arg-type,operator]


def _level_problems(lp: BudgetLevelPolicy, path: str) -> list[Problem]:
    out: list[Problem] = []
    for key, share in (("min", lp.min), ("max", lp.max)):
        if share is not None and not 0 <= share.value <= 100:
            out.append(Problem(f"{path}.{key}", f"{share} is not a percentage from 0% to 100%"))
    if not _is_positive(lp.weight):
        out.append(Problem(f"{path}.weight", f"{show(lp.weight)} is not a number > 0"))
    if lp.queue is not None and (not _is_whole(lp.queue) or lp.queue < 0):
        out.append(Problem(f"{path}.queue", f"{show(lp.queue)} is not a whole number ≥ 0"))
    if not _is_number(lp.max_wait) or math.isnan(lp.max_wait) or lp.max_wait < 0:
        message = f"{show(lp.max_wait)} is not a number of seconds ≥ 0 (or inf)"
        out.append(Problem(f"{path}.max_wait", message))
    return out


# -- parsing [budgets.<name>] ---------------------------------------------------------

_BUDGET_KEYS = ("backoff", "burst", "levels", "order", "queue", "recovery", "rpm", "tpm")
_LEVEL_KEYS = ("max", "max_wait", "min", "queue", "weight")
_NUMERIC = {
    "rpm": "a number of requests per minute > 0",
    "tpm": "a number of tokens per minute > 0",
    "burst": "a number of seconds > 0",
    "backoff": "a number between 0 and 1",
    "recovery": "a number of seconds > 0",
}


def parse_budgets(raw: object, levels: LevelSet | None, report: _Report) -> dict[str, BudgetPolicy]:
    """The ``[budgets]`` table as `BudgetPolicy` objects; problems go into ``report``.

    A budget with any problem is left out (and reported), so the caller
    raises one `ConfigError` for the whole file.
    """
    table = report.table({} if raw is None else raw, "budgets", None)
    out: dict[str, BudgetPolicy] = {}
    for name, value in (table or {}).items():
        budget = _parse_budget(str(name), value, levels, report)
        if budget is not None:
            out[name] = budget
    return out


def _parse_budget(
    name: str, raw: object, levels: LevelSet | None, report: _Report
) -> BudgetPolicy | None:
    path = _join("budgets", name)
    table = report.table(raw, path, _BUDGET_KEYS)
    if table is None:
        return None
    before = len(report.problems)
    if "rpm" not in table and "tpm" not in table:
        report.add(path, "sets no rate: give rpm, tpm or both (numbers > 0)")
    numbers = {
        key: _number(table, key, path, accepted, report) for key, accepted in _NUMERIC.items()
    }
    order = table.get("order")
    if order is not None and order not in _ORDERS:
        report.bad(f"{path}.order", order, "one of 'strict', 'weighted'")
    queue = table.get("queue")
    if queue is not None and (not _is_whole(queue) or queue < 0):  # type: ignore[operator]
        report.bad(f"{path}.queue", queue, "a whole number ≥ 0")
    knobs = _parse_levels(table.get("levels"), f"{path}.levels", levels, report)
    if len(report.problems) > before or levels is None:
        return None
    defaults = BudgetPolicy(rpm=1)
    try:
        # What failed its own check was reported above, so a problem found here
        # (min > max, the mins add up to more than 100 %) is a real one.
        return BudgetPolicy(
            rpm=numbers["rpm"],
            tpm=numbers["tpm"],
            levels=knobs,
            order=Order(order) if isinstance(order, str) else Order.STRICT,
            queue=DEFAULT_QUEUE if queue is None else queue,  # type: ignore[arg-type]
            burst=numbers["burst"] or defaults.burst,
            backoff=numbers["backoff"] or defaults.backoff,
            recovery=numbers["recovery"] or defaults.recovery,
            level_set=levels,
            name=name,
        )
    except ConfigError as exc:
        report.problems.extend(exc.problems)
        return None


def _number(
    table: Mapping[str, object], key: str, path: str, accepted: str, report: _Report
) -> float | None:
    value = table.get(key)
    if value is None:
        return None
    ok = _is_positive(value) and (key != "backoff" or value < 1)  # type: ignore[operator]
    if not ok:
        report.bad(f"{path}.{key}", value, accepted)
        return None
    return float(value)  # type: ignore[arg-type]


def _parse_levels(
    raw: object, path: str, levels: LevelSet | None, report: _Report
) -> dict[str, BudgetLevelPolicy]:
    table = report.table({} if raw is None else raw, path, None)
    out: dict[str, BudgetLevelPolicy] = {}
    for name, value in (table or {}).items():
        level_path = _join(path, str(name))
        if levels is not None and name not in levels:
            hint = did_you_mean(name, levels.names)
            report.add(level_path, f"unknown level {name!r}; {hint}valid levels are {levels.names}")
            continue
        knobs = report.table(value, level_path, _LEVEL_KEYS)
        if knobs is None:
            continue
        low = _percent(knobs, "min", level_path, report)
        high = _percent(knobs, "max", level_path, report)
        weight = knobs.get("weight", 1.0)
        if not _is_positive(weight):
            report.bad(f"{level_path}.weight", weight, "a number > 0")
        queue = knobs.get("queue")
        if queue is not None and (not _is_whole(queue) or queue < 0):  # type: ignore[operator]
            report.bad(f"{level_path}.queue", queue, "a whole number ≥ 0")
        max_wait = knobs.get("max_wait", DEFAULT_MAX_WAIT)
        if not _is_number(max_wait) or not max_wait >= 0:  # type: ignore[operator]
            report.bad(f"{level_path}.max_wait", max_wait, "a number of seconds ≥ 0 (or inf)")
        out[name] = BudgetLevelPolicy(
            min=low or _NO_SHARE,
            max=high,
            weight=weight,  # type: ignore[arg-type]
            queue=queue,  # type: ignore[arg-type]
            max_wait=max_wait,  # type: ignore[arg-type]
        )
    return out


def _percent(table: Mapping[str, object], key: str, path: str, report: _Report) -> Percent | None:
    value = table.get(key)
    if value is None:
        return None
    try:
        share = Percent.parse(value) if isinstance(value, str) else None
    except ValueError:
        share = None
    if share is None:
        report.bad(f"{path}.{key}", value, _PERCENT_ONLY)
    elif share.value > 100:
        report.bad(f"{path}.{key}", value, "a percentage from 0% to 100%")
        share = None
    return share


def _join(path: str, key: str) -> str:
    """Append ``key`` to a dotted path, quoted as TOML would if it is not a bare key."""
    text = key if _BARE_KEY.match(key) else json.dumps(key)
    return f"{path}.{text}" if path else text
