"""Every stored broker behaves exactly like the memory broker, on random programs.

Hypothesis writes programs of enqueues (levels, flows, delays, deadlines,
idempotency keys, retries), reservations by two workers (some dedicated to
levels), outcomes of every kind, heartbeats, cancels, requeues and clock
moves. Each program runs on a fresh store of the broker under test and on
a `MemoryBroker` (the reference) side by side with one clock; every answer
must be equal, and so must every job and the stats at the end.
"""

from __future__ import annotations

import asyncio
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prioritize.core.policy import GatePolicy, LevelPolicy
from prioritize.core.retry import RetryPolicy
from prioritize.jobs import Broker, Job, MemoryBroker, Outcome, OutcomeKind
from tests.jobs.conftest import BrokerFactory

LEVELS = ["critical", "high", "normal", "low", "bulk"]
GATES = [
    GatePolicy(capacity=4, levels={"critical": LevelPolicy(min=1), "low": LevelPolicy(max=2)}),
    GatePolicy(
        capacity=3,
        order="weighted",  # type: ignore[arg-type]
        levels={"critical": LevelPolicy(weight=3), "normal": LevelPolicy(weight=2, max=2)},
    ),
]

enqueues = st.tuples(
    st.just("enqueue"),
    st.sampled_from(LEVELS),
    st.sampled_from(["", "a", "b"]),
    st.one_of(st.none(), st.integers(0, 20)),  # delay
    st.one_of(st.none(), st.integers(1, 30)),  # deadline
    st.one_of(st.none(), st.sampled_from(["k1", "k2"])),
    st.integers(0, 2),  # retries
)
reserves = st.tuples(
    st.just("reserve"),
    st.sampled_from(["w1", "w2"]),
    st.integers(0, 3),
    st.one_of(st.none(), st.sets(st.sampled_from(LEVELS), min_size=1, max_size=2)),
    st.sampled_from([5, 20]),
    st.integers(0, 2),  # outcomes to give back with it
)
outcomes = st.tuples(
    st.just("finish"),
    st.sampled_from(["w1", "w2"]),
    st.integers(0, 5),  # which held job
    st.sampled_from(list(OutcomeKind)),
    st.one_of(st.none(), st.integers(0, 10)),  # retry after
)
steps = st.one_of(
    enqueues,
    reserves,
    outcomes,
    st.tuples(st.just("heartbeat"), st.sampled_from(["w1", "w2"])),
    st.tuples(st.just("cancel"), st.integers(0, 30)),
    st.tuples(st.just("advance"), st.integers(0, 15)),
    st.tuples(st.just("requeue_dead")),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(gate=st.sampled_from(GATES), program=st.lists(steps, min_size=5, max_size=40))
def test_a_stored_broker_answers_like_the_memory_broker(
    stored_brokers: BrokerFactory, gate: GatePolicy, program: list[tuple[object, ...]]
) -> None:
    factory = stored_brokers.fresh()
    asyncio.run(_lockstep(factory, gate, program))


async def _lockstep(
    factory: BrokerFactory, gate: GatePolicy, program: list[tuple[object, ...]]
) -> None:
    clock = factory.clock
    reference = MemoryBroker(clock=clock)
    reference.configure(gate)
    ids = (f"j{n:04d}" for n in itertools.count())
    sent: list[str] = []
    held: dict[str, list[Job]] = {"w1": [], "w2": []}
    async with factory.open(gate) as broker:
        pair: tuple[Broker, Broker] = (reference, broker)
        for step in program:
            kind = step[0]
            if kind == "enqueue":
                _, level, flow, delay, deadline, key, retries = step
                new = Job(
                    id=next(ids), task="t", payload=b"[]", level=str(level), flow=str(flow),
                    run_at=None if delay is None else clock.now + int(delay),  # type: ignore[call-overload]
                    deadline=None if deadline is None else clock.now + int(deadline),  # type: ignore[call-overload]
                    idempotency_key=key, retry=RetryPolicy(retries=int(retries)),  # type: ignore[call-overload]
                )  # fmt: skip
                got = [await b.enqueue(new) for b in pair]
                assert got[0] == got[1], step
                sent.append(new.id)
            elif kind == "reserve":
                _, worker, limit, levels, lease, n_back = step
                back = _outcomes(held[str(worker)], int(n_back), OutcomeKind.SUCCEEDED, None)  # type: ignore[call-overload]
                got = [
                    await b.reserve(
                        str(worker), int(limit), lease=float(lease), levels=levels, finished=back
                    )  # type: ignore[arg-type, call-overload]
                    for b in pair
                ]
                assert got[0] == got[1], step
                held[str(worker)] = held[str(worker)][len(back) :] + got[0]
            elif kind == "finish":
                _, worker, index, outcome_kind, after = step
                jobs = held[str(worker)]
                if not jobs:
                    continue
                chosen = jobs[int(index) % len(jobs)]  # type: ignore[call-overload]
                retry_at = None if after is None else clock.now + int(after)  # type: ignore[call-overload]
                outcome = _outcome(chosen, outcome_kind, retry_at)  # type: ignore[arg-type]
                got_applied = [await b.finish(str(worker), [outcome]) for b in pair]
                assert got_applied[0] == got_applied[1], step
                jobs.remove(chosen)
            elif kind == "heartbeat":
                worker = str(step[1])
                job_ids = [j.id for j in held[worker]]
                lost = [await b.heartbeat(worker, job_ids, 20) for b in pair]
                assert lost[0] == lost[1], step
            elif kind == "cancel":
                if not sent:
                    continue
                target = sent[int(step[1]) % len(sent)]  # type: ignore[call-overload]
                got_cancel = [await b.cancel(target) for b in pair]
                assert got_cancel[0] == got_cancel[1], step
            elif kind == "advance":
                clock.advance(int(step[1]))  # type: ignore[call-overload]
            else:
                requeued = [await b.requeue_dead() for b in pair]
                assert requeued[0] == requeued[1], step
        for job_id in sent:
            assert await reference.get(job_id) == await broker.get(job_id), job_id
        assert await reference.stats() == await broker.stats()
        assert await reference.dead() == await broker.dead()


def _outcomes(jobs: list[Job], n: int, kind: OutcomeKind, retry_at: float | None) -> list[Outcome]:
    return [_outcome(j, kind, retry_at) for j in jobs[:n]]


def _outcome(job: Job, kind: OutcomeKind, retry_at: float | None) -> Outcome:
    if kind is OutcomeKind.SUCCEEDED:
        return Outcome(job.id, job.attempts, kind, result=b'"ok"')
    if kind is OutcomeKind.FAILED:
        return Outcome(job.id, job.attempts, kind, error="E: x", traceback="tb", retry_at=retry_at)
    return Outcome(job.id, job.attempts, kind)
