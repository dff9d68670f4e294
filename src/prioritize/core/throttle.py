"""Client-side adaptive throttling: refuse calls locally while a downstream is rejecting them.

An overloaded service that answers 503 still pays for every request it
rejects, and clients that retry make it worse. The cure, from *Site
Reliability Engineering* (O'Reilly, 2016), chapter 21 "Handling Overload",
section "Client-Side Throttling", is for each client to keep, per downstream,
two counts over a sliding window (two minutes in the book):

* ``requests``: "the number of requests attempted by the application layer
  (at the client, on top of the adaptive throttling system)", so requests
  this throttle refuses locally count too;
* ``accepts``: "the number of requests accepted by the backend",

and to refuse each new request locally with probability::

    p = max(0, (requests - K * accepts) / (requests + 1))

While the backend accepts everything, ``requests == accepts`` and ``p = 0``.
Once it rejects more than ``1 - 1/K`` of the calls, the client sends only
about ``K`` times what the backend accepts; because some calls still get
through, the client notices at once when the backend recovers. ``K = 2``
is the book's default; a larger K is more patient.

Here an *accept* is any response but an overload rejection: 429 and 503 are
rejections, every other status (a 404, a 500) is the backend's answer and
counts as accepted; a transport error (refused connection, timeout) counts
as not accepted. A request whose outcome is never recorded (the caller gave
up before an answer) is not counted at all: it told nothing about the
backend.

**Least important first.** ``p`` is the share of the traffic to a host that
should be refused. Instead of refusing every level alike, that budget is
spent on the least important levels first, in proportion to each level's
share of the recent requests to that host: with bulk at 50 % of the traffic
and ``p = 0.3``, bulk is refused with probability 0.6 and every other level
is sent; with ``p = 0.7``, bulk is refused entirely and low, if it is 40 %,
with probability 0.5. The expected refused share is exactly ``p``, and a
level is refused at all only when every less important level is refused
entirely (`drop_probabilities`).

**Retry-After.** A rejection carrying ``Retry-After`` pauses that host, for
the rejected level and every less important one, until the time given
(capped at ``max_retry_after``): a priority-aware downstream sheds its least
important work first, so a 503 to a bulk call says nothing about high, while
one to high says low and bulk would fare no better. The most important level
is never paused: it keeps probing, so the window keeps learning whether the
downstream has recovered. Calls refused during a pause count as requests,
as every refused call does.

The window is a ring of time buckets, so its memory is O(buckets × levels)
per host whatever the request rate, and history is forgotten one bucket at a
time. Rejected alternatives: a list of timestamps (O(requests) memory and
work under exactly the load this is for) and exponential decay (no clean
"last two minutes" to reason about or test). Time and the random draw are
arguments: nothing here reads a clock or a random source.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import final

from ..errors import ConfigError
from .levels import DEFAULT_LEVELS, LevelSet

__all__ = ["ClientThrottle", "ThrottleStats", "drop_probabilities", "rejection_probability"]

#: A budget left below this share of the requests is a rounding residue, not a refusal.
_RESIDUE = 1e-12
#: Hosts are tracked in a dict; idle ones are swept once it grows past this size.
_MIN_SWEEP = 64


def rejection_probability(requests: int, accepts: int, k: float) -> float:
    """The book's ``max(0, (requests - k * accepts) / (requests + 1))``."""
    return max(0.0, (requests - k * accepts) / (requests + 1))


def drop_probabilities(p: float, requests: Sequence[int]) -> tuple[float, ...]:
    """Per level (by rank), the probability of refusing its next call, least important first.

    ``requests[rank]`` is each level's recent request count to one host and
    ``p`` the share of all of them to refuse. The budget ``p * sum(requests)``
    is spent from the last rank upwards: a level fits entirely (probability
    1) or takes what is left (probability ``left / its requests``), and the
    levels above it get 0. A level with no recent requests gets 1 if some
    budget is left when its turn comes, else 0, so the order holds for it too.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p = {p!r}: expected a probability from 0 to 1")
    if any(n < 0 for n in requests):
        raise ValueError(f"requests = {list(requests)!r}: expected counts >= 0")
    total = sum(requests)
    budget = p * total
    residue = _RESIDUE * max(total, 1)
    drops = [0.0] * len(requests)
    for rank in range(len(requests) - 1, -1, -1):
        if budget <= residue:
            break
        count = requests[rank]
        if count <= budget:
            drops[rank] = 1.0
            budget -= count
        else:
            drops[rank] = budget / count
            budget = 0.0
    return tuple(drops)


@final
@dataclass(frozen=True, slots=True)
class ThrottleStats:
    """A snapshot of one host's window, for logs, metrics and tests (`ClientThrottle.stats`)."""

    host: str
    #: requests attempted in the window, locally refused ones included
    requests: int
    #: of those, requests the host accepted
    accepts: int
    #: the book's refusal probability for the host's traffic as a whole
    probability: float
    #: requests attempted in the window, per level name
    requests_by_level: Mapping[str, int]
    #: probability of refusing a level's next call, per level name
    drop: Mapping[str, float]
    #: seconds each level is still paused by a Retry-After, per level name (0 when not)
    paused: Mapping[str, float]


