"""Many threads submitting and cancelling at random: every call ends exactly once.

Eight threads start together on a Barrier and submit thousands of calls at
random levels and flows, cancelling some at once and some later, into an
executor whose policy sheds (small queues, an eviction-prone total bound,
short ``max_wait``s). Afterwards every future is done, each call ran at most
once and only if its future says so, the outcomes add up to the calls
submitted, the scheduler's counters balance, and no seat or thread is left.
A variant shuts the executor down (cancelling queued calls) while the
submitters are still at it.
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import Future

import pytest

from prioritize import DEFAULT_LEVELS, GatePolicy, LevelPolicy, Rejected
from prioritize.executor import PriorityThreadPoolExecutor

HANG = 60.0
SUBMITTERS = 8
CALLS_EACH = 1500

Token = tuple[int, int]


def policy(order: str) -> GatePolicy:
    return GatePolicy(
        capacity=4,
        order=order,  # type: ignore[arg-type]
        queue=48,
        levels={
            "critical": LevelPolicy(min=1, weight=8),
            "high": LevelPolicy(max=2, weight=4),
            "normal": LevelPolicy(queue=24, max_wait=0.05),
            "low": LevelPolicy(max_wait=0.005),
            "bulk": LevelPolicy(queue=8, max_wait=0.001),
        },
    )


@pytest.mark.parametrize(
    ("order", "midway"),
    [("strict", False), ("weighted", False), ("strict", True)],
    ids=["strict", "weighted", "shutdown-midway"],
)
def test_concurrent_submits_and_cancels_leave_every_count_balanced(
    order: str, midway: bool
) -> None:
    prefix = f"hammer-{order}-{midway}"
    executor = PriorityThreadPoolExecutor(policy=policy(order), thread_name_prefix=prefix)
    ran: list[Token] = []
    ran_lock = threading.Lock()

    def work(token: Token) -> Token:
        with ran_lock:
            ran.append(token)
        return token

    submitted: list[list[tuple[Token, Future[Token]]]] = [[] for _ in range(SUBMITTERS)]
    start = threading.Barrier(SUBMITTERS)
    halfway = threading.Event()
    errors: list[BaseException] = []

    def submitter(index: int) -> None:
        rng = random.Random(index)
        mine = submitted[index]
        later: list[Future[Token]] = []
        try:
            start.wait(HANG)
            for n in range(CALLS_EACH):
                if n == CALLS_EACH // 2:
                    halfway.set()
                token = (index, n)
                level = rng.choice(DEFAULT_LEVELS.names)
                try:
                    future = executor.submit(work, token, priority=level, flow=rng.randrange(3))
                except RuntimeError:
                    assert midway
                    assert halfway.is_set()
                    break
                mine.append((token, future))
                dice = rng.random()
                if dice < 0.1:
                    future.cancel()
                elif dice < 0.2:
                    later.append(future)
                if len(later) > 20:
                    later.pop(rng.randrange(len(later))).cancel()
            for future in later:
                future.cancel()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submitter, args=(i,)) for i in range(SUBMITTERS)]
    for t in threads:
        t.start()
    if midway:
        assert halfway.wait(HANG)
        executor.shutdown(wait=False, cancel_futures=True)
    for t in threads:
        t.join(HANG)
    assert not errors
    executor.shutdown(wait=True)

    calls = [call for mine in submitted for call in mine]
    assert len(calls) == SUBMITTERS * CALLS_EACH or midway
    assert all(future.done() for _, future in calls)
    executed = {t for t, f in calls if not f.cancelled() and f.exception(0) is None}
    cancelled = {t for t, f in calls if f.cancelled()}
    shed = {t for t, f in calls if not f.cancelled() and isinstance(f.exception(0), Rejected)}
    assert len(executed) + len(cancelled) + len(shed) == len(calls)
    assert all(f.result(0) == t for t, f in calls if t in executed)
    assert len(ran) == len(set(ran)), "a call ran twice"
    assert set(ran) == executed, "a call ran although its future was cancelled or shed"
    assert cancelled, "the load was meant to cancel calls"
    assert shed, "the load was meant to shed calls"

    stats = executor.stats()
    assert (stats.in_use, stats.waiting) == (0, 0)
    assert sum(level.submitted for level in stats.levels) == len(calls)
    for level in stats.levels:
        assert level.submitted == level.granted + level.cancelled + level.shed_total
        assert level.granted == level.released, f"{level.level} leaked a seat"
        assert (level.in_use, level.waiting) == (0, 0)
    assert not [t for t in threading.enumerate() if t.name.startswith(prefix)]
