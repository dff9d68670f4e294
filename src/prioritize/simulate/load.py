"""The ``[simulate]`` table: which gate to drive, with what load, for how long.

`parse_load` turns the raw table (as ``tomllib`` read it, with any CLI
overrides merged in by `merge_overrides`) into a frozen `LoadSpec`, or
raises `ConfigError` listing every problem at once, each with its key path
(``simulate.load.bulk.rate: -3 is not a number > 0``). Overrides are merged
into the raw table *before* validation rather than applied to a `LoadSpec`
afterwards, so a bad ``--rate`` gets exactly the message a bad TOML value
would.

Schema (see docs/simulate.md)::

    [simulate]
    gate = "api"        # optional when the policy has one gate
    duration = 20       # measured virtual seconds (> 0), default 60
    warmup = 2          # virtual seconds before those, not measured, default 0
    seed = 1            # default 0
    overload = 1        # multiplies every rate, default 1
    service = {dist = "exponential", mean = 0.05}   # default for every level
    capacity = {adaptive = "gradient", min = 4}     # optional: the gate's capacity for
                                                    # this run (a whole number or an
                                                    # adaptive table; docs/adaptive.md)

    [simulate.service_model]   # optional; default: service times independent of load
    kind = "contention"        # slower past the knee (see `contention`)
    knee = 32
    exponent = 1

    [simulate.load.critical]
    rate = 50           # Poisson arrivals per second (> 0)
    service = {dist = "lognormal", mean = 0.05, sigma = 1}
    flows = 10          # distinct flow keys, default 1
    skew = 1.1          # Zipf exponent over the flows, default 0 (uniform)
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import final

from ..adaptive.spec import AdaptiveSpec, parse_adaptive
from ..core.levels import LevelSet
from ..errors import ConfigError, Problem, did_you_mean, show, unknown_key
from .contention import Contention, parse_service_model
from .service import Constant, Exponential, Lognormal, ServiceTime, Uniform

__all__ = ["MAX_ARRIVALS", "LevelLoad", "LoadSpec", "merge_overrides", "parse_load"]

#: Refuse loads expected to generate more arrivals than this: they would not fit in memory.
MAX_ARRIVALS = 2_000_000

_TOP_KEYS = (
    "capacity",
    "duration",
    "gate",
    "load",
    "overload",
    "seed",
    "service",
    "service_model",
    "warmup",
)
_LEVEL_KEYS = ("flows", "rate", "service", "skew")
_DIST_KEYS: dict[str, tuple[str, ...]] = {
    "constant": ("value",),
    "exponential": ("mean",),
    "lognormal": ("mean", "sigma"),
    "uniform": ("high", "low"),
}
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_SERVICE_EXAMPLE = '{dist = "exponential", mean = 0.05}'


@final
@dataclass(frozen=True, slots=True)
class LevelLoad:
    """Open-loop load of one level: Poisson arrivals at ``rate`` per second."""

    level: str
    #: arrivals per second, already multiplied by the spec's ``overload``
    rate: float
    service: ServiceTime
    #: number of distinct flow keys the arrivals are spread over
    flows: int = 1
    #: Zipf exponent: flow k (1-based) is picked with weight 1/k**skew; 0 is uniform
    skew: float = 0.0


@final
@dataclass(frozen=True, slots=True)
class LoadSpec:
    """A validated load: everything the engine needs besides the gate's policy."""

    gate: str
    duration: float
    warmup: float
    seed: int
    overload: float
    #: loaded levels, most important first (levels without load are absent)
    levels: tuple[LevelLoad, ...]
    #: how service times stretch with the number in flight; None: they do not
    service_model: Contention | None = None
    #: the gate's capacity for this run instead of the policy's, when given
    capacity: int | AdaptiveSpec | None = None

    @property
    def end(self) -> float:
        """Virtual time at which arrivals stop (warmup plus the measured window)."""
        return self.warmup + self.duration

    @property
    def offered_rate(self) -> float:
        """Arrivals per second, all levels together."""
        return sum(load.rate for load in self.levels)

    @property
    def offered_work(self) -> float:
        """Seat-seconds of work offered per second: compare it with the capacity."""
        return sum(load.rate * load.service.mean for load in self.levels)


