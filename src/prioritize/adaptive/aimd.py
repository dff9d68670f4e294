"""AIMD: grow the limit by a step while the service keeps up, cut it by a factor when it does not.

What it follows
---------------
Netflix concurrency-limits' ``AIMDLimit`` wrapped in its ``WindowedLimit``:
samples are gathered over a window (average RTT, largest in-flight count,
whether anything was dropped) and the limit moves once per window:

* a drop in the window, or an average RTT above ``max_rtt`` (Netflix's
  ``timeout``), multiplies the limit by ``backoff`` (0.9), and always takes
  at least one seat off (as ``AIMDLimit``'s ``min(limit - 1, limit × ratio)``);
* otherwise, if the largest in-flight count reached half the limit (the
  service was really asked for that much concurrency), the limit grows by
  ``increase`` (1);
* otherwise it stays: an idle service teaches nothing about its capacity.

Where it differs
----------------
* Time is an argument and nothing is read from a clock. A window opens when
  the previous one closes, and closes at the first sample at least
  ``window`` seconds later that finds ``window_samples`` samples in it (the
  very first window closes on its count alone). Netflix discards a window
  with too few samples; here it stays open until it has them, so a quiet
  service still updates, only more slowly. A drop closes a window without
  the minimum: a failure needs no statistics. (The Gradient controller uses
  the same windows.)
* ``smoothing`` (default 1, i.e. none, as Netflix) blends each window's
  average RTT into the RTT compared with ``max_rtt``, for services whose
  latency is too noisy for one window.
* The limit is kept as a real number (the returned limit is its whole part),
  so ``increase`` may be fractional.

Reaction time
-------------
One step per window: with the defaults (0.1 s, 10 samples) growing from 20
to 40 seats takes 20 windows, about 2 s under load; cutting it in half takes
7 windows with drops. A single slow or dropped sample costs at most one
``backoff`` step.
"""

from __future__ import annotations

import math
from typing import final

from ..errors import ConfigError
from .knobs import (
    AIMD_KNOBS,
    DEFAULT_INITIAL,
    DEFAULT_MAX,
    DEFAULT_MIN,
    bound_problems,
    knob_problems,
)
from .window import SampleWindow

__all__ = ["AIMD"]


@final
class AIMD:
    """Additive increase, multiplicative decrease of a concurrency limit; sans-I/O.

    Feed it one `on_sample` per completed request; it returns the limit to
    apply. Raises `ConfigError` listing every bad option, each under ``name``.
    Not thread-safe: serialise calls, as for the `Scheduler` it drives.
    """

    __slots__ = (
        "_backoff",
        "_estimate",
        "_increase",
        "_limit",
        "_max_rtt",
        "_rtt",
        "_samples",
        "_smoothing",
        "max_limit",
        "min_limit",
    )

    def __init__(
        self,
        *,
        initial: int = DEFAULT_INITIAL,
        min_limit: int = DEFAULT_MIN,
        max_limit: int = DEFAULT_MAX,
        backoff: float = 0.9,
        increase: float = 1.0,
        max_rtt: float = 5.0,
        smoothing: float = 1.0,
        window: float = 0.1,
        window_samples: int = 10,
        name: str = "aimd",
    ) -> None:
        options = {
            "backoff": backoff,
            "increase": increase,
            "max_rtt": max_rtt,
            "smoothing": smoothing,
            "window": window,
            "window_samples": window_samples,
        }
        problems = bound_problems(initial, min_limit, max_limit, name)
        problems += knob_problems(AIMD_KNOBS, options, name)
        if problems:
            raise ConfigError(problems)
        self.min_limit = min_limit
        self.max_limit = max_limit
        self._backoff = float(backoff)
        self._increase = float(increase)
        self._max_rtt = float(max_rtt)
        self._smoothing = float(smoothing)
        self._samples = SampleWindow(float(window), window_samples)
        self._estimate = float(initial)
        self._limit = initial
        #: the smoothed window RTT compared with ``max_rtt``; NaN until the first window
        self._rtt = math.nan

    @property
    def limit(self) -> int:
        """The current concurrency limit, from ``min_limit`` to ``max_limit``."""
        return self._limit

    @property
    def rtt(self) -> float:
        """The smoothed average RTT of the windows so far, in seconds (NaN before the first)."""
        return self._rtt

    def on_sample(self, now: float, rtt: float, inflight: int, dropped: bool = False) -> int:
        """Record one completed request and return the limit to apply from now on.

        ``rtt`` is how long it held its seat, in seconds; ``inflight`` how many
        requests were in flight when it finished (itself included); ``dropped``
        that it failed in a way that signals overload (a timeout, a 503 from
        downstream). A dropped request's RTT is not averaged.
        """
        if not self._samples.add(now, rtt, inflight, dropped):
            return self._limit
        return self._close(now)

    def _close(self, now: float) -> int:
        """End the window: move the estimate once, by its average RTT, drops and use."""
        samples = self._samples
        if samples.count:
            mean = samples.rtt_sum / samples.count
            previous = self._rtt
            if math.isnan(previous):
                self._rtt = mean
            else:
                self._rtt = previous + self._smoothing * (mean - previous)
        estimate = self._estimate
        if samples.dropped or (samples.count and self._rtt > self._max_rtt):
            estimate = max(self.min_limit, min(estimate * self._backoff, self._limit - 1.0))
        elif 2 * samples.inflight >= self._limit:
            estimate = min(self.max_limit, estimate + self._increase)
        self._estimate = estimate
        self._limit = int(estimate)
        self._samples.reset(now)
        return self._limit

    def __repr__(self) -> str:
        rtt = "-" if math.isnan(self._rtt) else f"{self._rtt * 1e3:.3g} ms"
        return (
            f"<AIMD limit {self._limit} ({self.min_limit}-{self.max_limit}), rtt {rtt}, "
            f"max_rtt {self._max_rtt * 1e3:g} ms>"
        )
