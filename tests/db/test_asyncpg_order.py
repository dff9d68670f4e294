"""The asyncpg pool hands connections out in exactly the order the scheduler decides.

Hypothesis draws a small policy and a queue of checkouts (levels and
flows) arriving while every connection is taken; the pool runs them
against PostgreSQL while a plain `Scheduler`, fed the same arrivals and
releases, says who should get each connection given back.
"""

from __future__ import annotations

import asyncio
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prioritize import DEFAULT_LEVELS, GatePolicy, LevelPolicy, Scheduler, Ticket, TicketState
from prioritize.db.asyncpg import create_pool
from tests.db.helpers import until

FOREVER = math.inf


@st.composite
def policies(draw: st.DrawFn) -> GatePolicy:
    capacity = draw(st.integers(1, 3))
    return GatePolicy(
        capacity=capacity,
        levels={
            "critical": LevelPolicy(min=draw(st.integers(0, capacity)), max_wait=FOREVER),
            "high": LevelPolicy(max_wait=FOREVER),
            "normal": LevelPolicy(max_wait=FOREVER),
            "low": LevelPolicy(max_wait=FOREVER),
            "bulk": LevelPolicy(max=draw(st.integers(1, capacity)), max_wait=FOREVER),
        },
        name="db",
    )


ARRIVALS = st.lists(
    st.tuples(st.sampled_from(DEFAULT_LEVELS.names), st.sampled_from(["a", "b"])),
    min_size=1,
    max_size=7,
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(policy=policies(), arrivals=ARRIVALS)
def test_waiters_get_connections_in_the_schedulers_order(
    postgres_dsn: str, policy: GatePolicy, arrivals: list[tuple[str, str]]
) -> None:
    model = Scheduler(policy)
    expected: list[int] = []
    #: how many waiters each release of the oldest holder lets in, by the model
    grants: list[int] = []
    held: list[Ticket] = []  # holding a seat, oldest first
    for _ in range(policy.capacity):
        ticket = model.ticket("critical")
        model.submit(ticket, 0.0)
        held.append(ticket)
    for i, (name, flow) in enumerate(arrivals):
        model.submit(model.ticket(name, flow, data=i), 0.0)
    while held:
        changed = model.release(held.pop(0), 0.0)
        assert all(t.state is TicketState.GRANTED for t in changed)
        expected += [t.data for t in changed]  # type: ignore[misc]
        grants.append(len(changed))
        held += changed

    async def body() -> list[int]:
        order: list[int] = []
        events = [asyncio.Event() for _ in arrivals]
        pool = await create_pool(postgres_dsn, policy=policy, min_size=policy.capacity)
        tasks: list[asyncio.Task[None]] = []

        async def checkout(i: int, name: str, flow: str) -> None:
            async with pool.acquire(name, flow):
                order.append(i)
                await events[i].wait()

        try:
            holders: list[object] = [await pool.acquire("critical") for _ in range(policy.capacity)]
            for i, (name, flow) in enumerate(arrivals):
                tasks.append(asyncio.create_task(checkout(i, name, flow)))

                async def queued(n: int = i + 1) -> bool:
                    return pool.stats().waiting == n

                await until(queued, f"{i + 1} checkouts queued")
            for granted in grants:
                before = len(order)
                holder = holders.pop(0)
                if isinstance(holder, int):
                    events[holder].set()  # that checkout's block ends: its connection goes back
                else:
                    await pool.release(holder)

                async def served(n: int = before + granted) -> bool:
                    return len(order) == n

                await until(served, f"{granted} waiter(s) served by a release, order {order}")
                holders += order[before:]
            # every seat comes back; whoever the model never serves (kept out by
            # reservations) still waits here

            async def drained() -> bool:
                return (pool.stats().in_use, pool.stats().waiting) == (0, model.waiting)

            await until(drained, "every seat given back")
            await asyncio.gather(*(task for task in tasks if task.done()))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            pool.terminate()
        return order

    assert asyncio.run(body()) == expected