def merge_overrides(
    table: Mapping[str, object],
    *,
    gate: str | None = None,
    duration: float | None = None,
    warmup: float | None = None,
    seed: int | None = None,
    overload: float | None = None,
    rates: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """A copy of the raw ``[simulate]`` table with the given values replacing its own.

    ``rates`` maps a level name to a rate as typed (validated later, like any
    other value); a level the table had no load for gets one.
    """
    merged: dict[str, object] = copy.deepcopy(dict(table))
    for key, value in (
        ("gate", gate),
        ("duration", duration),
        ("warmup", warmup),
        ("seed", seed),
        ("overload", overload),
    ):
        if value is not None:
            merged[key] = value
    if rates:
        load = merged.get("load")
        load = dict(load) if isinstance(load, Mapping) else {}
        for level, rate in rates.items():
            entry = load.get(level)
            load[level] = {**(entry if isinstance(entry, Mapping) else {}), "rate": rate}
        merged["load"] = load
    return merged


def parse_load(table: Mapping[str, object], levels: LevelSet, gates: Sequence[str]) -> LoadSpec:
    """Validate a ``[simulate]`` table against the policy's levels and gate names.

    Raises `ConfigError` with every problem found, each under ``simulate.``.
    """
    reader = _Reader()
    reader.keys(table, _TOP_KEYS, "simulate")
    gate = reader.gate(table.get("gate"), gates)
    duration = reader.number(table, "duration", "simulate", 60.0, positive=True)
    warmup = reader.number(table, "warmup", "simulate", 0.0, positive=False)
    overload = reader.number(table, "overload", "simulate", 1.0, positive=True)
    seed = reader.seed(table.get("seed", 0))
    if "service" in table:
        reader.has_default_service = True
        reader.default_service = reader.service(table["service"], "simulate.service")
    loads = reader.loads(table.get("load"), levels, overload)
    model: Contention | None = None
    if "service_model" in table:
        model, problems = parse_service_model(table["service_model"], "simulate.service_model")
        reader.problems += problems
    capacity = reader.capacity(table.get("capacity"))
    if not reader.problems and loads:
        expected = (duration + warmup) * sum(load.rate for load in loads)
        if expected > MAX_ARRIVALS:
            reader.add(
                "simulate",
                f"about {expected:,.0f} arrivals is too many to simulate (at most "
                f"{MAX_ARRIVALS:,}); lower duration, warmup, overload or the rates",
            )
    if reader.problems:
        raise ConfigError(reader.problems)
    return LoadSpec(gate or "", duration, warmup, seed, overload, tuple(loads), model, capacity)


def _join(path: str, key: str) -> str:
    """``path.key``, quoting ``key`` as TOML would if it is not a bare key."""
    return f"{path}.{key if _BARE_KEY.match(key) else json.dumps(key)}"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@final
class _Reader:
    """Collects problems while reading, so every one is reported, not just the first."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        #: ``[simulate] service``, None if absent or invalid
        self.default_service: ServiceTime | None = None
        #: a present but invalid default is reported once, not again for every level
        self.has_default_service = False

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def keys(self, table: Mapping[str, object], valid: Sequence[str], path: str) -> None:
        """Report every key not in ``valid``, worded as the policy loader words it."""
        for key in table:
            if key not in valid:
                self.add(_join(path, str(key)), unknown_key(key, sorted(valid)))

    def table(self, value: object, path: str, example: str) -> Mapping[str, object] | None:
        if isinstance(value, Mapping):
            return value
        self.add(path, f"{value!r} is not a table like {example}")
        return None

    def number(
        self,
        table: Mapping[str, object],
        key: str,
        path: str,
        default: float | None,
        *,
        positive: bool,
    ) -> float:
        """A finite number > 0 (``positive``) or ≥ 0; ``default`` None makes it required."""
        bound = "> 0" if positive else "≥ 0"
        if key not in table:
            if default is None:
                self.add(f"{path}.{key}", f"missing; give a number {bound}")
                return math.nan
            return default
        value = table[key]
        number = float(value) if _is_number(value) else math.nan  # type: ignore[arg-type]
        if not math.isfinite(number) or number < 0 or (positive and number == 0):
            self.add(f"{path}.{key}", f"{value!r} is not a number {bound}")
            return math.nan
        return number

    def capacity(self, value: object) -> int | AdaptiveSpec | None:
        """A whole number of seats, or an adaptive capacity table."""
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        if isinstance(value, Mapping):
            try:
                return parse_adaptive(value, "simulate.capacity")
            except ConfigError as error:
                self.problems += error.problems
                return None
        self.add(
            "simulate.capacity",
            f"{show(value)} is not a whole number ≥ 1 or a table like "
            '{adaptive = "gradient", min = 4, max = 200}',
        )
        return None

    def seed(self, value: object) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        self.add("simulate.seed", f"{value!r} is not a whole number")
        return 0

    def gate(self, value: object, gates: Sequence[str]) -> str | None:
        names = sorted(gates)
        if value is None:
            if len(names) == 1:
                return names[0]
            self.add(
                "simulate.gate",
                f"missing; the policy has {len(names)} gates, name one of {names}"
                if names
                else "the policy has no gate to simulate; define one under [gates]",
            )
            return None
        if isinstance(value, str) and value in gates:
            return value
        text = did_you_mean(value, names) if isinstance(value, str) else ""
        self.add(
            "simulate.gate", f"{value!r} is not a gate of this policy; {text}gates are {names}"
        )
        return None

    def service(self, value: object, path: str) -> ServiceTime | None:
        spec = self.table(value, path, _SERVICE_EXAMPLE)
        if spec is None:
            return None
        dist = spec.get("dist")
        if not isinstance(dist, str) or dist not in _DIST_KEYS:
            hint = did_you_mean(dist, list(_DIST_KEYS)) if isinstance(dist, str) else ""
            given = "missing; give" if dist is None else f"{dist!r} is not"
            self.add(
                f"{path}.dist",
                f"{given} one of {sorted(_DIST_KEYS)}{'; ' + hint if hint else ''}".rstrip(),
            )
            return None
        self.keys(spec, ("dist", *_DIST_KEYS[dist]), path)
        before = len(self.problems)
        if dist == "uniform":
            low = self.number(spec, "low", path, None, positive=False)
            high = self.number(spec, "high", path, None, positive=True)
            if len(self.problems) == before and low > high:
                self.add(path, f"low ({low:g}) is more than high ({high:g}); low must be ≤ high")
            made: ServiceTime = Uniform(low, high)
        elif dist == "constant":
            made = Constant(self.number(spec, "value", path, None, positive=True))
        elif dist == "exponential":
            made = Exponential(self.number(spec, "mean", path, None, positive=True))
        else:
            mean = self.number(spec, "mean", path, None, positive=True)
            made = Lognormal(mean, self.number(spec, "sigma", path, None, positive=False))
        return made if len(self.problems) == before else None

    def loads(
        self,
        value: object,
        levels: LevelSet,
        overload: float,
    ) -> list[LevelLoad]:
        example = "{critical = {rate = 50}}"
        table = {} if value is None else self.table(value, "simulate.load", example)
        if table is None:
            return []
        for name in table:
            if name not in levels:
                self.add(
                    _join("simulate.load", str(name)),
                    f"unknown level {name!r}; {did_you_mean(str(name), levels.names)}"
                    f"valid levels are {levels.names}",
                )
        out: list[LevelLoad] = []
        for level in levels:
            if level.name in table:
                load = self.level(table[level.name], level.name, overload)
                if load is not None:
                    out.append(load)
        if not table:
            self.add(
                "simulate.load",
                "no level has a load; add [simulate.load.<level>] with rate = ... "
                "or pass --rate LEVEL=RATE",
            )
        return out

    def level(self, value: object, name: str, overload: float) -> LevelLoad | None:
        path = f"simulate.load.{name}"
        table = self.table(value, path, f"{{rate = 50, service = {_SERVICE_EXAMPLE}}}")
        if table is None:
            return None
        before = len(self.problems)
        self.keys(table, _LEVEL_KEYS, path)
        rate = self.number(table, "rate", path, None, positive=True)
        service = self.default_service
        if "service" in table:
            service = self.service(table["service"], f"{path}.service")
        elif not self.has_default_service:
            self.add(
                f"{path}.service",
                f"missing; give a table like {_SERVICE_EXAMPLE} here or a default "
                "service in [simulate]",
            )
        flows = table.get("flows", 1)
        if not isinstance(flows, int) or isinstance(flows, bool) or flows < 1:
            self.add(f"{path}.flows", f"{flows!r} is not a whole number ≥ 1")
            flows = 1
        skew = self.number(table, "skew", path, 0.0, positive=False)
        if len(self.problems) > before or service is None:
            return None
        return LevelLoad(name, rate * overload, service, flows, skew)
