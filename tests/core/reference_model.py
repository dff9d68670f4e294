"""A deliberately naive scheduler: plain lists, every rule written the obvious way.

The stateful test runs it in lockstep with `prioritize.core.Scheduler` and
requires identical decisions, so the fast scheduler's lazy deques, cached
reservations and fast paths are checked against the rules as stated.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass, field

from prioritize.core import GatePolicy, Order, Reason

GRANTED, WAITING, SHED, RELEASED, CANCELLED, NEW = (
    "granted",
    "waiting",
    "shed",
    "released",
    "cancelled",
    "new",
)


@dataclass(eq=False)
class ModelTicket:
    key: int
    rank: int
    flow: Hashable | None
    wait: bool
    state: str = NEW
    reason: Reason | None = None
    deadline: float = 0.0


@dataclass
class Model:
    policy: GatePolicy
    capacity: int = 0
    held: list[int] = field(default_factory=list)
    queues: list[list[ModelTicket]] = field(default_factory=list)
    rings: list[list[Hashable | None]] = field(default_factory=list)
    passes: list[float] = field(default_factory=list)
    vtime: float = 0.0
    closed: bool = False
    now: float = -math.inf

    def __post_init__(self) -> None:
        n = len(self.policy.level_set)
        self.held = [0] * n
        self.queues = [[] for _ in range(n)]
        self.rings = [[] for _ in range(n)]
        self.passes = [0.0] * n
        self.resize_to(self.policy.capacity)

    # -- rules ----------------------------------------------------------------------

    def resize_to(self, capacity: int) -> None:
        self.capacity = capacity
        self.limits = self.policy.resolve(capacity)

    def free(self) -> int:
        return self.capacity - sum(self.held)

    def unmet_above(self, rank: int) -> int:
        return sum(max(0, self.limits[j].min - self.held[j]) for j in range(rank))

    def eligible(self, rank: int) -> bool:
        return self.held[rank] < self.limits[rank].max and self.free() - 1 >= self.unmet_above(rank)

    def waiting(self) -> int:
        return sum(len(q) for q in self.queues)

    def choose(self) -> int | None:
        ranks = range(len(self.queues))
        eligible = [r for r in ranks if self.queues[r] and self.eligible(r)]
        if not eligible:
            return None
        below_min = [
            r
            for r in ranks
            if self.queues[r] and self.held[r] < min(self.limits[r].min, self.limits[r].max)
        ]
        if below_min:
            return below_min[0]
        if self.policy.order is Order.STRICT:
            return eligible[0]
        best = min(eligible, key=lambda r: (self.passes[r], r))
        self.vtime = self.passes[best]
        self.passes[best] += 1.0 / self.limits[best].weight
        return best

    # -- queue mechanics ------------------------------------------------------------

    def enqueue(self, t: ModelTicket) -> None:
        queue = self.queues[t.rank]
        if not queue and self.policy.order is Order.WEIGHTED:
            self.passes[t.rank] = max(self.passes[t.rank], self.vtime)
        if not any(o.flow == t.flow for o in queue):
            self.rings[t.rank].append(t.flow)
        queue.append(t)
        t.state = WAITING
        t.deadline = self.now + self.limits[t.rank].max_wait

    def unqueue(self, t: ModelTicket) -> None:
        self.queues[t.rank].remove(t)
        if not any(o.flow == t.flow for o in self.queues[t.rank]):
            self.rings[t.rank].remove(t.flow)

    def pop_next(self, rank: int) -> ModelTicket:
        ring = self.rings[rank]
        flow = ring[0]
        t = next(o for o in self.queues[rank] if o.flow == flow)
        self.queues[rank].remove(t)
        ring.pop(0)
        if any(o.flow == flow for o in self.queues[rank]):
            ring.append(flow)
        return t

    def shed(self, t: ModelTicket, reason: Reason) -> None:
        t.state = SHED
        t.reason = reason

    def dispatch(self, changed: list[ModelTicket]) -> None:
        while self.waiting() and sum(self.held) < self.capacity:
            rank = self.choose()
            if rank is None:
                return
            t = self.pop_next(rank)
            if t.deadline < self.now:
                self.shed(t, Reason.TIMEOUT)
            else:
                t.state = GRANTED
                self.held[rank] += 1
            changed.append(t)

    # -- the public operations ------------------------------------------------------

    def tick(self, now: float) -> None:
        self.now = max(self.now, now)

    def submit(self, t: ModelTicket, now: float) -> list[ModelTicket]:
        self.tick(now)
        if self.closed:
            self.shed(t, Reason.SHUTDOWN)
            return [t]
        if self.free() > 0 and self.eligible(t.rank):
            if not self.waiting():
                t.state = GRANTED
                self.held[t.rank] += 1
                return [t]
            changed: list[ModelTicket] = []
            self.enqueue(t)
            self.dispatch(changed)
            if t.state == GRANTED:
                return changed
            self.unqueue(t)
            return changed + self.queue_or_shed(t)
        return self.queue_or_shed(t)

    def queue_or_shed(self, t: ModelTicket) -> list[ModelTicket]:
        lim = self.limits[t.rank]
        if not t.wait or lim.max_wait <= 0 or lim.max == 0:
            self.shed(t, Reason.LIMIT)
            return [t]
        if len(self.queues[t.rank]) >= lim.queue:
            self.shed(t, Reason.QUEUE_FULL)
            return [t]
        if self.waiting() >= self.policy.queue:
            victims = [r for r in range(len(self.queues)) if self.queues[r]]
            if not victims or victims[-1] <= t.rank:
                self.shed(t, Reason.QUEUE_FULL)
                return [t]
            victim = self.queues[victims[-1]][-1]
            self.unqueue(victim)
            self.shed(victim, Reason.EVICTED)
            self.enqueue(t)
            return [victim]
        self.enqueue(t)
        return []

    def release(self, t: ModelTicket, now: float) -> list[ModelTicket]:
        self.tick(now)
        t.state = RELEASED
        self.held[t.rank] -= 1
        changed: list[ModelTicket] = []
        self.dispatch(changed)
        return changed

    def take(self, now: float) -> tuple[ModelTicket | None, list[ModelTicket]]:
        """A queue's pull: the next ticket by order alone, no seat; overdue ones shed."""
        self.tick(now)
        shed: list[ModelTicket] = []
        while True:
            ranks = [
                r for r in range(len(self.queues)) if self.queues[r] and self.limits[r].max > 0
            ]
            if not ranks:
                return None, shed
            if self.policy.order is Order.STRICT:
                rank = ranks[0]
            else:
                rank = min(ranks, key=lambda r: (self.passes[r], r))
                self.vtime = self.passes[rank]
                self.passes[rank] += 1.0 / self.limits[rank].weight
            t = self.pop_next(rank)
            if t.deadline < self.now:
                self.shed(t, Reason.TIMEOUT)
                shed.append(t)
                continue
            t.state = RELEASED
            return t, shed

    def cancel(self, t: ModelTicket, now: float) -> list[ModelTicket]:
        if t.state == GRANTED:
            return self.release(t, now)
        if t.state == WAITING:
            self.unqueue(t)
            t.state = CANCELLED
        return []

    def expire(self, now: float) -> list[ModelTicket]:
        self.tick(now)
        out = []
        for rank, queue in enumerate(self.queues):
            if self.limits[rank].max_wait == math.inf:
                continue
            while queue and queue[0].deadline <= self.now:
                t = queue[0]
                self.unqueue(t)
                self.shed(t, Reason.TIMEOUT)
                out.append(t)
        return out

    def resize(self, capacity: int, now: float) -> list[ModelTicket]:
        self.tick(now)
        self.resize_to(capacity)
        changed: list[ModelTicket] = []
        self.dispatch(changed)
        return changed

    def close(self, now: float) -> list[ModelTicket]:
        self.tick(now)
        self.closed = True
        out = []
        for queue in self.queues:
            for t in list(queue):
                self.unqueue(t)
                self.shed(t, Reason.SHUTDOWN)
                out.append(t)
        return out

    def next_deadline(self) -> float | None:
        deadlines = [
            q[0].deadline
            for rank, q in enumerate(self.queues)
            if q and self.limits[rank].max_wait != math.inf
        ]
        return min(deadlines) if deadlines else None
