"""A discrete-event simulation of one gate in virtual time.

Why a simulator: a policy's knobs (mins, maxes, max_waits, queue bounds)
interact, and the only honest way to see what they do under a given load is
to run the real `Scheduler` against it. This engine is one more sans-I/O
adapter: it feeds the scheduler arrivals, completions and timer firings at
virtual times and records what the scheduler answered. It never estimates a
figure analytically.

Theory of operation
-------------------
`generate_arrivals` draws the whole open-loop load up front: per level, a
Poisson process (exponential gaps at ``rate``), a flow per request (uniform
or Zipf over ``flows`` keys) and a service time, each level from its own
`random.Random` seeded with ``"{seed}/{level}"`` so adding a level leaves
the others' draws unchanged. Drawing up front is what lets the policy run
and the FIFO run see *identical* requests.

`run` is the event loop: a heap of ``(time, seq, kind, payload)``, where
``seq`` breaks ties in push order so runs are deterministic. It holds the
next arrival (pushed lazily, one at a time), one completion per granted
request (``now + service``, then `Scheduler.release`), and the expiry timer:
after every step the loop reads `Scheduler.next_deadline` and, if it moved,
arms a timer event there, as a real adapter arms its one timer; a superseded
timer event is ignored when it pops. After the last arrival the loop keeps
going until every request has been served or shed, so counts balance. A
request that could wait forever for a seat it may never take (``max_wait =
inf``, the seats reserved for more important levels) is shed with reason
``shutdown`` when the drained gate is closed, and so is reported, not lost.

The FIFO baseline (`fifo_policy`) is the same gate with one level: same
capacity, total queue = the gate's ``queue``, ``max_wait`` = the largest
finite ``max_wait`` among the policy's levels (so FIFO sheds no sooner than
the most patient level would), flows ignored (pure arrival order).

Adaptive capacity and contention (docs/adaptive.md)
---------------------------------------------------
With a `Contention` service model a granted request's service time is
stretched by the number in flight just after its grant. With an adaptive
capacity each completion is reported to an `AdaptiveCapacity` (its RTT is
the time it held its seat), which resizes the scheduler when the limit
moves; the engine records every change of the limit. The FIFO baseline gets
the *same* adaptive capacity, a controller of its own built from the same
spec and fed its own completions, so the comparison isolates the policy:
both runs face the same service with the same kind of limit.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import cast, final

from ..adaptive.capacity import AdaptiveCapacity
from ..adaptive.spec import AdaptiveSpec
from ..core.levels import LevelSet
from ..core.policy import GatePolicy, LevelPolicy
from ..core.scheduler import Scheduler
from ..core.tickets import Reason, Ticket, TicketState
from .contention import Contention
from .load import LevelLoad, LoadSpec
from .report import SHED_REASONS, LevelFigures, LimitFigures, Report, RunFigures, quantile

__all__ = [
    "FIFO_LEVELS",
    "Arrival",
    "ProgressFn",
    "fifo_policy",
    "generate_arrivals",
    "run",
    "simulate",
]

#: Called now and then with the run's name and the fraction of virtual time done.
ProgressFn = Callable[[str, float], None]

#: The single level of the FIFO baseline.
FIFO_LEVELS = LevelSet(["fifo"])

_ARRIVE, _DONE, _TIMER = 0, 1, 2
_GRANTED = TicketState.GRANTED
_PROGRESS_EVERY = 4096


@final
@dataclass(frozen=True, slots=True)
class Arrival:
    """One request of the open-loop load, identical in every run."""

    #: virtual seconds since the start
    time: float
    level: str
    #: flow key within the level, 0 to ``flows - 1``
    flow: int
    #: seconds it holds its seat once granted
    service: float


def generate_arrivals(spec: LoadSpec) -> list[Arrival]:
    """Every arrival of the load in time order (ties: more important level first)."""
    streams = [_level_arrivals(load, spec.seed, spec.end) for load in spec.levels]
    return list(heapq.merge(*streams, key=lambda a: a.time))


def _level_arrivals(load: LevelLoad, seed: int, end: float) -> Iterator[Arrival]:
    rng = random.Random(f"{seed}/{load.level}")
    weights = [1.0 / (k**load.skew) for k in range(1, load.flows + 1)]
    cumulative = list(itertools.accumulate(weights))
    total = cumulative[-1]
    expovariate, sample, uniform = rng.expovariate, load.service.sample, rng.random
    t = expovariate(load.rate)
    while t < end:
        flow = (
            0
            if load.flows == 1
            else min(bisect_left(cumulative, uniform() * total), load.flows - 1)
        )
        yield Arrival(t, load.level, flow, sample(rng))
        t += expovariate(load.rate)


def fifo_policy(gate: GatePolicy) -> GatePolicy:
    """Plain FIFO admission at the gate's capacity: the baseline a policy is judged against."""
    waits = [lim.max_wait for lim in gate.resolve(gate.capacity) if math.isfinite(lim.max_wait)]
    return GatePolicy(
        capacity=gate.capacity,
        levels={"fifo": LevelPolicy(max_wait=max(waits) if waits else math.inf)},
        queue=gate.queue,
        level_set=FIFO_LEVELS,
        name=f"{gate.name}-fifo",
    )


