"""How the simulated service slows down as more requests run at once.

By default a request's service time does not depend on load: the service
is as fast with 1 request in flight as with 500, and the gate's capacity
only decides who waits. Real services have a *knee*: up to some
concurrency (cores, connections, locks) requests do not get in each
other's way; beyond it they share the bottleneck and each one takes
longer. `Contention` models that, and it is what gives an adaptive
capacity something to find.

The model (``[simulate.service_model] kind = "contention"``): a request
granted while ``n`` requests are in flight, itself included, holds its seat
for its drawn service time multiplied by ::

    slowdown(n) = max(1, n / knee) ** exponent

With ``exponent = 1`` the service is processor sharing on ``knee`` servers:
past the knee the throughput stays at ``knee`` requests per service time
and every extra request in flight only adds latency. An ``exponent`` above 1
is a service that thrashes (throughput *falls* past the knee: lock
convoys, cache misses, swapping); below 1, one that still gains some
throughput from more concurrency. The slowdown is fixed when the request is
granted (the in-flight count at that moment), not re-evaluated while it
runs: a simplification that keeps every completion time known at grant,
as the engine's event loop needs, and that a real service under steady
load approaches.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import final

from ..errors import Problem, did_you_mean, show, unknown_key

__all__ = ["Contention", "parse_service_model"]


@final
@dataclass(frozen=True, slots=True)
class Contention:
    """Service times stretched by ``max(1, inflight / knee) ** exponent``."""

    #: requests in flight the service runs without slowing down
    knee: int
    exponent: float = 1.0

    def slowdown(self, inflight: int) -> float:
        """The factor applied to the service time of a request granted with ``inflight`` running."""
        if inflight <= self.knee:
            return 1.0
        return float((inflight / self.knee) ** self.exponent)

    def to_dict(self) -> dict[str, object]:
        return {"kind": "contention", "knee": self.knee, "exponent": self.exponent}

    def __str__(self) -> str:
        return f"contention past {self.knee} in flight, exponent {self.exponent:g}"


_KINDS = ("contention", "independent")
_KEYS = {"contention": ("exponent", "knee", "kind"), "independent": ("kind",)}


def parse_service_model(value: object, path: str) -> tuple[Contention | None, list[Problem]]:
    """The ``[simulate.service_model]`` table: `Contention`, or None for ``"independent"``.

    Returns the model and every problem found, each under ``path``.
    """
    if not isinstance(value, Mapping):
        example = '{kind = "contention", knee = 32}'
        return None, [Problem(path, f"{show(value)} is not a table like {example}")]
    kind = value.get("kind")
    if not isinstance(kind, str) or kind not in _KINDS:
        hint = did_you_mean(kind, _KINDS).rstrip()
        given = "missing; give" if kind is None else f"{show(kind)} is not"
        message = f"{given} one of {list(_KINDS)}" + (f"; {hint}" if hint else "")
        return None, [Problem(f"{path}.kind", message)]
    problems = [
        Problem(f"{path}.{key}", unknown_key(key, _KEYS[kind]))
        for key in value
        if key not in _KEYS[kind]
    ]
    if kind == "independent":
        return None, problems
    knee, exponent = value.get("knee"), value.get("exponent", 1.0)
    if knee is None:
        problems.append(Problem(f"{path}.knee", "missing; give a whole number ≥ 1"))
    elif not isinstance(knee, int) or isinstance(knee, bool) or knee < 1:
        problems.append(Problem(f"{path}.knee", f"{show(knee)} is not a whole number ≥ 1"))
    if (
        not isinstance(exponent, int | float)
        or isinstance(exponent, bool)
        or not 0 < exponent < math.inf
    ):
        problems.append(Problem(f"{path}.exponent", f"{show(exponent)} is not a number > 0"))
    if problems:
        return None, problems
    return Contention(knee, float(exponent)), problems  # type: ignore[arg-type]
