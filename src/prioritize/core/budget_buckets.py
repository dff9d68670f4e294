"""The arithmetic of a rate budget: one token bucket per dimension, and each level's shares.

`RateScheduler` decides who is served; this module only keeps the numbers
and answers "does this cost fit now?" and "in how many seconds will it?".

Per dimension ``k`` (requests, tokens), with rate ``r`` per second, the
adaptive factor ``f`` and ``B = r × burst``:

* ``level[k]``, the bucket: refills at ``r·f`` up to ``B``; may go below 0
  (debt) when a call is reconciled with more tokens than estimated.
* ``credit[i][k]``, level i's reserved share: refills at ``min_i·r·f`` up to
  ``min_i·B``; spends draw it down, into debt by at most the spend. Unspent
  credit (> 0) of more important levels is the *reserve* a level must leave
  in the bucket.
* ``cap[i][k]``, level i's ``max`` bucket: refills at ``max_i·r·f`` up to
  ``max_i·B``; every spend of the level must fit it.

Rates change only when a method is called, so between two calls every
quantity is linear until it reaches its cap, and the time at which a cost
fits is found exactly by walking those breakpoints (`fits_in`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import final

from .budget_policy import BudgetShare

__all__ = ["EPS", "FLOOR", "Buckets"]

#: float slack, relative to a bucket's size
EPS = 1e-9
#: the rate never falls below this share of the configured one, so every request fits one day
FLOOR = 1 / 64


@final
class Buckets:
    """The bucket, credits and caps of every dimension of one budget."""

    __slots__ = ("bursts", "cap", "credit", "factor", "level", "rates", "shares")

    def __init__(self, rates: Sequence[float], burst: float, shares: Sequence[BudgetShare]) -> None:
        #: configured units per second, per dimension
        self.rates = list(rates)
        self.bursts = [rate * burst for rate in self.rates]
        self.shares = list(shares)
        #: the share of the configured rates in force
        self.factor = 1.0
        self.level = list(self.bursts)
        self.credit = [[s.min * b for b in self.bursts] for s in self.shares]
        self.cap = [[s.max * b for b in self.bursts] for s in self.shares]

    def refill(self, dt: float, recovery: float) -> None:
        """``dt`` seconds of refill at the factor in force; then the factor climbs back."""
        f = self.factor
        for k, (rate, burst) in enumerate(zip(self.rates, self.bursts, strict=True)):
            gained = rate * f * dt
            self.level[k] = min(burst, self.level[k] + gained)
            for share, credit, cap in zip(self.shares, self.credit, self.cap, strict=True):
                credit[k] = min(share.min * burst, credit[k] + share.min * gained)
                cap[k] = min(share.max * burst, cap[k] + share.max * gained)
        self.factor = min(1.0, f + dt / recovery)

    def charge(self, rank: int, amounts: Sequence[float]) -> None:
        """Debit (positive) or refund (negative) one level's spend in every bucket."""
        credit, cap, share = self.credit[rank], self.cap[rank], self.shares[rank]
        for k, (amount, burst) in enumerate(zip(amounts, self.bursts, strict=True)):
            if amount >= 0:
                self.level[k] -= amount
                # into debt by at most this spend: a level that borrowed while nobody
                # else waited is not made to repay it before its guarantee returns
                credit[k] = max(credit[k] - amount, min(credit[k], -amount))
                cap[k] -= amount
            else:
                self.level[k] = min(burst, self.level[k] - amount)
                credit[k] = min(share.min * burst, credit[k] - amount)
                cap[k] = min(share.max * burst, cap[k] - amount)

    def back_off(self, backoff: float) -> None:
        self.factor = max(FLOOR, self.factor * backoff)

    def rate(self, k: int) -> float:
        return self.rates[k] * self.factor

    def reserve(self, rank: int, k: int) -> float:
        """The unspent credit of the levels more important than ``rank``."""
        return sum(max(credit[k], 0.0) for credit in self.credit[:rank])

    def could_fit(self, rank: int, cost: Sequence[float]) -> bool:
        """Whether the cost fits some day: within the level's max and what the mins above leave."""
        share = self.shares[rank]
        above = sum(s.min for s in self.shares[:rank])
        room = min(share.max, 1.0 - above)
        return share.max > 0 and all(
            c <= b * room * (1 + EPS) + EPS for c, b in zip(cost, self.bursts, strict=True)
        )

    def is_capped(self, rank: int, cost: Sequence[float]) -> bool:
        """The level's ``max`` bucket cannot pay the cost now."""
        cap = self.cap[rank]
        return any(
            cap[k] < c - EPS * b for k, (c, b) in enumerate(zip(cost, self.bursts, strict=True))
        )

    def is_below_min(self, rank: int) -> bool:
        """The level has unspent reserved credit in every dimension."""
        return self.shares[rank].min > 0 and all(
            c > EPS * b for c, b in zip(self.credit[rank], self.bursts, strict=True)
        )

    def fits(self, rank: int, cost: Sequence[float]) -> bool:
        """The bucket pays the cost and still covers the reserves of the levels above."""
        return all(
            self.level[k] - c >= self.reserve(rank, k) - EPS * b
            for k, (c, b) in enumerate(zip(cost, self.bursts, strict=True))
        )

    def ready_in(self, rank: int, cost: Sequence[float]) -> float:
        """Seconds until the level's own state changes a choice: its ``max`` bucket pays
        the cost, or its credit turns positive (the guarantee); ``inf`` if neither pends."""
        share, f = self.shares[rank], self.factor
        if self.is_capped(rank, cost):
            return max(
                (c - self.cap[rank][k]) / (share.max * self.rates[k] * f)
                for k, c in enumerate(cost)
            )
        if share.min == 0 or self.is_below_min(rank):
            return math.inf
        return max(
            max(0.0, (2 * EPS * b - credit) / (share.min * rate * f))
            for credit, b, rate in zip(self.credit[rank], self.bursts, self.rates, strict=True)
        )

    def fits_in(self, rank: int, cost: Sequence[float]) -> float:
        """Seconds until `fits` holds for this cost, if nothing else is spent meanwhile.

        Per dimension, level minus reserve rises until the bucket is full and
        then stays above any cost `could_fit` accepts, so once it fits it
        keeps fitting, and the answer is the latest of the dimensions' times.
        """
        return max(self._crossing(rank, k, c) for k, c in enumerate(cost))

    def _crossing(self, rank: int, k: int, need: float) -> float:
        rate, burst = self.rate(k), self.bursts[k]
        parts = [
            (self.credit[i][k], self.shares[i].min * rate, self.shares[i].min * burst)
            for i in range(rank)
            if self.shares[i].min > 0
        ]

        def value(t: float) -> float:
            level = min(burst, self.level[k] + rate * t)
            return level - sum(max(0.0, min(cap, c + m * t)) for c, m, cap in parts)

        need -= EPS * burst / 2  # inside `fits`'s slack, so float rounding cannot miss it
        points = [(burst - self.level[k]) / rate]
        for c, m, cap in parts:
            points += [-c / m, (cap - c) / m]
        before, seen = 0.0, value(0.0)
        if seen >= need:
            return 0.0
        for t in sorted(p for p in points if p > 0):
            reached = value(t)
            if reached >= need:
                return before + (need - seen) / (reached - seen) * (t - before)
            before, seen = t, reached
        return math.inf
