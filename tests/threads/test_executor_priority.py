"""Which queued call a free thread runs next: exactly the scheduler's order.

Each scenario is played twice: on a `PriorityThreadPoolExecutor`, with every
call blocking on its own Event until the test lets it finish, and on a bare
`Scheduler` of the same policy driven by hand with the same submissions and
the same releases. The order in which calls start must be the order in
which the reference grants them.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator, Sequence

import pytest

from prioritize import GatePolicy, LevelPolicy, Order, Scheduler, Ticket, TicketState
from prioritize.executor import PriorityThreadPoolExecutor

HANG = 30.0
INF = math.inf


def reference_order(policy: GatePolicy, calls: Sequence[tuple[str, str]]) -> tuple[int, list[str]]:
    """How many calls a hand-driven Scheduler grants at once, and its whole grant order.

    The grant that has held its seat longest is released first, one at a
    time; the scenario must grant exactly one call per release while calls
    wait, so the executor's order is observable call by call.
    """
    s = Scheduler(policy)
    grants: list[Ticket] = []
    for level, label in calls:
        ticket = s.ticket(level, data=label)
        s.submit(ticket, 0.0)
        if ticket.state is TicketState.GRANTED:
            grants.append(ticket)
    assert s.waiting + len(grants) == len(calls), "the scenario must shed nothing"
    at_once = len(grants)
    for step, held in enumerate(grants):
        waiting = s.waiting
        granted = s.release(held, float(step + 1))
        assert len(granted) == (1 if waiting else 0), "one grant per release, please"
        grants.extend(granted)
    assert len(grants) == len(calls), "every call must get a seat"
    return at_once, [str(t.data) for t in grants]


def executor_order(
    policy: GatePolicy, calls: Sequence[tuple[str, str]], release: Sequence[str], at_once: int
) -> list[str]:
    """Run the calls on an executor, releasing them in ``release`` order; return start order."""
    started: queue.SimpleQueue[str] = queue.SimpleQueue()
    finish = {label: threading.Event() for _, label in calls}

    def call(label: str) -> str:
        started.put(label)
        assert finish[label].wait(HANG)
        return label

    order: list[str] = []
    with PriorityThreadPoolExecutor(policy=policy) as executor:
        futures = [executor.submit(call, label, priority=level) for level, label in calls]
        # The calls granted at once start on their threads in any order.
        first = sorted(started.get(timeout=HANG) for _ in range(at_once))
        order.extend(first)
        for step, label in enumerate(release):
            finish[label].set()
            if at_once + step < len(calls):
                order.append(started.get(timeout=HANG))  # the one call this release starts
        assert [f.result(HANG) for f in futures] == [label for _, label in calls]
        stats = executor.stats()
    assert (stats.in_use, stats.waiting) == (0, 0)
    return order


def check(policy: GatePolicy, calls: Sequence[tuple[str, str]]) -> list[str]:
    at_once, expected = reference_order(policy, calls)
    actual = executor_order(policy, calls, expected, at_once)
    assert actual[:at_once] == sorted(expected[:at_once])
    assert actual[at_once:] == expected[at_once:]
    return expected


def labelled(levels: str) -> Iterator[tuple[str, str]]:
    """``"bulk low"`` -> ``("bulk", "bulk0"), ("low", "low1")``."""
    for i, level in enumerate(levels.split()):
        yield level, f"{level}{i}"


def test_strict_order_runs_the_most_important_queued_call_next() -> None:
    policy = GatePolicy(capacity=1, levels={lvl: LevelPolicy(max_wait=INF) for lvl in ("bulk",)})
    calls = list(labelled("normal bulk low critical normal high bulk critical low high"))
    order = check(policy, calls)
    assert order == [
        "normal0",  # granted at once, the worker is free
        "critical3",
        "critical7",
        "high5",
        "high9",
        "normal4",
        "low2",
        "low8",
        "bulk1",
        "bulk6",
    ]


def test_weighted_order_shares_threads_by_weight() -> None:
    policy = GatePolicy(
        capacity=1,
        order=Order.WEIGHTED,
        levels={
            "high": LevelPolicy(weight=3),
            "low": LevelPolicy(weight=1),
        },
    )
    calls = [("normal", "first")]
    calls += [("high", f"h{i}") for i in range(9)] + [("low", f"l{i}") for i in range(3)]
    order = check(policy, calls)
    # three high calls for each low one while both wait (stride scheduling)
    assert "".join(label[0] for label in order[1:]) == "hlhhhlhhhlhh"


def test_min_reserves_a_thread_and_max_caps_a_level() -> None:
    policy = GatePolicy(
        capacity=3,
        levels={
            "critical": LevelPolicy(max=2),
            "bulk": LevelPolicy(min=1),
        },
    )
    calls = list(labelled("critical critical critical high critical high bulk bulk high bulk"))
    order = check(policy, calls)
    # critical never runs more than 2 calls at once; bulk always gets its reserved thread
    assert order[:3] == ["critical0", "critical1", "high3"]
    assert order.index("bulk6") < order.index("high5")


def test_flows_take_turns_within_a_level() -> None:
    policy = GatePolicy(capacity=1)
    calls = [("normal", "first")]
    calls += [("normal", f"a{i}") for i in range(3)] + [("normal", f"b{i}") for i in range(3)]
    at_once = 1
    started: queue.SimpleQueue[str] = queue.SimpleQueue()
    finish = threading.Event()

    def call(label: str) -> None:
        started.put(label)
        finish.wait(HANG)

    with PriorityThreadPoolExecutor(policy=policy) as executor:
        for _, label in calls:
            executor.submit(call, label, flow=None if label == "first" else label[0])
        assert started.get(timeout=HANG) == "first"
        finish.set()
        order = [started.get(timeout=HANG) for _ in range(len(calls) - at_once)]
    assert order == ["a0", "b0", "a1", "b1", "a2", "b2"]


@pytest.mark.parametrize("priority", ["critical", 0])
def test_a_level_may_be_given_by_name_rank_or_level(priority: str | int) -> None:
    with PriorityThreadPoolExecutor(1) as executor:
        level = executor.policy.level_set["critical"]
        for key in (priority, level):
            assert executor.submit(pow, 2, 5, priority=key).result(HANG) == 32
        assert executor.stats().level("critical").granted == 2


def test_map_runs_every_call_at_its_priority() -> None:
    with PriorityThreadPoolExecutor(2) as executor:
        assert list(executor.map(pow, [2, 3], [3, 3], priority="bulk")) == [8, 27]
        assert executor.stats().level("bulk").granted == 2
