"""prioritize.llm.SyncBudget: a rate budget's decisions delivered to threads.

Most tests run on a `VirtualClock` the test moves, so pacing and order are
exact and independent of the machine's load; the waiting itself is real
(threads parked on locks). A few run on the real clock to show what only
it can: a waiter granted by the refill, or shed at its ``max_wait``, with
no other call and no timer thread.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prioritize import Rejected, UnknownLevelError, level_scope, parse_policy
from prioritize.core import DEFAULT_LEVELS, Reason
from prioritize.errors import ConfigError, TicketStateError
from prioritize.llm import BudgetLevelPolicy, BudgetPolicy, SyncBudget, SyncSpend
from prioritize.testing import VirtualClock
from tests.process.children import eventually, in_thread

FOREVER = BudgetLevelPolicy(max_wait=math.inf)
TIMEOUTS: list[float | None] = [None, 0.002, 0.05]


def budget(clock: Callable[[], float] | None = None, **knobs: object) -> SyncBudget:
    levels = knobs.pop("levels", {"critical": FOREVER, "low": FOREVER, "bulk": FOREVER})
    policy = BudgetPolicy(levels=levels, **knobs)  # type: ignore[arg-type]
    return SyncBudget(policy) if clock is None else SyncBudget(policy, clock=clock)


class Log:
    """Who was granted, in order, and at what time of the budget's clock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.entries: list[tuple[str, float]] = []
        self._lock = threading.Lock()

    def add(self, name: str) -> None:
        with self._lock:
            self.entries.append((name, self.clock()))

    def __len__(self) -> int:
        with self._lock:
            return len(self.entries)


def queue(b: SyncBudget, log: Log, name: str, level: str, **kw: object) -> threading.Thread:
    """A thread spending ``level`` (logged as ``name`` when granted), once it waits in the queue."""
    waiting = b.scheduler.waiting

    def spend() -> None:
        with b.spend(level, **kw):  # type: ignore[arg-type]
            log.add(name)

    thread, _ = in_thread(spend)
    eventually(lambda: b.scheduler.waiting == waiting + 1, f"{name} waits")
    return thread


def step(clock: VirtualClock, b: SyncBudget, log: Log, seconds: float) -> None:
    """Move time on; the budget grants the one request that now fits."""
    done = len(log)
    clock.advance(seconds)
    b.advance()
    eventually(lambda: len(log) == done + 1, f"a grant at {clock()}")


def test_calls_are_paced_at_the_rate_once_the_burst_is_spent() -> None:
    clock = VirtualClock()
    b = budget(clock, rpm=60, burst=2)
    log = Log(clock)
    for _ in range(2):  # the burst: two calls at once
        b.call(log.add, "now", level="low")
    threads = [queue(b, log, f"low{i}", "low") for i in range(3)]
    for _ in range(3):
        step(clock, b, log, 1.0)
    for thread in threads:
        thread.join()
    assert log.entries == [
        ("now", 0.0),
        ("now", 0.0),
        ("low0", 1.0),
        ("low1", 2.0),
        ("low2", 3.0),
    ]
    assert b.stats().levels[3].granted == 5


def test_critical_goes_first_and_flows_take_turns() -> None:
    clock = VirtualClock()
    b = budget(clock, rpm=60, burst=1)
    log = Log(clock)
    with b.spend("low"):  # the burst is spent: everyone below waits for a refill
        pass
    threads = [
        queue(b, log, "x1", "low", flow="x"),
        queue(b, log, "x2", "low", flow="x"),
        queue(b, log, "y1", "low", flow="y"),
        queue(b, log, "critical", "critical"),
    ]
    for _ in threads:
        step(clock, b, log, 1.0)
    for thread in threads:
        thread.join()
    assert [name for name, _ in log.entries] == ["critical", "x1", "y1", "x2"]