class _HostWindow:
    """One host's ring of buckets and the running totals over the live ones."""

    __slots__ = (
        "accepts",
        "blocked_until",
        "epoch",
        "requests",
        "slot_accepts",
        "slot_requests",
        "total",
    )

    def __init__(self, buckets: int, levels: int, epoch: int) -> None:
        #: the newest bucket's number (``floor(now / width)``)
        self.epoch = epoch
        self.slot_requests = [[0] * levels for _ in range(buckets)]
        self.slot_accepts = [0] * buckets
        self.requests = [0] * levels
        self.total = 0
        self.accepts = 0
        self.blocked_until = [-math.inf] * levels

    def advance(self, epoch: int) -> int:
        """Expire buckets older than the window; the slot to count into now.

        A time earlier than the newest bucket (callers reading their clock
        before taking a lock) is counted in the newest bucket: the window
        never moves backwards.
        """
        buckets = len(self.slot_accepts)
        if epoch > self.epoch:
            for stale in range(max(self.epoch + 1, epoch - buckets + 1), epoch + 1):
                self._clear(stale % buckets)
            self.epoch = epoch
        return self.epoch % buckets

    def _clear(self, slot: int) -> None:
        counts = self.slot_requests[slot]
        for rank, count in enumerate(counts):
            if count:
                self.requests[rank] -= count
                self.total -= count
                counts[rank] = 0
        self.accepts -= self.slot_accepts[slot]
        self.slot_accepts[slot] = 0

    def count(self, slot: int, rank: int, accepted: bool) -> None:
        self.slot_requests[slot][rank] += 1
        self.requests[rank] += 1
        self.total += 1
        if accepted:
            self.slot_accepts[slot] += 1
            self.accepts += 1

    def is_idle(self, epoch: int, now: float) -> bool:
        """Nothing left in the window and no pause running: safe to forget."""
        return epoch - self.epoch >= len(self.slot_accepts) and max(self.blocked_until) <= now


