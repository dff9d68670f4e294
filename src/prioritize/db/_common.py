"""What every database adapter shares: a pool's gate policy, and the level of a checkout.

A pooled connection is a seat: the gate's ``capacity`` *is* the pool's size,
so a granted seat always finds a connection free (or room to open one) and
the driver's own pool never queues. Two numbers that could disagree are
therefore checked against each other once, when the pool is made, rather
than one silently winning: a pool larger than the gate would let work past
the policy, a smaller one would queue granted seats behind the driver's FIFO.

The level of a checkout is the one given, else the level of the request or
job being served (`current_level`), else the pool's default level. Levels
are matched by name, so a level set by the HTTP middleware or a job worker
from a policy loaded elsewhere still finds its seats here.
"""

from __future__ import annotations

import math
from collections.abc import Hashable

from ..context import current_level
from ..core.config import Policy
from ..core.levels import DEFAULT_LEVELS, Level, LevelSet
from ..core.policy import GatePolicy
from ..errors import ConfigError, Problem, UnknownLevelError

__all__ = ["LevelChooser", "check_flow", "check_size", "check_timeout", "pool_policy"]


def pool_policy(
    policy: Policy | GatePolicy | None, gate: str, size: int | None, size_name: str
) -> tuple[GatePolicy, Level]:
    """The gate policy of a pool of ``size`` connections, and the level of unlabelled work.

    ``policy`` is a whole `Policy` (its gate called ``gate`` is used, and its
    ``default_level``), one `GatePolicy`, or None for a gate of ``size``
    seats (10 if ``size`` is None too) with no reservations. A ``size`` given
    with a policy must equal the gate's capacity; ``size_name`` names it in
    the error (``max_size``, ``pool_size + max_overflow``).
    """
    if not isinstance(gate, str):
        raise TypeError(f"gate must be the name of a gate of the policy (a str), not {gate!r}")
    if size is not None:
        check_size(size, size_name)
    if policy is None:
        return GatePolicy(capacity=10 if size is None else size, name=gate), _middle(None)
    if isinstance(policy, Policy):
        found = policy.gate(gate)
        if gate in policy.adaptive:
            raise ConfigError(
                [
                    Problem(
                        f"gates.{gate}.capacity",
                        "an adaptive capacity cannot size a database pool: give a whole "
                        "number of connections (capacity = 20)",
                    )
                ],
                policy.source,
            )
        default = policy.default_level
    elif isinstance(policy, GatePolicy):
        found, default = policy, _middle(policy.level_set)
    else:
        raise TypeError(
            "policy must be a Policy (load_policy(), policy_from_toml(), parse_policy()), "
            f"a GatePolicy or None, not {policy!r}"
        )
    if size is not None and size != found.capacity:
        raise ConfigError(
            [
                Problem(
                    f"gates.{found.name}.capacity",
                    f"is {found.capacity}, but the pool's {size_name} is {size}: a database "
                    "pool holds one connection per seat, so they must be equal; "
                    f"leave {size_name} out to use the gate's capacity",
                )
            ]
        )
    return found, default


def _middle(levels: LevelSet | None) -> Level:
    """The middle level of a set: what unlabelled work is served at, as `Classifier` does."""
    chosen = DEFAULT_LEVELS if levels is None else levels
    return chosen[len(chosen) // 2]


def check_size(size: object, name: str, least: int = 1) -> int:
    """``size`` as a whole number ≥ ``least``, else a `TypeError` / `ValueError` naming it."""
    if not isinstance(size, int) or isinstance(size, bool):
        raise TypeError(f"{name} must be a whole number of connections (an int), not {size!r}")
    if size < least:
        raise ValueError(f"{name} must be ≥ {least}, not {size}")
    return size


def check_timeout(timeout: object, name: str = "timeout") -> float | None:
    """``timeout`` as seconds ≥ 0 (or None: as long as the policy's ``max_wait``)."""
    if timeout is None:
        return None
    if not isinstance(timeout, int | float) or isinstance(timeout, bool):
        raise TypeError(f"{name} must be a number of seconds or None, not {timeout!r}")
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"{name} must be a number of seconds ≥ 0 or None, not {timeout!r}")
    return float(timeout)


def check_flow(flow: object) -> Hashable:
    """``flow`` if it can key a queue (tenant, user, client), else a `TypeError`."""
    try:
        hash(flow)
    except TypeError:
        raise TypeError(
            f"flow must be hashable (a tenant or user id: str, int, tuple), not {flow!r}"
        ) from None
    return flow  # hashable: hash() just said so


class LevelChooser:
    """Picks the level of a checkout: the one given, else the current one, else the default.

    Answers with the `Level` objects of the pool's own level set, which is
    what the gate looks its lanes up by.
    """

    __slots__ = ("_by_name", "default", "levels")

    def __init__(self, levels: LevelSet, default: Level | str | None) -> None:
        self.levels = levels
        self._by_name = {level.name: level for level in levels}
        if default is None:
            self.default = _middle(levels)
        else:
            self.default = self._named(default, "default_level")

    def choose(self, level: Level | str | None) -> Level:
        if level is not None:
            return self._named(level, "level")
        current = current_level()
        if current is None:
            return self.default
        found = self._by_name.get(current.name)
        if found is None:
            raise UnknownLevelError(
                f"the current level {current.name!r} (of the request or job being served) "
                f"is not a level of this pool; its levels are {self.levels.names}: "
                "use the same level names in both policies, or pass level="
            )
        return found

    def _named(self, level: object, what: str) -> Level:
        if isinstance(level, Level):
            level = level.name
        if not isinstance(level, str):
            raise TypeError(
                f"{what} must be a level name (one of {self.levels.names}), a Level or None, "
                f"not {level!r}"
            )
        found = self._by_name.get(level)
        if found is None:
            raise UnknownLevelError(
                f"{what} {level!r} is not a level of this pool; valid levels are "
                f"{self.levels.names}"
            )
        return found
