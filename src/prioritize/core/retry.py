"""When a failed job runs again: exponential backoff with jitter, and when it stops trying.

A job that fails is retried after a delay that doubles (by default) with
each attempt, capped, and *jittered*: many jobs failing together (a
downstream outage) must not come back together and fail together again.
The jitter is "full jitter" from the AWS Architecture Blog's study of
backoff ("Exponential Backoff And Jitter", 2015): the delay is drawn
uniformly from zero to the capped exponential, which spreads retries best
for the least total work. Or "equal" jitter (half fixed, half drawn), which
keeps a floor under the delay, or none.

Sans-I/O like the rest of the core: the random draw is an argument, so a
broker or a test decides where randomness comes from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import final

from ..errors import ConfigError, Problem

__all__ = ["Jitter", "RetryPolicy"]


class Jitter(StrEnum):
    """How much of a retry delay is random."""

    #: uniform from 0 to the capped exponential delay (the default)
    FULL = "full"
    #: half the capped delay, plus uniform from 0 to the other half
    EQUAL = "equal"
    #: exactly the capped exponential delay
    NONE = "none"


@final
@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a failed job is retried, and how long it waits before each retry.

    ``retries`` is the number of runs after the first (0: never retried).
    The delay before retry *n* (1-based) is ``min(cap, base * factor**(n-1))``
    seconds, jittered. Construction raises one `ConfigError` naming every
    bad setting.
    """

    retries: int = 3
    base: float = 1.0
    factor: float = 2.0
    cap: float = 300.0
    jitter: Jitter | str = Jitter.FULL

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError(problems)
        object.__setattr__(self, "jitter", Jitter(self.jitter))

    def problems(self, prefix: str = "retry") -> list[Problem]:
        """Every bad setting, each under ``prefix``."""
        out: list[Problem] = []
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or self.retries < 0:
            out.append(Problem(f"{prefix}.retries", f"{self.retries!r} is not a whole number ≥ 0"))
        for name, value, least in (("base", self.base, 0.0), ("cap", self.cap, 0.0)):
            if not _is_number(value) or not value > least:
                out.append(
                    Problem(f"{prefix}.{name}", f"{value!r} is not a finite number of seconds > 0")
                )
        if not _is_number(self.factor) or not self.factor >= 1.0:
            message = f"{self.factor!r} is not a number ≥ 1 (1 keeps the delay constant)"
            out.append(Problem(f"{prefix}.factor", message))
        if _is_number(self.base) and _is_number(self.cap) and self.cap < self.base:
            message = f"{self.cap!r} is less than base ({self.base!r}); the cap must be ≥ base"
            out.append(Problem(f"{prefix}.cap", message))
        if self.jitter not in {j.value for j in Jitter}:
            accepted = ", ".join(repr(j.value) for j in Jitter)
            out.append(Problem(f"{prefix}.jitter", f"{self.jitter!r} is not one of {accepted}"))
        return out

    def delay(self, failures: int, draw: float) -> float | None:
        """Seconds to wait before the next run after ``failures`` failed runs; None: give up.

        ``draw`` is a uniform random number in [0, 1). None means the job is
        out of retries and goes to the dead-letter set.
        """
        if not isinstance(failures, int) or failures < 1:
            raise ValueError(f"failures = {failures!r}: expected the number of failed runs, ≥ 1")
        if not 0.0 <= draw < 1.0:
            raise ValueError(f"draw = {draw!r}: expected a uniform random number in [0, 1)")
        if failures > self.retries:
            return None
        # factor**n overflows for large n: compare exponents instead of computing it
        exponent = failures - 1
        limit = self.cap
        if self.factor == 1.0 or exponent * math.log(self.factor) < math.log(self.cap / self.base):
            limit = min(self.cap, self.base * self.factor**exponent)
        if self.jitter is Jitter.FULL:
            return limit * draw
        if self.jitter is Jitter.EQUAL:
            return limit / 2 + limit / 2 * draw
        return limit


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
