"""Which level's job a free worker gets next, decided from a broker's counts.

A durable-job broker (SQLite, Redis) keeps its queued and running jobs
itself and must decide, inside its own transaction, which job a reserving
worker receives. `JobGate` makes that decision with the gate's own rules:
it builds one `LaneView` per level from a snapshot of counts and asks
`choice.choose`, the function behind `Scheduler`'s grants, so a broker
never carries a second copy of rules 1, 3 and 4 of docs/concepts.md. The
seats are the global WIP (``capacity``); ``running`` counts the jobs holding
one across all workers, so each level's ``max`` holds globally. FIFO within
a level and flow, and turns between flows, stay the broker's part.

Theory of operation
-------------------
The rules read counts only, except weighted order, which keeps stride
state: each level's pass and the virtual time. A broker stores it between
calls as plain numbers (`JobGate.state`, `JobGate.with_state`) in the same
transaction that moves the job, so a transaction that fails leaves it as
it was. Two calls:

* `next_level` decides and changes nothing;
* `reserve` decides and records the turn; call it on a copy made by
  `with_state` from the stored row, then store `state()` with the reservation.

A snapshot is all the gate sees, so "idle" is defined by turns: a level
*waits* from the first turn that finds a job of it queued, and becomes idle
at the first turn that finds none left (counting the job that turn hands
out as gone). When a level that was idle waits again, its pass restarts at
the virtual time, as `Scheduler._enqueue` does, so it cannot burst ahead
with credit saved up while idle. A level emptied and refilled between two
turns (a cancel, an expiry) is not seen idle; that matters only if its pass
was behind the virtual time. Levels with ``max = 0`` never wait: their jobs
can never start (the `Scheduler` sheds such requests on arrival).

As under `Scheduler`, a turn costs the level a stride only when it is
taken by order: a job handed out under the guarantee costs nothing, nor
does one taken when the previous turn had left nothing waiting (the
`Scheduler`'s "taken at once because nobody was waiting"). So `reserve`
records a turn even when it returns None: it is how the gate learns which
levels wait, and a broker stores the state whenever it changed.

With workers that reserve whenever they have a free slot, every decision
equals the grant a `Scheduler` with the same policy makes;
tests/core/test_jobgate.py checks this in lockstep.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, final

from ..errors import ConfigError
from .choice import choose
from .levels import Level, LevelSet
from .policy import GatePolicy, LevelLimits, Order

__all__ = ["JobGate", "LevelSnapshot"]


@final
@dataclass(frozen=True, slots=True)
class LevelSnapshot:
    """One level's jobs as the broker sees them inside its transaction.

    ``queued``: jobs ready to run now (not scheduled for later, not leased).
    ``running``: jobs holding a seat, across all workers.
    """

    queued: int
    running: int

    def __post_init__(self) -> None:
        for name in ("queued", "running"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(
                    f"LevelSnapshot.{name} = {value!r}: expected a whole number of jobs ≥ 0"
                )


class _View(NamedTuple):
    """A `LaneView` over a snapshot: what `choose` reads, nothing more."""

    level: Level
    waiting: int
    held: int
    min: int
    max: int
    pass_: float


@final
class JobGate:
    """The gate rules for jobs: which level a free worker serves next.

    Not thread-safe, and cheap to copy: make one per policy and, per
    transaction, a copy holding the stored state (`with_state`).
    """

    __slots__ = (
        "_capacity",
        "_limits",
        "_passes",
        "_strides",
        "_vtime",
        "_waits",
        "_weighted",
        "levels",
    )

    def __init__(self, policy: GatePolicy) -> None:
        self.levels: LevelSet = policy.level_set
        self._limits: tuple[LevelLimits, ...] = tuple(policy.resolve(policy.capacity))
        self._strides = tuple(1.0 / lim.weight for lim in self._limits)
        self._weighted = policy.order is Order.WEIGHTED
        #: stride position of each level, and the pass of the last level charged
        self._passes = [0.0] * len(self._limits)
        self._vtime = 0.0
        #: levels that had jobs waiting after the last turn
        self._waits = [False] * len(self._limits)
        self._capacity = policy.capacity

    @property
    def capacity(self) -> int:
        """The seats: jobs that may run at once across all workers (the global WIP)."""
        return self._capacity

    def limits(self, level: Level | str | int) -> LevelLimits:
        """The level's knobs resolved for ``capacity``."""
        return self._limits[self.levels.resolve(level).rank]

    # -- the state a broker stores -------------------------------------------------

    def state(self) -> tuple[float, ...]:
        """The stride state as plain numbers, to store beside the jobs.

        Layout, for n levels: the virtual time, the n passes, then n flags
        (1.0 for a level waiting after the last turn, else 0.0).
        """
        return (self._vtime, *self._passes, *(1.0 if w else 0.0 for w in self._waits))

    def with_state(self, state: Sequence[float]) -> JobGate:
        """A copy of this gate holding ``state`` (from `state`); this gate is unchanged."""
        n = len(self._limits)
        if len(state) != 2 * n + 1:
            raise ConfigError(
                f"JobGate state has {len(state)} numbers: expected {2 * n + 1} "
                f"(the virtual time, {n} passes and {n} flags), as state() returns"
            )
        for i, value in enumerate(state):
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"JobGate state[{i}] = {value!r}: expected a finite number")
        flags = state[n + 1 :]
        for i, flag in enumerate(flags):
            if flag not in (0, 1):
                raise ConfigError(f"JobGate state[{n + 1 + i}] = {flag!r}: expected 0.0 or 1.0")
        copy = object.__new__(JobGate)
        copy.levels = self.levels
        copy._limits = self._limits
        copy._strides = self._strides
        copy._weighted = self._weighted
        copy._capacity = self._capacity
        copy._vtime = float(state[0])
        copy._passes = [float(p) for p in state[1 : n + 1]]
        copy._waits = [flag == 1 for flag in flags]
        return copy

    # -- decisions -----------------------------------------------------------------

    def next_level(self, snapshot: Sequence[LevelSnapshot]) -> int | None:
        """The rank whose next job a free worker gets, or None if no job may start now.

        None when nothing is queued, every queued level is at its ``max``,
        the free seats are kept for more important levels' unmet ``min``, or
        all ``capacity`` seats are taken. Changes nothing: see `reserve`.
        """
        return self._decide(snapshot, self._restarted_passes(snapshot))[0]

    def reserve(self, snapshot: Sequence[LevelSnapshot]) -> int | None:
        """`next_level`, and record the turn: the worker reserves a job of that rank.

        Advances the stride state (a level's pass when it wins a turn by
        weighted order; which levels wait, even when the answer is None).
        Call it on a `with_state` copy and store `state()` in the
        transaction that moves the job, so a failed transaction leaves the
        stored state unchanged.
        """
        passes = self._restarted_passes(snapshot)
        rank, by_order = self._decide(snapshot, passes)
        if rank is not None and by_order and any(self._waits):  # else taken at once: free
            self._vtime = passes[rank]
            passes[rank] += self._strides[rank]
        self._passes = passes
        for i, (level, lim) in enumerate(zip(snapshot, self._limits, strict=True)):
            left = level.queued - (i == rank)
            self._waits[i] = left > 0 and lim.max > 0
        return rank

    def _restarted_passes(self, snapshot: Sequence[LevelSnapshot]) -> list[float]:
        """The passes, with each level that waits from this turn on restarted at vtime."""
        n = len(self._limits)
        if len(snapshot) != n:
            raise ConfigError(
                f"snapshot has {len(snapshot)} levels: expected {n}, one LevelSnapshot per "
                f"level of {list(self.levels.names)}, most important first"
            )
        passes = list(self._passes)
        if self._weighted:
            vtime = self._vtime
            for i, level in enumerate(snapshot):
                if level.queued and not self._waits[i] and passes[i] < vtime:
                    passes[i] = vtime
        return passes

    def _decide(
        self, snapshot: Sequence[LevelSnapshot], passes: list[float]
    ) -> tuple[int | None, bool]:
        """The rank chosen, and whether weighted order chose it (so the turn costs a stride)."""
        views: list[_View] = []
        reserves: list[int] = []
        unmet = 0
        running = 0
        for level, lim, got, pass_ in zip(self.levels, self._limits, snapshot, passes, strict=True):
            views.append(_View(level, got.queued, got.running, lim.min, lim.max, pass_))
            reserves.append(unmet)
            if got.running < lim.min:
                unmet += lim.min - got.running
            running += got.running
        view, by_guarantee = choose(views, self._capacity - running, reserves, self._weighted)
        if view is None:
            return None, False
        return view.level.rank, self._weighted and not by_guarantee

    def __repr__(self) -> str:
        order = "weighted" if self._weighted else "strict"
        return f"<JobGate {len(self._limits)} levels, {self._capacity} seats, {order}>"
