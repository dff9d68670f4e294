"""An adaptive capacity as configured: which controller, its bounds and options.

In a policy file a gate's ``capacity`` is either a whole number or a table::

    [gates.api]
    capacity = { adaptive = "gradient", min = 4, max = 200, initial = 20 }

`parse_adaptive` checks such a table (every problem at once, each with its
key path, worded like the rest of the policy's messages) and returns a
frozen `AdaptiveSpec`. The spec builds a fresh controller per gate instance
(`AdaptiveSpec.build`) and the gate policy to start it with
(`AdaptiveSpec.gate`: the same knobs, ``capacity = initial``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeGuard, final

from ..errors import ConfigError, Problem, did_you_mean, show, unknown_key
from .aimd import AIMD
from .gradient import Gradient
from .knobs import (
    AIMD_KNOBS,
    BOUND_KNOBS,
    DEFAULT_INITIAL,
    DEFAULT_MAX,
    DEFAULT_MIN,
    GRADIENT_KNOBS,
    Knob,
    bound_problems,
    knob_problems,
)

if TYPE_CHECKING:
    from ..core.policy import GatePolicy

__all__ = ["AdaptiveSpec", "ControllerKind", "parse_adaptive"]


class ControllerKind(StrEnum):
    """Which limit controller an adaptive capacity runs."""

    #: additive increase, multiplicative decrease on drops or RTT above ``max_rtt``
    AIMD = "aimd"
    #: the ratio of no-load RTT to current RTT, smoothed
    GRADIENT = "gradient"


_KNOBS: dict[ControllerKind, tuple[Knob, ...]] = {
    ControllerKind.AIMD: AIMD_KNOBS,
    ControllerKind.GRADIENT: GRADIENT_KNOBS,
}
_KINDS = ", ".join(repr(kind.value) for kind in ControllerKind)
_EXAMPLE = '{adaptive = "gradient", min = 4, max = 200}'
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _default_initial(low: object, high: object) -> object:
    """20 seats, moved inside the bounds when they exclude it."""
    if _is_seats(low) and _is_seats(high) and low <= high:
        return max(low, min(DEFAULT_INITIAL, high))
    return DEFAULT_INITIAL


def _is_seats(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@final
@dataclass(frozen=True, slots=True, init=False)
class AdaptiveSpec:
    """A gate's adaptive capacity: a controller kind, its bounds and its options.

    ``initial`` defaults to 20 moved inside ``[min, max]``. ``options`` are the
    controller's knobs by their policy-file names (docs/adaptive.md lists
    them); knobs not given take the controller's defaults. Construction
    raises `ConfigError` listing every problem, under ``capacity``.
    """

    kind: ControllerKind
    min: int
    max: int
    initial: int
    options: Mapping[str, float | str] = field(hash=False)

    def __init__(
        self,
        kind: ControllerKind | str,
        *,
        min: int = DEFAULT_MIN,
        max: int = DEFAULT_MAX,
        initial: int | None = None,
        options: Mapping[str, float | str] | None = None,
    ) -> None:
        if isinstance(kind, str) and kind in _KNOBS:
            kind = ControllerKind(kind)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "min", min)
        object.__setattr__(self, "max", max)
        object.__setattr__(
            self, "initial", _default_initial(min, max) if initial is None else initial
        )
        object.__setattr__(self, "options", MappingProxyType(dict(options or {})))
        problems = self.problems()
        if problems:
            raise ConfigError(problems)

    def problems(self, prefix: str = "capacity") -> list[Problem]:
        """Every problem with this spec, each with its key path under ``prefix``."""
        if not isinstance(self.kind, ControllerKind):
            return [_kind_problem(self.kind, prefix)]
        knobs = _KNOBS[self.kind]
        out = [
            Problem(_join(prefix, name), _unknown_option(name, self.kind))
            for name in self.options
            if name not in {knob.name for knob in knobs}
        ]
        out += bound_problems(self.initial, self.min, self.max, prefix)
        out += knob_problems(knobs, self.options, prefix)
        return out

    def build(self) -> AIMD | Gradient:
        """A new controller for one gate instance, starting at ``initial``."""
        get = self.options.get
        if self.kind is ControllerKind.AIMD:
            return AIMD(
                initial=self.initial,
                min_limit=self.min,
                max_limit=self.max,
                backoff=float(get("backoff", 0.9)),
                increase=float(get("increase", 1.0)),
                max_rtt=float(get("max_rtt", 5.0)),
                smoothing=float(get("smoothing", 1.0)),
                window=float(get("window", 0.1)),
                window_samples=int(get("window_samples", 10)),
            )
        headroom = get("headroom", "sqrt")
        return Gradient(
            initial=self.initial,
            min_limit=self.min,
            max_limit=self.max,
            tolerance=float(get("tolerance", 1.25)),
            smoothing=float(get("smoothing", 0.2)),
            headroom=headroom if isinstance(headroom, str) else float(headroom),
            backoff=float(get("backoff", 0.9)),
            window=float(get("window", 0.1)),
            window_samples=int(get("window_samples", 10)),
            probe_interval=float(get("probe_interval", 60.0)),
            probe_samples=int(get("probe_samples", 50)),
        )

    def gate(self, policy: GatePolicy) -> GatePolicy:
        """``policy`` with ``capacity = initial``: the gate to start the controller with."""
        return replace(policy, capacity=self.initial)

    def to_dict(self) -> dict[str, object]:
        """The table as it would be written in a policy file."""
        return {"adaptive": self.kind.value, "min": self.min, "max": self.max,
                "initial": self.initial, **self.options}  # fmt: skip

    def __str__(self) -> str:
        return f"{self.kind.value}, {self.min} to {self.max} seats, starting at {self.initial}"


def parse_adaptive(raw: object, path: str) -> AdaptiveSpec:
    """Check a ``capacity = {adaptive = ...}`` table found at ``path``; return its spec.

    Raises `ConfigError` listing every problem, each with its key path under
    ``path`` (e.g. ``gates.api.capacity.adaptive: 'gradiant' is not one of
    'aimd', 'gradient'; did you mean 'gradient'?``).
    """
    if not isinstance(raw, Mapping):
        raise ConfigError([Problem(path, f"{show(raw)} is not a table like {_EXAMPLE}")])
    kind: ControllerKind | None = None
    problems: list[Problem] = []
    value = raw.get("adaptive")
    if "adaptive" not in raw:
        problems.append(Problem(f"{path}.adaptive", f"missing; give one of {_KINDS}"))
    elif isinstance(value, str) and value in _KNOBS:
        kind = ControllerKind(value)
    else:
        problems.append(_kind_problem(value, path))
    for key in raw:
        if key != "adaptive" and key not in BOUND_KNOBS and not _is_option(key, kind):
            problems.append(Problem(_join(path, str(key)), _unknown_option(key, kind)))
    low, high = raw.get("min", DEFAULT_MIN), raw.get("max", DEFAULT_MAX)
    initial = raw.get("initial", _default_initial(low, high))
    problems += bound_problems(initial, low, high, path)
    knobs = _KNOBS[kind] if kind is not None else AIMD_KNOBS + GRADIENT_KNOBS
    options = {k: v for k, v in raw.items() if k not in BOUND_KNOBS and _is_option(k, kind)}
    problems += knob_problems(knobs, options, path)
    if problems or kind is None:
        raise ConfigError(problems)
    return AdaptiveSpec(kind, min=low, max=high, initial=initial, options=options)


def _is_option(key: object, kind: ControllerKind | None) -> bool:
    kinds = [kind] if kind is not None else list(ControllerKind)
    return any(key == knob.name for k in kinds for knob in _KNOBS[k])


def _kind_problem(value: object, path: str) -> Problem:
    hint = did_you_mean(value, [kind.value for kind in ControllerKind]).rstrip()
    message = f"{show(value)} is not one of {_KINDS}" + (f"; {hint}" if hint else "")
    return Problem(f"{path}.adaptive", message)


def _unknown_option(key: object, kind: ControllerKind | None) -> str:
    """The unknown-key message, telling when the key belongs to the other controller."""
    names = {knob.name for k in ([kind] if kind else ControllerKind) for knob in _KNOBS[k]}
    accepted = sorted({"adaptive", *BOUND_KNOBS, *names})
    others = [k for k in ControllerKind if k is not kind and _is_option(key, k)]
    if kind is not None and others:
        return (
            f"an option of adaptive = {others[0].value!r}, not of {kind.value!r}; "
            f"accepted keys: {', '.join(repr(k) for k in accepted)}"
        )
    return unknown_key(key, accepted)


def _join(path: str, key: str) -> str:
    """``path.key``, quoting ``key`` as TOML would if it is not a bare key."""
    return f"{path}.{key if _BARE_KEY.match(key) else json.dumps(key)}"
