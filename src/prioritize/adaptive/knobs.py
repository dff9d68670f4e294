"""The knobs of the limit controllers: one table per controller, read by code and by TOML.

Each controller's options are described once, here: name, default, what is
accepted. The controllers' constructors and the policy-file parser
(`prioritize.adaptive.spec`) both check values against these tables, so a
bad value gets the same message whether it came from Python or from a
policy file, and the defaults documented in docs/adaptive.md live in one
place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import final

from ..errors import Problem, show

__all__ = [
    "AIMD_KNOBS",
    "BOUND_KNOBS",
    "DEFAULT_INITIAL",
    "DEFAULT_MAX",
    "DEFAULT_MIN",
    "GRADIENT_KNOBS",
    "SQRT",
    "Knob",
    "bound_problems",
    "knob_problems",
]

#: Default bounds and starting limit. Netflix concurrency-limits uses 20, 200 and 20; the
#: floor here is Envoy's (3, rounded up to 4): the Gradient controller measures its no-load RTT
#: at ``min``, which a floor of 1 would make slow (one request at a time) and costly.
DEFAULT_MIN = 4
DEFAULT_MAX = 200
DEFAULT_INITIAL = 20

#: ``headroom = "sqrt"``: the queue headroom grows with the square root of the limit.
SQRT = "sqrt"


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@final
@dataclass(frozen=True, slots=True)
class Knob:
    """One controller option: its key, its default and what it accepts."""

    name: str
    default: float | str
    #: what is accepted, as the message words it: ``"a number > 0"``
    accepted: str
    is_valid: Callable[[object], bool]

    def problem(self, value: object, path: str) -> Problem | None:
        if self.is_valid(value):
            return None
        return Problem(f"{path}.{self.name}", f"{show(value)} is not {self.accepted}")


def _fraction(value: object) -> bool:
    return _number(value) and 0 < value <= 1  # type: ignore[operator]


def _backoff(value: object) -> bool:
    return _number(value) and 0.5 <= value < 1  # type: ignore[operator]


def _positive(value: object) -> bool:
    return _number(value) and value > 0  # type: ignore[operator]


def _finite_positive(value: object) -> bool:
    return _positive(value) and math.isfinite(value)  # type: ignore[arg-type]


def _seconds(value: object) -> bool:
    return _number(value) and 0 <= value < math.inf  # type: ignore[operator]


def _count(value: object) -> bool:
    return _whole(value) and value >= 1  # type: ignore[operator]


def _tolerance(value: object) -> bool:
    return _number(value) and 1 <= value < math.inf  # type: ignore[operator]


def _headroom(value: object) -> bool:
    return value == SQRT or (_number(value) and 0 <= value < math.inf)  # type: ignore[operator]


_WINDOW = Knob("window", 0.1, "a number of seconds ≥ 0", _seconds)
_WINDOW_SAMPLES = Knob("window_samples", 10, "a whole number ≥ 1", _count)
_BACKOFF = Knob("backoff", 0.9, "a number from 0.5 to 1, 1 excluded", _backoff)

#: AIMD: additive increase, multiplicative decrease (Netflix's AIMDLimit).
AIMD_KNOBS: tuple[Knob, ...] = (
    _BACKOFF,
    Knob("increase", 1.0, "a number > 0", _finite_positive),
    Knob("max_rtt", 5.0, "a number of seconds > 0 (or inf)", _positive),
    Knob("smoothing", 1.0, "a number > 0 and ≤ 1", _fraction),
    _WINDOW,
    _WINDOW_SAMPLES,
)

#: Gradient: no-load RTT over current RTT (Netflix's Gradient2Limit, Envoy's gradient controller).
GRADIENT_KNOBS: tuple[Knob, ...] = (
    _BACKOFF,
    Knob("headroom", SQRT, "'sqrt' or a number ≥ 0", _headroom),
    Knob("probe_interval", 60.0, "a number of seconds > 0 (or inf)", _positive),
    Knob("probe_samples", 50, "a whole number ≥ 1", _count),
    Knob("smoothing", 0.2, "a number > 0 and ≤ 1", _fraction),
    Knob("tolerance", 1.25, "a number ≥ 1", _tolerance),
    _WINDOW,
    _WINDOW_SAMPLES,
)

#: The bounds every adaptive capacity has, as policy-file keys.
BOUND_KNOBS = ("initial", "max", "min")


def knob_problems(
    knobs: tuple[Knob, ...], values: Mapping[str, object], path: str
) -> list[Problem]:
    """A problem for every value in ``values`` that its knob does not accept."""
    by_name = {knob.name: knob for knob in knobs}
    out: list[Problem] = []
    for name, value in values.items():
        knob = by_name.get(name)
        if knob is not None:
            problem = knob.problem(value, path)
            if problem is not None:
                out.append(problem)
    return out


def bound_problems(initial: object, low: object, high: object, path: str) -> list[Problem]:
    """Problems with the bounds: whole numbers, ``1 ≤ min ≤ initial ≤ max``."""
    out = [
        Problem(f"{path}.{key}", f"{show(value)} is not a whole number ≥ 1")
        for key, value in (("min", low), ("max", high))
        if not _count(value)
    ]
    if out or not isinstance(low, int) or not isinstance(high, int):
        if not _count(initial):
            out.append(Problem(f"{path}.initial", f"{show(initial)} is not a whole number ≥ 1"))
        return out
    if low > high:
        return [Problem(path, f"min ({low}) is more than max ({high}); min must be ≤ max")]
    if not _whole(initial) or not low <= initial <= high:  # type: ignore[operator]
        out.append(
            Problem(
                f"{path}.initial",
                f"{show(initial)} is not a whole number from min ({low}) to max ({high})",
            )
        )
    return out