@final
class ClientThrottle:
    """Decides, per downstream host and level, whether to send a call or refuse it locally.

    Call `decide` before sending; if it returns None, send and then call
    `record` with the outcome; otherwise refuse the call with the returned
    ``retry_after``. Not thread-safe: adapters hold a lock around both.

    ``window`` seconds of history are kept in ``buckets`` steps; a call
    refused by the probability reports one step (``window / buckets``) as
    its ``retry_after``, the soonest the history changes by aging. Raises
    `ConfigError` for a bad setting.
    """

    __slots__ = (
        "_buckets",
        "_hosts",
        "_k",
        "_levels",
        "_max_retry_after",
        "_sweep_at",
        "_width",
        "_window",
    )

    def __init__(
        self,
        levels: LevelSet = DEFAULT_LEVELS,
        *,
        k: float = 2.0,
        window: float = 120.0,
        buckets: int = 12,
        max_retry_after: float | None = None,
    ) -> None:
        if not isinstance(levels, LevelSet):
            raise ConfigError(f"levels = {levels!r}: expected a LevelSet")
        if not _is_real(k) or not 1.0 <= k < math.inf:
            raise ConfigError(
                f"k = {k!r}: expected a number >= 1 (1 refuses as soon as the backend "
                "rejects anything; the book's default is 2)"
            )
        if not _is_real(window) or not 0.0 < window < math.inf:
            raise ConfigError(f"window = {window!r}: expected a number of seconds > 0")
        if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
            raise ConfigError(f"buckets = {buckets!r}: expected a whole number >= 1")
        if max_retry_after is None:
            max_retry_after = window
        elif not _is_real(max_retry_after) or not 0.0 <= max_retry_after < math.inf:
            raise ConfigError(
                f"max_retry_after = {max_retry_after!r}: expected a number of seconds >= 0, "
                "or None for the window"
            )
        self._levels = levels
        self._k = float(k)
        self._window = float(window)
        self._buckets = buckets
        self._width = self._window / buckets
        self._max_retry_after = float(max_retry_after)
        self._hosts: dict[str, _HostWindow] = {}
        self._sweep_at = _MIN_SWEEP

    @property
    def levels(self) -> LevelSet:
        return self._levels

    @property
    def k(self) -> float:
        return self._k

    @property
    def window(self) -> float:
        return self._window

    @property
    def buckets(self) -> int:
        return self._buckets

    def decide(self, host: str, rank: int, now: float, draw: float) -> float | None:
        """None: send the call. A number: refuse it locally, retry after that many seconds.

        ``draw`` is uniform in [0, 1), e.g. ``random.random()``. A refused
        call is counted as a request here; a sent one is counted by `record`.
        """
        self._check(host, rank, now)
        if not _is_real(draw) or not 0.0 <= draw < 1.0:
            raise ValueError(
                f"draw = {draw!r}: expected a number from 0 (included) to 1 (excluded)"
            )
        window, slot = self._window_at(host, now)
        pause = window.blocked_until[rank] - now
        if pause > 0.0:
            window.count(slot, rank, accepted=False)
            return pause
        p = rejection_probability(window.total, window.accepts, self._k)
        if p > 0.0 and draw < drop_probabilities(p, window.requests)[rank]:
            window.count(slot, rank, accepted=False)
            return self._width
        return None

    def record(
        self,
        host: str,
        rank: int,
        now: float,
        accepted: bool,
        retry_after: float | None = None,
    ) -> None:
        """Count a sent call's outcome: accepted, or rejected (429, 503, transport error).

        ``retry_after`` (seconds, only with ``accepted=False``) pauses the
        host for ``rank`` and every less important level, never for rank 0.
        """
        self._check(host, rank, now)
        if not isinstance(accepted, bool):
            raise TypeError(f"accepted = {accepted!r}: expected True or False")
        if retry_after is not None:
            if accepted:
                raise ValueError(
                    f"retry_after = {retry_after!r} with accepted=True: only a rejection "
                    "(429, 503) pauses a host"
                )
            if not _is_real(retry_after) or not 0.0 <= retry_after < math.inf:
                raise ValueError(
                    f"retry_after = {retry_after!r}: expected a number of seconds >= 0 or None"
                )
        window, slot = self._window_at(host, now)
        window.count(slot, rank, accepted)
        if retry_after:
            until = now + min(retry_after, self._max_retry_after)
            blocked = window.blocked_until
            for paused in range(max(rank, 1), len(blocked)):
                blocked[paused] = max(blocked[paused], until)

    def stats(self, host: str, now: float) -> ThrottleStats:
        """The host's window as of ``now`` (all zero for a host never seen)."""
        self._check(host, 0, now)
        names = self._levels.names
        window = self._hosts.get(host)
        if window is None:
            zeros = dict.fromkeys(names, 0)
            return ThrottleStats(host, 0, 0, 0.0, zeros, dict.fromkeys(names, 0.0), dict(zeros))
        window.advance(self._epoch(now))
        p = rejection_probability(window.total, window.accepts, self._k)
        return ThrottleStats(
            host=host,
            requests=window.total,
            accepts=window.accepts,
            probability=p,
            requests_by_level=dict(zip(names, window.requests, strict=True)),
            drop=dict(zip(names, drop_probabilities(p, window.requests), strict=True)),
            paused={n: max(0.0, t - now) for n, t in zip(names, window.blocked_until, strict=True)},
        )

    def _check(self, host: str, rank: int, now: float) -> None:
        if not isinstance(host, str) or not host:
            raise ValueError(f"host = {host!r}: expected a non-empty string such as 'api:443'")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < len(self._levels):
            raise ValueError(
                f"rank = {rank!r}: expected a level rank from 0 to {len(self._levels) - 1} "
                f"(levels {self._levels.names})"
            )
        if not _is_real(now) or not math.isfinite(now):
            raise ValueError(f"now = {now!r}: expected a finite time in seconds")

    def _epoch(self, now: float) -> int:
        return math.floor(now / self._width)

    def _window_at(self, host: str, now: float) -> tuple[_HostWindow, int]:
        epoch = self._epoch(now)
        window = self._hosts.get(host)
        if window is None:
            if len(self._hosts) >= self._sweep_at:
                self._sweep(epoch, now)
            window = _HostWindow(self._buckets, len(self._levels), epoch)
            self._hosts[host] = window
        return window, window.advance(epoch)

    def _sweep(self, epoch: int, now: float) -> None:
        """Forget hosts with an empty window, so memory follows the hosts in use."""
        for host in [h for h, w in self._hosts.items() if w.is_idle(epoch, now)]:
            del self._hosts[host]
        self._sweep_at = max(_MIN_SWEEP, 2 * len(self._hosts))

    def __repr__(self) -> str:
        return (
            f"<ClientThrottle k={self._k:g} window={self._window:g}s/{self._buckets} buckets, "
            f"{len(self._hosts)} hosts>"
        )


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)