def simulate(
    gate: GatePolicy,
    spec: LoadSpec,
    progress: ProgressFn | None = None,
    *,
    adaptive: AdaptiveSpec | None = None,
) -> Report:
    """Run the load through ``gate`` and through its FIFO baseline; same arrivals in both.

    ``adaptive`` is the gate's adaptive capacity, if it has one (the gate
    then starts at its ``initial``); ``spec.capacity``, the ``[simulate]``
    override, replaces both the gate's capacity and ``adaptive``. Raises
    `ConfigError` if a whole-number override does not fit the gate's mins.
    """
    if isinstance(spec.capacity, AdaptiveSpec):
        adaptive = spec.capacity
    elif spec.capacity is not None:
        gate, adaptive = replace(gate, capacity=spec.capacity), None
    if adaptive is not None:
        gate = adaptive.gate(gate)
    arrivals = generate_arrivals(spec)
    baseline = fifo_policy(gate)
    work = math.fsum(a.service for a in arrivals if a.time >= spec.warmup)
    model = spec.service_model
    return Report(
        spec=spec,
        policy=run(gate, arrivals, spec, "policy", progress, adaptive=adaptive),
        fifo=run(baseline, arrivals, spec, "fifo", progress, pooled=True, adaptive=adaptive),
        fifo_max_wait=baseline.policy_for("fifo").max_wait,
        offered_load=work / spec.duration / (gate.capacity if model is None else model.knee),
        adaptive=adaptive,
        service_model=model,
    )


@final
class _Tally:
    """Mutable counts of one level during a run (frozen into `LevelFigures` at the end)."""

    __slots__ = ("offered", "shed", "waits")

    def __init__(self) -> None:
        self.offered = 0
        self.shed: dict[Reason, int] = dict.fromkeys(SHED_REASONS, 0)
        self.waits: list[float] = []


def run(
    gate: GatePolicy,
    arrivals: Sequence[Arrival],
    spec: LoadSpec,
    name: str,
    progress: ProgressFn | None = None,
    *,
    pooled: bool = False,
    adaptive: AdaptiveSpec | None = None,
) -> RunFigures:
    """Feed ``arrivals`` to a fresh `Scheduler` for ``gate`` and count what happens.

    Each arrival keeps its own level and flow; ``pooled`` puts every one at
    the gate's first level instead, with no flow (the FIFO baseline). Figures
    are always reported by the arrival's own level. With ``adaptive``, a new
    controller built from it drives the gate's capacity.
    """
    sched = Scheduler(gate)
    tallies = {load.level: _Tally() for load in spec.levels}
    tick = _progress(name, spec, progress)
    loop = _Loop(sched, spec.warmup, tallies, pooled)
    loop.model = spec.service_model
    if adaptive is not None:
        loop.adaptive = AdaptiveCapacity(sched, adaptive.build())
        loop.limits = [(0.0, sched.capacity)]
    loop.run(arrivals, tick)
    events, drained_at = loop.events, loop.last
    limit = None
    if loop.limits:
        limit = LimitFigures.from_steps(loop.limits, spec.warmup, spec.end)
    rtts = sorted(loop.rtts)
    levels = tuple(_figures(level, [t], spec.duration) for level, t in tallies.items())
    return RunFigures(
        name=name,
        gate=gate.name,
        capacity=gate.capacity,
        queue=gate.queue,
        levels=levels,
        total=_figures("total", list(tallies.values()), spec.duration),
        events=events,
        drained_at=drained_at,
        limit=limit,
        rtt_p50=quantile(rtts, 0.50),
        rtt_p99=quantile(rtts, 0.99),
    )


def _progress(name: str, spec: LoadSpec, progress: ProgressFn | None) -> Callable[[float], None]:
    if progress is None:
        return lambda now: None
    return lambda now: progress(name, min(now / spec.end, 1.0))