def test_call_reconciles_the_estimate_with_the_usage_reported() -> None:
    b = budget(VirtualClock(), tpm=6000, burst=60)

    def ask(prompt: str, *, most: int) -> dict[str, object]:
        return {"prompt": prompt, "most": most, "total_tokens": 1200}

    answer = b.call(ask, "hi", level="low", tokens=4000, most=9, usage=lambda r: r["total_tokens"])
    assert answer == {"prompt": "hi", "most": 9, "total_tokens": 1200}
    assert b.stats().available["tokens"] == pytest.approx(6000 - 1200)
    assert b.stats().levels[3].spent["tokens"] == pytest.approx(1200)


def test_a_refused_call_backs_the_budget_off_and_pauses_it() -> None:
    clock = VirtualClock()
    b = budget(clock, rpm=60, burst=5)
    log = Log(clock)
    with b.spend("low") as spend:
        spend.refused(retry_after=3)
    thread = queue(b, log, "after", "low")
    clock.advance(2.9)
    b.advance()
    assert b.scheduler.waiting == 1  # still paused
    step(clock, b, log, 0.1)
    thread.join()
    assert log.entries == [("after", pytest.approx(3.0))]
    assert b.stats().factor == pytest.approx(0.5 + 3 / 60)


def test_the_level_defaults_to_the_current_one_then_the_policys() -> None:
    policy = parse_policy({"default_level": "low", "budgets": {"api": {"rpm": 60}}})
    b = SyncBudget.from_policy(policy, "api")
    seen = []
    with level_scope(DEFAULT_LEVELS["high"]), b.spend() as spend:
        seen.append(spend.level.name)
    with b.spend() as spend:
        seen.append(spend.level.name)
    assert seen == ["high", "low"]


def test_shed_and_timed_out_calls_raise_rejected_with_retry_after() -> None:
    clock = VirtualClock()
    b = budget(clock, rpm=60, burst=1, levels={"bulk": BudgetLevelPolicy(max_wait=0)})
    with b.spend("low"):
        pass
    with pytest.raises(Rejected) as bulk, b.spend("bulk"):
        pass

    def pass_the_timeout() -> None:
        eventually(lambda: b.scheduler.waiting == 1, "the call waits")
        clock.advance(0.25)  # the timeout is on the budget's clock

    helper, _ = in_thread(pass_the_timeout)
    with pytest.raises(Rejected) as low, b.spend("low", timeout=0.25):
        pass
    helper.join()
    assert (bulk.value.reason, low.value.reason) == (Reason.LIMIT, Reason.TIMEOUT)
    assert low.value.retry_after == pytest.approx(0.75)  # the next request slot
    assert b.stats().waiting == 0
    assert b.stats().levels[3].cancelled == 1


def test_close_sheds_waiters_and_later_calls_with_shutdown() -> None:
    b = budget(VirtualClock(), rpm=60, burst=1)
    with b.spend("low"):
        pass
    thread, outcome = in_thread(lambda: b.spend("low").__enter__())
    eventually(lambda: b.scheduler.waiting == 1, "the call waits")
    b.close()
    thread.join()
    assert isinstance(outcome[0], Rejected)
    assert outcome[0].reason is Reason.SHUTDOWN
    with pytest.raises(Rejected, match=r"low request shed \(shutdown\)"), b.spend("low"):
        pass


# -- the real clock: waiters wake by themselves --------------------------------------------


def test_a_waiter_is_granted_by_the_refill_with_no_timer_thread() -> None:
    b = budget(rpm=6000, burst=0.02)  # two calls at once, then one every 10 ms
    before = set(threading.enumerate())
    log = Log(time.monotonic)
    workers = []
    for i in range(4):
        thread, outcome = in_thread(lambda i=i: [b.call(log.add, f"w{i}") for _ in range(5)])
        workers.append((thread, outcome))
    eventually(lambda: b.scheduler.waiting > 0, "calls wait for the refill")
    assert set(threading.enumerate()) - before <= {thread for thread, _ in workers}
    for thread, outcome in workers:
        thread.join()
        assert outcome == [[None] * 5]
    assert len(log) == 20
    stats = b.stats()
    assert (stats.waiting, stats.in_flight, stats.levels[2].granted) == (0, 0, 20)


