"""Shed calls end in `Rejected` with the right reason; cancelled calls never run; no seat leaks."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from prioritize import (
    ConfigError,
    GatePolicy,
    LevelPolicy,
    Reason,
    Rejected,
    UnknownLevelError,
    policy_from_toml,
)
from prioritize.executor import PriorityThreadPoolExecutor

HANG = 30.0
INF = math.inf


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """The event blocked calls wait for; set at teardown so no test leaves a thread stuck."""
    event = threading.Event()
    yield event
    event.set()


def occupy(executor: PriorityThreadPoolExecutor, release: threading.Event, n: int = 1) -> None:
    """Hold ``n`` worker threads until ``release`` is set; returns once they all run."""
    barrier = threading.Barrier(n + 1)

    def hold() -> None:
        barrier.wait(HANG)
        release.wait(HANG)

    for _ in range(n):
        executor.submit(hold, priority="critical")
    barrier.wait(HANG)


def rejection(future: Future[Any]) -> Rejected:
    exc = future.exception(HANG)
    assert isinstance(exc, Rejected), exc
    return exc


def test_a_call_finding_the_queue_full_is_rejected(release: threading.Event) -> None:
    with PriorityThreadPoolExecutor(1, GatePolicy(capacity=1, queue=2)) as executor:
        occupy(executor, release)
        queued = [executor.submit(pow, 2, n) for n in range(2)]
        refused = executor.submit(pow, 2, 9)
        assert refused.done()  # shed at once, before submit returned
        exc = rejection(refused)
        assert (exc.level, exc.reason) == ("normal", Reason.QUEUE_FULL)
        assert exc.retry_after >= 0
        release.set()
        assert [f.result(HANG) for f in queued] == [1, 2]
    assert executor.stats().level("normal").shed[Reason.QUEUE_FULL] == 1


def test_a_more_important_call_evicts_the_newest_less_important_one(
    release: threading.Event,
) -> None:
    with PriorityThreadPoolExecutor(1, GatePolicy(capacity=1, queue=2)) as executor:
        occupy(executor, release)
        older = executor.submit(pow, 2, 1, priority="bulk")
        newer = executor.submit(pow, 2, 2, priority="bulk")
        urgent = executor.submit(pow, 2, 3, priority="critical")
        exc = rejection(newer)
        assert (exc.level, exc.reason) == ("bulk", Reason.EVICTED)
        release.set()
        assert urgent.result(HANG) == 8
        assert older.result(HANG) == 2


def test_a_call_waiting_past_max_wait_is_rejected_by_the_timer(
    release: threading.Event,
) -> None:
    policy = GatePolicy(capacity=1, levels={"low": LevelPolicy(max_wait=0.01)})
    with PriorityThreadPoolExecutor(policy=policy, thread_name_prefix="timed") as executor:
        occupy(executor, release)
        patient = executor.submit(pow, 2, 4, priority="high")
        late = [executor.submit(pow, 2, n, priority="low") for n in range(3)]
        # nothing frees a thread: only the one timer can shed them
        for future in late:
            assert rejection(future).reason is Reason.TIMEOUT
        assert not patient.done()
        assert executor.stats().waiting == 1
        release.set()
        assert patient.result(HANG) == 16
    assert executor.stats().level("low").shed[Reason.TIMEOUT] == 3
    # shutdown joined the worker and the one timer thread
    assert not [t for t in threading.enumerate() if t.name.startswith("timed_")]


def test_the_timer_is_brought_forward_for_an_earlier_deadline(
    release: threading.Event,
) -> None:
    policy = GatePolicy(
        capacity=1,
        levels={"low": LevelPolicy(max_wait=HANG), "high": LevelPolicy(max_wait=0.01)},
    )
    with PriorityThreadPoolExecutor(policy=policy) as executor:
        occupy(executor, release)
        slow = executor.submit(pow, 2, 1, priority="low")  # arms the timer for HANG seconds
        quick = executor.submit(pow, 2, 2, priority="high")
        assert rejection(quick).reason is Reason.TIMEOUT
        assert not slow.done()
        release.set()
        assert slow.result(HANG) == 2


def test_a_level_that_may_not_wait_is_rejected_at_once_with_limit(
    release: threading.Event,
) -> None:
    policy = GatePolicy(
        capacity=1,
        levels={"bulk": LevelPolicy(max=0), "low": LevelPolicy(max_wait=0)},
    )
    with PriorityThreadPoolExecutor(policy=policy) as executor:
        never = executor.submit(pow, 2, 2, priority="bulk")
        assert rejection(never).reason is Reason.LIMIT
        assert executor.submit(pow, 2, 3, priority="low").result(HANG) == 8  # a free thread
        occupy(executor, release)
        busy = executor.submit(pow, 2, 4, priority="low")
        assert busy.done()
        assert rejection(busy).reason is Reason.LIMIT
        release.set()


def test_shutdown_sheds_calls_that_could_only_run_on_reserved_threads() -> None:
    policy = GatePolicy(
        capacity=2,
        levels={
            "critical": LevelPolicy(min=2),
            "bulk": LevelPolicy(max_wait=INF),
        },
    )
    executor = PriorityThreadPoolExecutor(policy=policy)
    stranded = executor.submit(pow, 2, 2, priority="bulk")
    assert not stranded.done()  # both threads are kept for critical calls
    executor.shutdown(wait=True)  # no critical call can come now
    assert rejection(stranded).reason is Reason.SHUTDOWN


def test_cancelling_a_queued_call_withdraws_it_and_it_never_runs(
    release: threading.Event,
) -> None:
    ran: list[int] = []
    with PriorityThreadPoolExecutor(1) as executor:
        occupy(executor, release)
        futures = [executor.submit(ran.append, n) for n in range(4)]
        assert futures[1].cancel()
        assert futures[2].cancel()
        assert executor.stats().waiting == 2
        release.set()
        for f in (futures[0], futures[3]):
            f.result(HANG)
    assert ran == [0, 3]
    normal = executor.stats().level("normal")
    assert normal.cancelled == 2
    assert (normal.in_use, normal.waiting, normal.granted, normal.released) == (0, 0, 2, 2)


def test_cancel_futures_at_shutdown_balances_the_counts(release: threading.Event) -> None:
    executor = PriorityThreadPoolExecutor(2)
    occupy(executor, release, 2)
    queued = [executor.submit(pow, 2, n, priority="low") for n in range(5)]
    executor.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    release.set()
    executor.shutdown(wait=True)
    stats = executor.stats()
    assert (stats.in_use, stats.waiting) == (0, 0)
    assert stats.level("low").cancelled == 5


def test_a_call_granted_but_not_yet_started_gives_its_seat_back_when_cancelled() -> None:
    initialising, go = threading.Event(), threading.Event()

    def slow_init() -> None:
        initialising.set()
        go.wait(HANG)

    executor = PriorityThreadPoolExecutor(1, initializer=slow_init)
    ran: list[int] = []
    future = executor.submit(ran.append, 1)
    assert initialising.wait(HANG)  # the thread exists but has not picked the call up
    assert executor.stats().in_use == 1  # granted: it holds the one seat
    assert future.cancel()
    go.set()
    executor.shutdown(wait=True)
    assert ran == []
    normal = executor.stats().level("normal")
    assert (normal.granted, normal.released, normal.in_use) == (1, 1, 0)


def test_a_base_exception_from_a_done_callback_does_not_leak_the_seat(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Stop(BaseException):
        pass

    def explode(_: Future[int]) -> None:
        raise Stop

    done = threading.Event()
    with PriorityThreadPoolExecutor(1) as executor:
        occupy(executor, done)  # so the callback is added before the call runs
        future = executor.submit(pow, 2, 2)
        future.add_done_callback(explode)
        with caplog.at_level(logging.CRITICAL, logger="prioritize.executor"):
            done.set()
            assert future.result(HANG) == 4
            assert executor.submit(pow, 2, 3).result(HANG) == 8  # same thread, same seat
    assert executor.stats().in_use == 0
    assert "BaseException in a done callback" in caplog.text


def test_an_unknown_level_or_unhashable_flow_is_refused_at_submit() -> None:
    with PriorityThreadPoolExecutor(1) as executor:
        with pytest.raises(UnknownLevelError, match="unknown level 'urgent'"):
            executor.submit(pow, 2, 2, priority="urgent")
        with pytest.raises(UnknownLevelError):
            executor.submit(pow, 2, 2, priority=[1])  # type: ignore[arg-type]
        with pytest.raises(UnknownLevelError):
            executor.map(pow, [2], [2], priority="urgent")
        with pytest.raises(TypeError, match="flow must be hashable"):
            executor.submit(pow, 2, 2, flow=["tenant"])
        assert executor.stats().levels[0].submitted == 0


def test_built_from_a_policy_file_gate_with_max_workers_its_capacity() -> None:
    policy = policy_from_toml(
        """
        [gates.workers]
        capacity = 3

        [gates.workers.levels.bulk]
        max = 1
        """,
        "workers.toml",
    )
    with PriorityThreadPoolExecutor.from_policy(policy, "workers") as executor:
        assert executor.max_workers == 3
        assert executor.policy.capacity == 3
        assert executor.stats().level("bulk").max == 1
        assert executor.submit(pow, 2, 2, priority="bulk").result(HANG) == 4
    with pytest.raises(ConfigError, match="no such gate"):
        PriorityThreadPoolExecutor.from_policy(policy, "wrokers")


def test_max_workers_overrides_the_policys_capacity_and_keeps_percentages() -> None:
    policy = GatePolicy(capacity=4, levels={"critical": LevelPolicy(min="50%")})
    executor = PriorityThreadPoolExecutor(10, policy)
    assert executor.policy.capacity == 10
    assert executor.stats().level("critical").min == 5
    assert PriorityThreadPoolExecutor(policy=policy).max_workers == 4
    assert repr(executor) == ("<PriorityThreadPoolExecutor gate 0/10 seats, 0 waiting, 0 threads>")
    executor.shutdown()
    assert repr(executor).endswith("0 threads, shut down>")
    with pytest.raises(TypeError, match="policy must be a GatePolicy"):
        PriorityThreadPoolExecutor(2, 4)  # type: ignore[arg-type]


def test_the_default_policy_queues_without_bound_or_timeout() -> None:
    with PriorityThreadPoolExecutor(1) as executor:
        for level in executor.policy.level_set:
            limits = executor.stats().level(level.name)
            assert (limits.min, limits.max) == (0, 1)
        assert executor.policy.queue >= 2**31
        assert {lp.max_wait for lp in executor.policy.levels.values()} == {INF}
