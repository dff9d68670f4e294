"""lua/gate.lua decides as JobGate does: the same rank and the same stride state, every turn.

The Redis broker reserves inside one Lua script, so it carries a port of
`JobGate.reserve` (and of `choose`, which that calls). This test runs the
port and `JobGate` in lockstep on random policies, starting states and
snapshots, and requires identical decisions and identical `JobGate.state`
numbers (compared exactly, as stored: the Lua state goes through its text
form, as it does in the broker's hash). The rules reach the Lua as the
broker sends them (`gate_args`), so the encoding is checked too.

Snapshots come in two kinds, mixed: arbitrary counts (edge cases no broker
would reach in order) and drains, where each turn starts the job it chose
(queued - 1, running + 1), as a reservation batch does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis
from redis.commands.core import Script

from prioritize.core.jobgate import JobGate, LevelSnapshot
from prioritize.core.levels import LevelSet
from prioritize.core.policy import GatePolicy, LevelPolicy, Order
from prioritize.jobs.brokers._redis_scripts import gate_args, lua
from tests.core.test_scheduler_stateful import gate_policies

#: the test's entry to gate.lua: ARGV = n, the gate's rules, a state, then
#: steps as n queued and n running counts (a drain step: queued = -1).
#: Replies per step: the rank (-1 for none), then the state as text.
ENTRY = """
local n = tonumber(ARGV[1])
local g, at = gate_rules(n, 2)
local state = {}
for i = 1, 2 * n + 1 do
  state[i] = ARGV[at + i - 1]
end
gate_set_state(g, state)
at = at + 2 * n + 1
local queued, running, out = {}, {}, {}
while at <= #ARGV do
  if ARGV[at] ~= '-1' then
    for i = 1, n do
      queued[i] = tonumber(ARGV[at + i - 1])
      running[i] = tonumber(ARGV[at + n + i - 1])
    end
  end
  at = at + 2 * n
  local rank = gate_reserve(g, queued, running)
  if rank ~= nil then
    queued[rank] = queued[rank] - 1
    running[rank] = running[rank] + 1
  end
  local reply = gate_state(g)
  table.insert(reply, 1, rank and (rank - 1) or -1)
  out[#out + 1] = reply
end
return out
"""

#: turns every run must take, counted
MIN_TURNS = 4000


def gate_script(client: Redis, gate_lua: str | None = None) -> Script:
    """gate.lua as packaged (or a variant of it), with the test's entry."""
    return client.register_script((gate_lua or lua("gate")) + ENTRY)


@pytest.fixture(scope="module")
def script(redis_url: str) -> Iterator[Script]:
    client = Redis.from_url(redis_url)
    try:
        yield gate_script(client)
    finally:
        client.close()


counts = st.integers(0, 4)


@st.composite
def snapshot(draw: st.DrawFn, policy: GatePolicy) -> list[int]:
    """n queued then n running counts; running often at a level's min or max, or one off.

    The rules turn on those boundaries (a guarantee below min, nothing at
    max, seats kept for unmet mins above), so drawing them often is what lets
    the test tell a port from a near miss.
    """
    gate = JobGate(policy)
    running = []
    for level in policy.level_set:
        lim = gate.limits(level)
        edges = {lim.min - 1, lim.min, lim.min + 1, lim.max - 1, lim.max, 1}
        running.append(draw(st.one_of(counts, st.sampled_from(sorted(e for e in edges if e >= 0)))))
    n = len(policy.level_set)
    return draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)) + running


@st.composite
def snapshots(draw: st.DrawFn, policy: GatePolicy) -> list[int] | None:
    """A snapshot, or None: start the job chosen last and ask again (a reservation batch)."""
    if draw(st.integers(0, 2)) == 0:
        return None
    return draw(snapshot(policy))


@st.composite
def states(draw: st.DrawFn, n: int) -> list[float]:
    """A starting JobGate state: mostly the zeros a new queue has, else any numbers."""
    if draw(st.integers(0, 3)) == 0:
        return [0.0] * (2 * n + 1)
    number = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.5]), st.floats(0, 1e6))
    values = draw(st.lists(number, min_size=n + 1, max_size=n + 1))
    return values + [float(draw(st.booleans())) for _ in range(n)]


