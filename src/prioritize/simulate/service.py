"""Service-time distributions: how long a granted request holds its seat.

Four shapes cover what matters for an admission policy: ``constant`` (a
fixed cost, the easy case), ``exponential`` (the textbook M/M/c service),
``lognormal`` (what real request latencies look like: most fast, a long
tail) and ``uniform`` (bounded jitter). Each is a frozen value whose
`sample` draws from a caller-owned `random.Random`, so a seed fixes every
draw. Heavier machinery (empirical traces, Pareto) was left out until a
policy question needs it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import final

__all__ = ["Constant", "Exponential", "Lognormal", "ServiceTime", "Uniform"]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:g} ms" if seconds < 1 else f"{seconds:g} s"


@final
@dataclass(frozen=True, slots=True)
class Exponential:
    """Memoryless service times with the given mean, in seconds."""

    mean: float

    def sample(self, rng: random.Random) -> float:
        return rng.expovariate(1.0 / self.mean)

    def to_dict(self) -> dict[str, object]:
        return {"dist": "exponential", "mean": self.mean}

    def __str__(self) -> str:
        return f"exponential, mean {_ms(self.mean)}"


@final
@dataclass(frozen=True, slots=True)
class Constant:
    """Every request takes exactly ``value`` seconds."""

    value: float

    @property
    def mean(self) -> float:
        return self.value

    def sample(self, rng: random.Random) -> float:
        return self.value

    def to_dict(self) -> dict[str, object]:
        return {"dist": "constant", "value": self.value}

    def __str__(self) -> str:
        return f"constant {_ms(self.value)}"


@final
@dataclass(frozen=True, slots=True)
class Lognormal:
    """Long-tailed service times with the given mean and log-space ``sigma``.

    ``mean`` is the mean of the times themselves, not of their logarithm,
    so changing ``sigma`` widens the tail without moving the offered work.
    """

    mean: float
    sigma: float

    def sample(self, rng: random.Random) -> float:
        mu = math.log(self.mean) - self.sigma * self.sigma / 2.0
        return rng.lognormvariate(mu, self.sigma)

    def to_dict(self) -> dict[str, object]:
        return {"dist": "lognormal", "mean": self.mean, "sigma": self.sigma}

    def __str__(self) -> str:
        return f"lognormal, mean {_ms(self.mean)}, sigma {self.sigma:g}"


@final
@dataclass(frozen=True, slots=True)
class Uniform:
    """Service times spread evenly between ``low`` and ``high`` seconds."""

    low: float
    high: float

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2.0

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(self.low, self.high)

    def to_dict(self) -> dict[str, object]:
        return {"dist": "uniform", "low": self.low, "high": self.high}

    def __str__(self) -> str:
        return f"uniform {_ms(self.low)} to {_ms(self.high)}"


#: Any of the supported service-time distributions.
ServiceTime = Exponential | Constant | Lognormal | Uniform
