"""Gradient: set the limit from how much slower the service is now than when it was idle.

What it follows
---------------
The update is Netflix concurrency-limits' ``Gradient2Limit``, once per
window of samples (as its ``WindowedLimit`` does)::

    gradient = max(0.5, min(1.0, tolerance × rtt_noload / rtt_now))
    target   = limit × gradient + headroom          # headroom: sqrt(limit), or a constant
    limit    = limit × (1 - smoothing) + target × smoothing

``rtt_now`` is the window's average RTT. A gradient of 1 (the service is no
slower than ``tolerance`` times its no-load RTT) lets the limit grow by
``smoothing × headroom`` per window; a slower service shrinks it, by at most
``smoothing × 50 %`` per window, so one outlier cannot collapse it. As in
``Gradient2Limit`` the limit does not move while the service is
*app-limited* (fewer than half the limit in flight), and as in Netflix's
older ``GradientLimit`` a dropped request multiplies the limit by
``backoff`` instead (``Gradient2Limit`` ignores drops).

Where it differs: the no-load RTT
---------------------------------
``Gradient2Limit`` takes ``rtt_noload`` as a long-term exponential average
of *every* RTT. Under sustained overload that average follows the latency
the limit itself causes: while the service is no slower than its recent
past, the gradient is 1 and the limit grows by the headroom; the latency
creeps up, the average follows it, and on a service whose latency rises
smoothly with concurrency the limit drifts up to ``max_limit``. So here
``rtt_noload`` is *measured*, the way Envoy's adaptive concurrency filter
measures its minRTT: a *probe* pins the limit to ``min_limit``, ignores
requests that started before it, averages the RTT of the next
``probe_samples`` completions (Envoy: p50 of 50 requests at
``min_concurrency``), then restores the limit it had. A probe runs at the
first sample, every ``probe_interval`` seconds after (Envoy: its minRTT
``interval``, without the random jitter, which would need a random source:
give processes different intervals if they must not probe together), and,
as in Envoy, after 5 windows in a row at ``min_limit``, in case the service
got slower for good and the old no-load RTT keeps the limit pinned.

Both RTTs are averages, as in Netflix (Envoy uses the median for both):
comparing a median with a mean would move the target with the shape of the
latency distribution (the mean of exponential times is 1.44 times their
median). ``tolerance`` is Envoy's ``1 + buffer`` (default 25 %), and the
gradient is capped at 1 as in ``Gradient2Limit`` (Envoy allows 2), so the
limit grows only by the headroom, smoothly.

Where it settles: with the limit L steady, ``L = L × gradient + headroom``,
so the RTT settles near ``tolerance × rtt_noload / (1 - headroom / L)``;
with the defaults and L = 40, about 1.5 times the no-load RTT. The probe's
average of 50 samples is itself a measurement, good to about ±15 % for
exponential service times, and the settled limit moves with it.

Reaction time
-------------
One update per window (default 0.1 s with at least 10 samples). Growth is at
most ``smoothing × headroom`` seats per window: about 1.3 at L = 40 with the
defaults, so from 20 to 40 seats in about 2 s under load. A decrease is at
most 10 % per window (``smoothing × 50 %``, or ``backoff`` on a drop): the
limit halves in about 7 windows. A probe costs ``probe_samples``
completions at ``min_limit``: 50 × RTT / ``min_limit`` seconds.
"""

from __future__ import annotations

import math
from typing import final

from ..errors import ConfigError
from .knobs import (
    DEFAULT_INITIAL,
    DEFAULT_MAX,
    DEFAULT_MIN,
    GRADIENT_KNOBS,
    SQRT,
    bound_problems,
    knob_problems,
)
from .window import SampleWindow

__all__ = ["MIN_GRADIENT", "PROBE_AFTER_WINDOWS_AT_MIN", "Gradient"]

#: The smallest gradient: one window never takes more than half the limit (times smoothing).
MIN_GRADIENT = 0.5
#: Windows in a row at ``min_limit`` after which the no-load RTT is measured again (Envoy's 5).
PROBE_AFTER_WINDOWS_AT_MIN = 5


