"""The standard library's documented executor semantics, checked on both executors.

Every test here runs against `concurrent.futures.ThreadPoolExecutor` and
`PriorityThreadPoolExecutor`: where the stdlib defines the behaviour, ours
must match it. Synchronisation is by Events and Barriers; a ``timeout`` on a
wait only turns a hang into a failure.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import gc
import itertools
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures.thread import BrokenThreadPool

import pytest

from prioritize.executor import PriorityThreadPoolExecutor

#: a guard against hangs, never a condition for success
HANG = 30.0

ExecutorFactory = Callable[..., Executor]

_names = itertools.count()


@pytest.fixture(params=[ThreadPoolExecutor, PriorityThreadPoolExecutor], ids=["stdlib", "priority"])
def make(request: pytest.FixtureRequest) -> Iterator[ExecutorFactory]:
    """Build executors of the class under test; every one is shut down after the test."""
    made: list[Executor] = []

    def factory(*args: object, **kwargs: object) -> Executor:
        executor: Executor = request.param(*args, **kwargs)
        made.append(executor)
        return executor

    yield factory
    for executor in made:
        executor.shutdown(wait=True, cancel_futures=True)


def blocker(executor: Executor) -> tuple[Future[bool], threading.Event]:
    """Occupy one worker until the returned event is set; returns once the call runs."""
    started, release = threading.Event(), threading.Event()

    def hold() -> bool:
        started.set()
        return release.wait(HANG)

    future = executor.submit(hold)
    assert started.wait(HANG)
    return future, release


def threads_named(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def test_submit_returns_a_future_with_the_result(make: ExecutorFactory) -> None:
    executor = make(max_workers=2)
    future = executor.submit(pow, 2, 10)
    assert isinstance(future, Future)
    assert future.result(HANG) == 1024
    assert future.done()
    assert not future.cancelled()
    assert executor.submit(dict, a=1, b=2).result(HANG) == {"a": 1, "b": 2}


def test_an_exception_in_the_call_goes_to_the_future(make: ExecutorFactory) -> None:
    executor = make(max_workers=1)
    future = executor.submit(int, "not a number")
    with pytest.raises(ValueError, match="not a number"):
        future.result(HANG)
    assert isinstance(future.exception(HANG), ValueError)
    assert executor.submit(int, "7").result(HANG) == 7  # the worker survived


def test_a_base_exception_in_the_call_goes_to_the_future(make: ExecutorFactory) -> None:
    class Stop(BaseException):
        pass

    def stop() -> None:
        raise Stop

    executor = make(max_workers=1)
    assert isinstance(executor.submit(stop).exception(HANG), Stop)
    # the one worker and its seat are still there
    assert executor.submit(int, "3").result(HANG) == 3


def test_result_with_a_timeout_raises_timeout_error_while_the_call_runs(
    make: ExecutorFactory,
) -> None:
    executor = make(max_workers=1)
    future, release = blocker(executor)
    with pytest.raises(TimeoutError):
        future.result(timeout=0)
    with pytest.raises(TimeoutError):
        future.exception(timeout=0.01)
    release.set()
    assert future.result(HANG) is True


def test_shutdown_with_wait_returns_after_every_queued_call_ran(make: ExecutorFactory) -> None:
    executor = make(max_workers=2)
    gate = threading.Event()
    futures = [executor.submit(gate.wait, HANG) for _ in range(6)]
    threading.Timer(0.0, gate.set).start()
    executor.shutdown(wait=True)
    assert all(f.done() and f.result() is True for f in futures)


def test_shutdown_without_wait_returns_at_once_and_queued_calls_still_run(
    make: ExecutorFactory,
) -> None:
    executor = make(max_workers=1)
    running, release = blocker(executor)
    queued = executor.submit(pow, 3, 2)
    executor.shutdown(wait=False)
    assert not running.done()
    assert not queued.done()
    release.set()
    assert queued.result(HANG) == 9


def test_shutdown_with_cancel_futures_cancels_queued_calls_only(make: ExecutorFactory) -> None:
    executor = make(max_workers=1)
    running, release = blocker(executor)
    queued = [executor.submit(pow, 2, n) for n in range(5)]
    executor.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    release.set()
    assert running.result(HANG) is True  # a running call finishes
    executor.shutdown(wait=True)


def test_submit_after_shutdown_raises_runtime_error(make: ExecutorFactory) -> None:
    executor = make(max_workers=1)
    executor.shutdown()
    with pytest.raises(RuntimeError, match=r"^cannot schedule new futures after shutdown$"):
        executor.submit(pow, 2, 2)
    executor.shutdown()  # a second shutdown is harmless


def test_the_context_manager_shuts_down_and_waits(make: ExecutorFactory) -> None:
    gate = threading.Event()
    with make(max_workers=2) as executor:
        futures = [executor.submit(gate.wait, HANG) for _ in range(4)]
        threading.Timer(0.0, gate.set).start()
    assert all(f.result(0) is True for f in futures)
    with pytest.raises(RuntimeError):
        executor.submit(pow, 2, 2)


def test_map_yields_results_in_input_order(make: ExecutorFactory) -> None:
    executor = make(max_workers=4)
    events = [threading.Event() for _ in range(4)]  # all four run at once

    def finish_in_reverse(i: int) -> int:
        # each call waits for the one after it: they finish last to first
        if i + 1 < len(events):
            assert events[i + 1].wait(HANG)
        events[i].set()
        return i * i

    assert list(executor.map(finish_in_reverse, range(4))) == [0, 1, 4, 9]
    assert list(executor.map(pow, [2, 3, 4], [2, 2, 2])) == [4, 9, 16]
    assert list(executor.map(pow, [], [])) == []


def test_map_with_a_timeout_raises_timeout_error_and_cancels_the_rest(
    make: ExecutorFactory,
) -> None:
    executor = make(max_workers=1)
    running, release = blocker(executor)
    seen: list[int] = []
    results = executor.map(seen.append, range(3), timeout=0.01)
    with pytest.raises(TimeoutError):
        next(results)
    release.set()
    running.result(HANG)
    executor.shutdown(wait=True)
    assert seen == []  # the calls not reached were cancelled


def test_map_raises_the_calls_exception_when_its_result_is_reached(
    make: ExecutorFactory,
) -> None:
    executor = make(max_workers=2)
    results = executor.map(int, ["1", "x", "3"])
    assert next(results) == 1
    with pytest.raises(ValueError, match="'x'"):
        next(results)


def test_a_queued_future_can_be_cancelled_a_running_one_cannot(make: ExecutorFactory) -> None:
    executor = make(max_workers=1)
    running, release = blocker(executor)
    ran: list[str] = []
    queued = executor.submit(ran.append, "queued")
    after = executor.submit(ran.append, "after")
    assert queued.cancel()
    assert queued.cancel()  # cancelling twice is still True
    assert queued.cancelled()
    assert not running.cancel()
    release.set()
    after.result(HANG)
    assert ran == ["after"]
    with pytest.raises(cf.CancelledError):
        queued.result(0)


def test_done_callbacks_run_and_may_submit_again(make: ExecutorFactory) -> None:
    executor = make(max_workers=1)
    second: list[Future[int]] = []
    called = threading.Event()

    def chain(future: Future[int]) -> None:
        second.append(executor.submit(pow, future.result(), 2))
        called.set()

    first = executor.submit(pow, 2, 3)
    first.add_done_callback(chain)
    assert called.wait(HANG)
    assert second[0].result(HANG) == 64


def test_wait_and_as_completed_accept_its_futures(make: ExecutorFactory) -> None:
    executor = make(max_workers=3)
    futures = [executor.submit(pow, 2, n) for n in range(10)]
    done, not_done = cf.wait(futures, timeout=HANG)
    assert not not_done
    assert sorted(f.result() for f in cf.as_completed(futures, timeout=HANG)) == [
        2**n for n in range(10)
    ]
    assert done == set(futures)


def test_threads_start_lazily_and_idle_ones_are_reused(make: ExecutorFactory) -> None:
    prefix = f"lazy-{next(_names)}"
    executor = make(max_workers=20, thread_name_prefix=prefix)
    assert threads_named(prefix) == []
    assert executor.submit(pow, 2, 0).result(HANG) == 1
    assert len(threads_named(prefix)) == 1
    for n in range(1, 20):
        assert executor.submit(pow, 2, n).result(HANG) == 2**n
    # One call at a time: an idle thread takes the next call, unless the caller
    # was quicker than the thread going back to idle (rare, but a race in the
    # standard library too). A thread per call would make 20.
    assert len(threads_named(prefix)) < 20
    executor.shutdown(wait=True)
    assert threads_named(prefix) == []


def test_no_more_threads_than_max_workers(make: ExecutorFactory) -> None:
    prefix = f"bounded-{next(_names)}"
    executor = make(max_workers=3, thread_name_prefix=prefix)
    barrier = threading.Barrier(3)
    futures = [executor.submit(barrier.wait, HANG) for _ in range(3)]  # needs 3 at once
    futures += [executor.submit(pow, 2, n) for n in range(20)]
    cf.wait(futures, timeout=HANG)
    assert all(f.exception() is None for f in futures)
    assert len(threads_named(prefix)) == 3


def test_initializer_runs_once_in_each_thread(make: ExecutorFactory) -> None:
    local = threading.local()
    calls: list[str] = []

    def init(tag: str) -> None:
        local.tag = tag
        calls.append(threading.current_thread().name)

    executor = make(max_workers=2, initializer=init, initargs=("ready",))
    barrier = threading.Barrier(2)

    def both() -> str:
        barrier.wait(HANG)
        return str(local.tag)

    assert [f.result(HANG) for f in [executor.submit(both), executor.submit(both)]] == [
        "ready",
        "ready",
    ]
    assert len(calls) == len(set(calls)) == 2


def test_a_failing_initializer_breaks_the_pool(make: ExecutorFactory) -> None:
    def init() -> None:
        raise OSError("no database")

    executor = make(max_workers=1, initializer=init)
    with pytest.raises(BrokenThreadPool):
        executor.submit(pow, 2, 2).result(HANG)
    with pytest.raises(BrokenThreadPool):
        executor.submit(pow, 2, 2)


def test_a_call_cancelled_before_any_thread_picked_it_up_never_runs(
    make: ExecutorFactory,
) -> None:
    initialising, go = threading.Event(), threading.Event()

    def slow_init() -> None:
        initialising.set()
        go.wait(HANG)

    executor = make(max_workers=1, initializer=slow_init)
    ran: list[int] = []
    future = executor.submit(ran.append, 1)
    assert initialising.wait(HANG)  # the only thread exists, but has not taken the call
    assert future.cancel()
    go.set()
    assert executor.submit(ran.append, 2).result(HANG) is None
    assert ran == [2]


def test_invalid_arguments_are_refused_as_by_the_stdlib(make: ExecutorFactory) -> None:
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        make(max_workers=0)
    with pytest.raises(TypeError, match="initializer must be a callable"):
        make(max_workers=1, initializer="not callable")


def test_a_function_taking_its_own_priority_argument_is_wrapped_in_partial(
    make: ExecutorFactory,
) -> None:
    def describe(task: str, *, priority: int) -> str:
        return f"{task}@{priority}"

    executor = make(max_workers=1)
    assert executor.submit(functools.partial(describe, priority=3), "x").result(HANG) == "x@3"


def test_cancel_futures_cancels_a_call_no_thread_has_taken_yet(make: ExecutorFactory) -> None:
    initialising, go = threading.Event(), threading.Event()

    def slow_init() -> None:
        initialising.set()
        go.wait(HANG)

    executor = make(max_workers=1, initializer=slow_init)
    future = executor.submit(pow, 2, 2)
    assert initialising.wait(HANG)  # its thread is still initialising
    executor.shutdown(wait=False, cancel_futures=True)
    assert future.cancelled()
    go.set()
    executor.shutdown(wait=True)


@pytest.mark.parametrize(
    "cls", [ThreadPoolExecutor, PriorityThreadPoolExecutor], ids=["stdlib", "priority"]
)
def test_an_executor_dropped_without_shutdown_runs_its_calls_then_its_threads_exit(
    cls: Callable[..., Executor],
) -> None:
    prefix = f"dropped-{next(_names)}"
    executor = cls(max_workers=2, thread_name_prefix=prefix)
    gate = threading.Event()
    futures = [executor.submit(gate.wait, HANG) for _ in range(5)]
    del executor
    gc.collect()
    gate.set()
    assert all(f.result(HANG) is True for f in futures)
    for thread in threads_named(prefix):
        thread.join(HANG)
        assert not thread.is_alive()


EXIT_SCRIPT = """
import threading
from concurrent.futures import ThreadPoolExecutor
from prioritize.executor import PriorityThreadPoolExecutor

executor = {cls}(max_workers=1)
gate = threading.Event()
executor.submit(gate.wait)
for n in range(3):
    executor.submit(print, "ran", n, flush=True)
gate.set()
# no shutdown: the interpreter's exit joins the threads after the queued calls ran
"""


@pytest.mark.parametrize("cls", ["ThreadPoolExecutor", "PriorityThreadPoolExecutor"])
def test_queued_calls_still_run_when_the_interpreter_exits(cls: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT.format(cls=cls)],
        capture_output=True,
        text=True,
        timeout=HANG,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["ran 0", "ran 1", "ran 2"]
    assert done.stderr == ""