def test_the_watching_waiter_sheds_another_past_its_max_wait() -> None:
    levels = {"low": FOREVER, "bulk": BudgetLevelPolicy(max_wait=0.05)}
    b = budget(rpm=1, levels=levels)  # one request a minute
    with b.spend("low"):
        pass
    log = Log(lambda: 0.0)
    low = queue(b, log, "low", "low")  # first in line: it watches the clock
    with pytest.raises(Rejected) as bulk, b.spend("bulk"):
        pass
    assert bulk.value.reason is Reason.TIMEOUT
    assert b.scheduler.waiting_at("low") == 1
    b.close()
    low.join()
    assert len(log) == 0


@settings(max_examples=15, deadline=None)
@given(
    plans=st.lists(
        st.lists(
            st.tuples(st.sampled_from(["critical", "low", "bulk"]), st.sampled_from(TIMEOUTS)),
            min_size=1,
            max_size=6,
        ),
        min_size=2,
        max_size=6,
    )
)
def test_contending_threads_each_end_once_and_never_beyond_the_rate(
    plans: list[list[tuple[str, float | None]]],
) -> None:
    levels = {
        "critical": BudgetLevelPolicy(min="30%", max_wait=math.inf),
        "low": BudgetLevelPolicy(max="50%", queue=3, max_wait=math.inf),
        "bulk": BudgetLevelPolicy(max_wait=0.01),
    }
    b = budget(rpm=12_000, burst=0.02, queue=6, levels=levels)  # 4 at once, then 200 a second
    granted_at: list[float] = []
    lock = threading.Lock()

    def run(plan: list[tuple[str, float | None]]) -> list[object]:
        ends: list[object] = []
        for level, timeout in plan:
            try:
                with b.spend(level, timeout=timeout) as spend:
                    assert spend.granted_at is not None
                    with lock:
                        granted_at.append(spend.granted_at)
                    ends.append("granted")
            except Rejected as shed:
                ends.append(shed.reason)
        return ends

    workers = [in_thread(lambda plan=plan: run(plan)) for plan in plans]
    ends = []
    for (thread, outcome), plan in zip(workers, plans, strict=True):
        thread.join()
        (one,) = outcome
        assert isinstance(one, list)
        assert len(one) == len(plan)  # every call ended, once
        ends += one
    stats = b.stats()
    assert (stats.waiting, stats.in_flight) == (0, 0)
    assert sum(lv.granted for lv in stats.levels) == ends.count("granted") == len(granted_at)
    refused = sum(sum(lv.shed.values()) + lv.cancelled for lv in stats.levels)
    assert refused == len(ends) - ends.count("granted")
    # a bucket of 4 refilling at 200 a second: never more grants in any span
    times = sorted(granted_at)
    for i, start in enumerate(times):
        for j in range(i, len(times)):
            assert j - i + 1 <= 4 + 200 * (times[j] - start) + 1e-6


# -- interruption -----------------------------------------------------------------------


def test_a_thread_interrupted_while_it_waits_leaves_and_hands_the_watch_on() -> None:
    clock = VirtualClock()
    b = budget(clock, rpm=600, burst=0.1)  # one call at once, then one every 0.1 s
    with b.spend("low"):
        pass
    main = threading.get_ident()
    log = Log(clock)

    def interrupt_main_then_queue_another() -> threading.Thread:
        eventually(lambda: b.scheduler.waiting == 1, "the main thread waits")
        second = queue(b, log, "second", "low")  # behind main, which watches the clock
        signal.pthread_kill(main, signal.SIGINT)  # Ctrl-C, delivered to the waiting thread
        return second

    helper, started = in_thread(interrupt_main_then_queue_another)
    with pytest.raises(KeyboardInterrupt), b.spend("low"):
        pass
    helper.join()
    assert b.scheduler.waiting_at("low") == 1
    assert b.stats().levels[3].cancelled == 1
    clock.advance(0.1)  # no call into the budget: the second waiter now watches, and sees it
    second = started[0]
    assert isinstance(second, threading.Thread)
    second.join(timeout=30)
    assert not second.is_alive()
    assert log.entries == [("second", pytest.approx(0.1))]