@final
class Gradient:
    """A concurrency limit that tracks the ratio of no-load RTT to current RTT; sans-I/O.

    Feed it one `on_sample` per completed request; it returns the limit to
    apply. While it measures the no-load RTT (`is_probing`), the limit is
    ``min_limit``. Raises `ConfigError` listing every bad option, each under
    ``name``. Not thread-safe: serialise calls, as for the `Scheduler`.
    """

    __slots__ = (
        "_at_min",
        "_backoff",
        "_baseline",
        "_estimate",
        "_headroom",
        "_limit",
        "_next_probe",
        "_probe_count",
        "_probe_interval",
        "_probe_samples",
        "_probe_start",
        "_probe_sum",
        "_probing",
        "_resume",
        "_rtt",
        "_samples",
        "_smoothing",
        "_tolerance",
        "max_limit",
        "min_limit",
    )

    def __init__(
        self,
        *,
        initial: int = DEFAULT_INITIAL,
        min_limit: int = DEFAULT_MIN,
        max_limit: int = DEFAULT_MAX,
        tolerance: float = 1.25,
        smoothing: float = 0.2,
        headroom: float | str = SQRT,
        backoff: float = 0.9,
        window: float = 0.1,
        window_samples: int = 10,
        probe_interval: float = 60.0,
        probe_samples: int = 50,
        name: str = "gradient",
    ) -> None:
        options = {
            "tolerance": tolerance,
            "smoothing": smoothing,
            "headroom": headroom,
            "backoff": backoff,
            "window": window,
            "window_samples": window_samples,
            "probe_interval": probe_interval,
            "probe_samples": probe_samples,
        }
        problems = bound_problems(initial, min_limit, max_limit, name)
        problems += knob_problems(GRADIENT_KNOBS, options, name)
        if problems:
            raise ConfigError(problems)
        self.min_limit = min_limit
        self.max_limit = max_limit
        self._tolerance = float(tolerance)
        self._smoothing = float(smoothing)
        #: None: the square root of the limit
        self._headroom = None if headroom == SQRT else float(headroom)
        self._backoff = float(backoff)
        self._samples = SampleWindow(float(window), window_samples)
        self._probe_interval = float(probe_interval)
        self._probe_samples = probe_samples
        self._estimate = float(initial)
        self._limit = initial
        self._baseline = math.nan
        #: the last window's average RTT; NaN before the first
        self._rtt = math.nan
        self._probing = True  # the first sample starts the first probe
        self._probe_start: float | None = None
        self._probe_sum = 0.0
        self._probe_count = 0
        self._resume = self._estimate
        self._next_probe = math.inf
        self._at_min = 0

    @property
    def limit(self) -> int:
        """The current concurrency limit, from ``min_limit`` to ``max_limit``."""
        return self._limit

    @property
    def rtt(self) -> float:
        """The last window's average RTT, in seconds (NaN before the first window)."""
        return self._rtt

    @property
    def baseline(self) -> float:
        """The no-load RTT in seconds, measured by the last probe (NaN before the first)."""
        return self._baseline

    @property
    def is_probing(self) -> bool:
        """True while the limit is pinned to ``min_limit`` to measure the no-load RTT."""
        return self._probing and self._probe_start is not None

    def on_sample(self, now: float, rtt: float, inflight: int, dropped: bool = False) -> int:
        """Record one completed request and return the limit to apply from now on.

        ``rtt`` is how long it held its seat, in seconds; ``inflight`` how many
        requests were in flight when it finished (itself included); ``dropped``
        that it failed in a way that signals overload. A dropped request's
        RTT is not averaged.
        """
        if self._probing:
            return self._probe(now, rtt, dropped)
        if not self._samples.add(now, rtt, inflight, dropped):
            return self._limit
        return self._close(now)

    def _close(self, now: float) -> int:
        """End the window: move the estimate once, or start a probe when one is due."""
        estimate, limit = self._estimate, self._limit
        samples = self._samples
        if samples.count:
            self._rtt = samples.rtt_sum / samples.count
        if samples.dropped:
            estimate = max(self.min_limit, min(estimate * self._backoff, limit - 1.0))
        elif 2 * samples.inflight >= limit:  # not app-limited: the RTT says something
            allowed, rtt = self._tolerance * self._baseline, self._rtt
            # no slower than allowed (a zero RTT, from a clock coarser than the service, too)
            gradient = 1.0 if rtt <= allowed else max(MIN_GRADIENT, allowed / rtt)
            headroom = math.sqrt(estimate) if self._headroom is None else self._headroom
            target = estimate * gradient + headroom
            estimate += self._smoothing * (target - estimate)
            estimate = max(self.min_limit, min(estimate, self.max_limit))
        self._estimate = estimate
        self._limit = int(estimate)
        self._samples.reset(now)
        self._at_min = self._at_min + 1 if self._limit == self.min_limit else 0
        if now >= self._next_probe or self._at_min >= PROBE_AFTER_WINDOWS_AT_MIN:
            self._start_probe(now)
        return self._limit

    def _start_probe(self, now: float) -> None:
        self._probing = True
        self._probe_start = now
        self._probe_sum = 0.0
        self._probe_count = 0
        self._resume = self._estimate  # restored when the probe ends, as Envoy does
        self._limit = self.min_limit

    def _probe(self, now: float, rtt: float, dropped: bool) -> int:
        """One sample while probing: kept if its request started after the probe did."""
        if self._probe_start is None:
            self._probe_start = now  # the first sample ever: the first probe starts now
            self._limit = self.min_limit
            return self._limit
        if dropped or now - rtt <= self._probe_start:
            return self._limit  # started under the old limit, or failed: not a no-load RTT
        self._probe_sum += rtt
        self._probe_count += 1
        if self._probe_count < self._probe_samples:
            return self._limit
        self._baseline = self._probe_sum / self._probe_count
        self._probing = False
        self._next_probe = now + self._probe_interval
        self._at_min = 0
        self._samples.start = now  # the first window after a probe opens as it ends
        self._estimate = self._resume
        self._limit = int(self._resume)
        return self._limit

    def __repr__(self) -> str:
        base = "-" if math.isnan(self._baseline) else f"{self._baseline * 1e3:.3g} ms"
        state = ", probing" if self.is_probing else ""
        return (
            f"<Gradient limit {self._limit} ({self.min_limit}-{self.max_limit}), "
            f"no-load rtt {base}{state}>"
        )