@final
class _Loop:
    """One run's event loop and the state it keeps besides the scheduler's own."""

    __slots__ = (
        "adaptive",
        "events",
        "heap",
        "last",
        "level_of",
        "limits",
        "model",
        "pooled",
        "rtts",
        "sched",
        "seq",
        "tallies",
        "timer_at",
        "warmup",
    )

    def __init__(
        self, sched: Scheduler, warmup: float, tallies: dict[str, _Tally], pooled: bool
    ) -> None:
        self.sched = sched
        self.warmup = warmup
        self.tallies = tallies
        self.pooled = pooled
        self.level_of = {name: sched.levels[0 if pooled else name] for name in tallies}
        self.heap: list[tuple[float, int, int, object]] = []
        self.seq = itertools.count()
        #: when the one expiry timer is armed for, like an adapter's ``call_at`` handle
        self.timer_at: float | None = None
        self.events = 0
        self.last = 0.0
        #: drives the capacity from completions, when it is adaptive
        self.adaptive: AdaptiveCapacity | None = None
        #: (time, capacity from then on) at every change, when it is adaptive
        self.limits: list[tuple[float, int]] = []
        #: stretches service times with the number in flight, when given
        self.model: Contention | None = None
        #: seconds each measured request held its seat, kept under a service model
        self.rtts: list[float] = []

    def run(self, arrivals: Sequence[Arrival], report: Callable[[float], None]) -> None:
        """Handle every event until none is left; `events` and `last` say how many and when."""
        sched, heap = self.sched, self.heap
        pending = iter(arrivals)
        following = next(pending, None)
        if following is not None:
            self.push(following.time, _ARRIVE, following)
        while heap:
            now, _, kind, payload = heapq.heappop(heap)
            if kind == _ARRIVE:
                changed = self.arrive(cast(Arrival, payload), now)
                following = next(pending, None)
                if following is not None:
                    self.push(following.time, _ARRIVE, following)
            elif kind == _DONE:
                if self.adaptive is None:
                    changed = sched.release(cast(Ticket, payload), now)
                else:
                    changed = self.complete(cast(Ticket, payload), now)
            elif now == self.timer_at:
                self.timer_at = None
                changed = sched.expire(now)
            else:
                continue  # superseded by an earlier timer, which already re-armed
            self.settle(changed, now)
            if not self.events % _PROGRESS_EVERY:
                report(now)
        if sched.waiting:  # stranded: nothing left could ever grant or expire them
            self.settle(sched.close(self.last), self.last)
        report(math.inf)

    def complete(self, ticket: Ticket, now: float) -> list[Ticket]:
        """Release through the adaptive capacity, and note the limit if it moved."""
        adaptive = cast(AdaptiveCapacity, self.adaptive)
        changed = adaptive.release(ticket, now)
        if adaptive.limit != self.limits[-1][1]:
            self.limits.append((now, adaptive.limit))
        return changed

    def push(self, time: float, kind: int, payload: object) -> None:
        heapq.heappush(self.heap, (time, next(self.seq), kind, payload))

    def arrive(self, arrival: Arrival, now: float) -> list[Ticket]:
        if arrival.time >= self.warmup:
            self.tallies[arrival.level].offered += 1
        flow = None if self.pooled else arrival.flow
        ticket = self.sched.ticket(self.level_of[arrival.level], flow, arrival)
        return self.sched.submit(ticket, now)

    def settle(self, changed: list[Ticket], now: float) -> None:
        """Record what one scheduler call decided, schedule completions, re-arm the timer."""
        self.events += 1
        self.last = now
        warmup, tallies = self.warmup, self.tallies
        model = self.model
        slowdown = 1.0 if model is None else model.slowdown(self.sched.in_use)
        for ticket in changed:
            arrival = cast(Arrival, ticket.data)
            if ticket.state is _GRANTED:
                self.push(now + arrival.service * slowdown, _DONE, ticket)
                if arrival.time >= warmup:
                    tallies[arrival.level].waits.append(now - arrival.time)
                    if model is not None:
                        self.rtts.append(arrival.service * slowdown)
            elif arrival.time >= warmup and ticket.reason is not None:
                tallies[arrival.level].shed[ticket.reason] += 1
        # One timer: re-armed only when the next deadline is sooner than the armed
        # one; a timer that fires early finds nothing to shed and re-arms.
        deadline = self.sched.next_deadline()
        if deadline is not None and (self.timer_at is None or deadline < self.timer_at):
            self.timer_at = deadline
            self.push(deadline, _TIMER, None)


def _figures(level: str, tallies: list[_Tally], duration: float) -> LevelFigures:
    waits = sorted(w for tally in tallies for w in tally.waits)
    shed = dict.fromkeys(SHED_REASONS, 0)
    for tally in tallies:
        for reason, n in tally.shed.items():
            shed[reason] += n
    return LevelFigures(
        level=level,
        offered=sum(tally.offered for tally in tallies),
        served=len(waits),
        shed=shed,
        p50=quantile(waits, 0.50),
        p95=quantile(waits, 0.95),
        p99=quantile(waits, 0.99),
        max=waits[-1] if waits else None,
        goodput=len(waits) / duration,
    )