class InterruptingClock:
    """A virtual clock that, read once armed, sends Ctrl-C to a thread before answering."""

    def __init__(self) -> None:
        self.virtual = VirtualClock()
        self.target: int | None = None

    def __call__(self) -> float:
        if self.target is not None:
            signal.pthread_kill(self.target, signal.SIGINT)
            self.target = None
        return self.virtual()


def test_a_grant_landing_on_an_interrupted_waiter_is_given_back_whole() -> None:
    clock = InterruptingClock()
    b = budget(clock, rpm=60, tpm=6000, burst=1)
    with b.spend("low", tokens=10):
        pass
    main = threading.get_ident()

    def grant_as_main_is_interrupted() -> None:
        eventually(lambda: b.scheduler.waiting == 1, "the main thread waits")
        clock.virtual.advance(1.0)
        clock.target = main
        b.advance()  # reads the clock (Ctrl-C to main), then grants main's request

    helper, _ = in_thread(grant_as_main_is_interrupted)
    with pytest.raises(KeyboardInterrupt), b.spend("low", tokens=10):
        pass
    helper.join()
    low = b.stats().levels[3]
    assert (low.granted, low.in_flight) == (2, 0)
    assert low.spent == {"requests": 1.0, "tokens": 10.0}  # the second grant, given back
    assert b.stats().available["requests"] == pytest.approx(1.0)


# -- misuse --------------------------------------------------------------------------------


def test_misuse_is_named() -> None:
    b = budget(VirtualClock(), rpm=60)
    with pytest.raises(TypeError, match=r"SyncBudget\(\) takes a BudgetPolicy, not int"):
        SyncBudget(60)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="clock = 5: expected a callable returning seconds"):
        SyncBudget(BudgetPolicy(rpm=60), clock=5)  # type: ignore[arg-type]
    with pytest.raises(UnknownLevelError, match=r"unknown level 'urgent'; valid levels are"):
        SyncBudget(BudgetPolicy(rpm=60), default_level="urgent")
    with pytest.raises(
        ConfigError, match=r"budgets.apj: no such budget in <dict>; did you mean 'api'\? budgets"
    ):
        SyncBudget.from_policy(parse_policy({"budgets": {"api": {"rpm": 1}}}), "apj")
    with pytest.raises(UnknownLevelError, match=r"unknown level 'urgent'; valid levels are"):
        b.spend("urgent")
    with pytest.raises(ValueError, match=r"tokens = -1: expected an estimate, a number ≥ 0"):
        b.spend("low", tokens=-1)
    with pytest.raises(ValueError, match=r"tokens = 'many': expected an estimate"):
        b.spend("low", tokens="many")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"timeout = -1: expected seconds ≥ 0, or None"):
        b.spend("low", timeout=-1)
    spend = b.spend("low")
    with pytest.raises(TicketStateError, match="holds no budget: report usage inside the block"):
        spend.actual(5)
    with spend:
        with pytest.raises(ValueError, match=r"tokens = 'many': expected the actual count"):
            spend.actual("many")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"retry_after = -1: expected seconds ≥ 0 or None"):
            spend.refused(retry_after=-1)
    with pytest.raises(TicketStateError, match="was already submitted; submit only new tickets"):
        spend.__enter__()
    assert isinstance(spend, SyncSpend)
    assert repr(b) == "<SyncBudget budget: 0 in flight, 0 waiting>"
    assert b.stats().in_flight == 0