@st.composite
def cases(draw: st.DrawFn) -> tuple[GatePolicy, list[float], list[list[int] | None]]:
    policy = draw(gate_policies())
    if draw(st.booleans()):  # weighted order keeps the most state: draw it often
        policy = GatePolicy(
            capacity=policy.capacity,
            levels=policy.levels,
            order=Order.WEIGHTED,
            level_set=policy.level_set,
        )
    n = len(policy.level_set)
    first = draw(snapshot(policy))
    steps: list[list[int] | None] = [
        first,
        *draw(st.lists(snapshots(policy), min_size=10, max_size=30)),
    ]
    return policy, draw(states(n)), steps


def test_lua_gate_decides_and_keeps_state_as_jobgate(script: Script) -> None:
    turns = 0

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=cases())
    def lockstep(case: tuple[GatePolicy, list[float], list[list[int] | None]]) -> None:
        nonlocal turns
        turns += compare(script, *case)

    lockstep()
    assert turns >= MIN_TURNS  # Hypothesis draws the sizes: count, don't trust the settings


def compare(
    script: Script, policy: GatePolicy, state: list[float], steps: list[list[int] | None]
) -> int:
    """Run ``steps`` through the Lua and through JobGate; assert they agree; the turns taken."""
    n = len(policy.level_set)
    args: list[str] = [str(n), *gate_args(policy), *map(repr, state)]
    for step in steps:
        args += [str(c) for c in step] if step is not None else ["-1"] * (2 * n)
    replies = script(args=args)

    gate = JobGate(policy).with_state(state)
    queued: list[int] = []
    running: list[int] = []
    for step, reply in zip(steps, replies, strict=True):
        if step is not None:
            queued, running = step[:n], step[n:]
        rank = gate.reserve([LevelSnapshot(q, r) for q, r in zip(queued, running, strict=True)])
        if rank is not None:
            queued[rank] -= 1
            running[rank] += 1
        assert int(reply[0]) == (-1 if rank is None else rank)
        assert tuple(float(v) for v in reply[1:]) == gate.state()
    return len(steps)


def test_a_weighted_level_restarts_at_the_virtual_time(script: Script) -> None:
    """A pinned example: idle "b" comes back at vtime, not with the credit it saved."""
    policy = GatePolicy(
        capacity=1,
        levels={"a": LevelPolicy(weight=1), "b": LevelPolicy(weight=3)},
        order=Order.WEIGHTED,
        level_set=LevelSet(["a", "b"]),
    )
    state = [10.0, 10.0, 0.0, 1.0, 0.0]  # vtime 10, a waits at 10, b idle at pass 0
    reply = script(args=["2", *gate_args(policy), *map(repr, state), "1", "1", "0", "0"])
    gate = JobGate(policy).with_state(state)
    rank = gate.reserve([LevelSnapshot(1, 0), LevelSnapshot(1, 0)])
    assert int(reply[0][0]) == rank == 0  # b restarted at 10 ties with a: the more important wins
    assert tuple(float(v) for v in reply[0][1:]) == gate.state()
    assert gate.state()[2] == 10.0


def test_seats_kept_for_a_min_above_are_only_the_ones_it_still_lacks(script: Script) -> None:
    """A pinned example: "a" (min 2) runs 1 job, so 1 seat is kept for it, not 2.

    With 3 seats and 1 taken, "b" may borrow one of the 2 free seats. Random
    snapshots reach this only now and then, so it is pinned.
    """
    policy = GatePolicy(
        capacity=3, levels={"a": LevelPolicy(min=2)}, level_set=LevelSet(["a", "b"])
    )
    assert compare(script, policy, [0.0] * 5, [[0, 1, 1, 0]]) == 1
    assert JobGate(policy).next_level([LevelSnapshot(0, 1), LevelSnapshot(1, 0)]) == 1
