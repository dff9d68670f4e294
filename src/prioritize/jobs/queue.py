"""The API of durable jobs: a `JobQueue`, tasks registered on it, handles to enqueued jobs.

::

    jobs = JobQueue("sqlite:///prioritize.db", policy=load_policy())

    @jobs.task(level="high", retries=3, timeout=30)
    async def charge(order_id: str, cents: int) -> dict: ...

    handle = await charge.enqueue("o-17", 1999, flow="tenant-4")
    receipt = await handle.result(timeout=60)

The queue's gate (``[gates.jobs]`` of the policy, by default) is the global
WIP: how many jobs run at once over all workers, and each level's share.
Arguments are checked against the function's signature and serialized at
enqueue, so a bad call fails in the caller, not hours later in a worker.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import datetime, timedelta
from typing import Any, Generic, ParamSpec, TypeVar, final, overload

from ..context import current_level
from ..core.config import Policy
from ..core.levels import Level, LevelSet
from ..core.policy import GatePolicy
from ..core.retry import RetryPolicy
from .broker import Broker
from .model import Job, JobNotFound, JobState, JobStats, TaskFailed
from .serializer import JsonSerializer, Serializer

__all__ = ["DEFAULT_GATE", "JobHandle", "JobQueue", "Task"]

#: the policy gate a JobQueue uses unless told otherwise
DEFAULT_GATE = "jobs"
#: global WIP when the policy has no jobs gate: effectively only workers' concurrency limits
DEFAULT_CAPACITY = 10_000

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

When = float | int | timedelta | datetime


@final
class JobQueue:
    """Tasks, a broker that stores their jobs, and the policy that orders them.

    ``broker`` is a `Broker` or a URL (``"sqlite:///prioritize.db"``,
    ``"redis://localhost:6379/0"``, ``"memory://"``). ``policy`` is a
    `Policy` (its gate named ``gate`` is used; without one, its levels with
    no global limit), a `GatePolicy`, or None for the default levels.
    """

    def __init__(
        self,
        broker: Broker | str = "sqlite:///prioritize.db",
        *,
        policy: Policy | GatePolicy | None = None,
        gate: str = DEFAULT_GATE,
        serializer: Serializer | None = None,
        result_ttl: float = 86_400.0,
    ) -> None:
        if isinstance(broker, str):
            from .brokers import open_broker

            broker = open_broker(broker)
        self.broker: Broker = broker
        self.gate_policy = _gate_policy(policy, gate)
        self.default_level: Level = _default_level(policy, self.levels)
        self.serializer: Serializer = serializer if serializer is not None else JsonSerializer()
        _check_seconds("result_ttl", result_ttl, positive=True)
        self.result_ttl = float(result_ttl)
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.broker.configure(self.gate_policy)
        self._portal: _Portal | None = None
        self._portal_lock = threading.Lock()

    @property
    def levels(self) -> LevelSet:
        """The level set of the queue's policy."""
        return self.gate_policy.level_set

    # -- registering tasks ---------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        level: str | None = None,
        retries: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        result_ttl: float | None = None,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        level: str | None = None,
        retries: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        result_ttl: float | None = None,
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register a function as a task: ``@jobs.task`` or ``@jobs.task(level="high", ...)``.

        ``retries`` is the number of runs after the first (default 3, with
        exponential backoff and full jitter); ``retry`` sets the whole
        `RetryPolicy`. ``timeout`` bounds one run, in seconds.
        """

        def register(function: Callable[P, R]) -> Task[P, R]:
            if not callable(function):
                raise TypeError(f"@task decorates a function, not {function!r}")
            task_name = name or f"{function.__module__}.{function.__qualname__}"
            if task_name in self.tasks:
                raise ValueError(
                    f"a task named {task_name!r} is already registered on this queue; "
                    "give one of them another name: @jobs.task(name=...)"
                )
            policy = retry if retry is not None else RetryPolicy()
            if retries is not None:
                policy = RetryPolicy(retries, policy.base, policy.factor, policy.cap, policy.jitter)
            if level is not None:
                self.levels.resolve(level)
            if timeout is not None:
                _check_seconds("timeout", timeout, positive=True)
            if result_ttl is not None:
                _check_seconds("result_ttl", result_ttl, positive=True)
            task = Task(self, function, task_name, level, policy, timeout, result_ttl)
            self.tasks[task_name] = task
            return task

        return register if fn is None else register(fn)

    # -- jobs by id and by name ----------------------------------------------------

    def handle(self, job_id: str) -> JobHandle[Any]:
        """A handle to an existing job by its id."""
        return JobHandle(self, job_id)

    async def enqueue(
        self,
        task: str,
        args: tuple[object, ...] | list[object] = (),
        kwargs: Mapping[str, object] | None = None,
        **options: Any,
    ) -> JobHandle[Any]:
        """Enqueue by task name (a task that may live only in the workers' code).

        ``options`` are `Task.enqueue`'s: level, flow, idempotency_key,
        delay, deadline, retries, timeout.
        """
        known = self.tasks.get(task)
        if known is not None:
            return await known.enqueue_call(tuple(args), dict(kwargs or {}), **options)
        job = self._build(task, None, tuple(args), dict(kwargs or {}), **options)
        return await self._store(job)

    async def stats(self) -> JobStats:
        """Jobs per level: queued, scheduled, running, succeeded, failed, dead, ..."""
        return await self.broker.stats()

    async def dead(self, limit: int = 100) -> list[Job]:
        """The dead-letter set: jobs that failed every run they were allowed."""
        return await self.broker.dead(limit)

    async def requeue_dead(self, job_ids: list[str] | None = None) -> int:
        """Put dead jobs (all, or these) back in their queues, with fresh attempts."""
        return await self.broker.requeue_dead(job_ids)

    async def close(self) -> None:
        """Close the broker's connections, and the thread that serves sync calls."""
        portal, self._portal = self._portal, None
        if portal is not None:
            portal.close()
        await self.broker.close()

    # -- sync --------------------------------------------------------------------

    def run_sync(self, make: Callable[[Broker], Coroutine[Any, Any, T]]) -> T:
        """Run a broker coroutine from sync code, on the queue's own loop thread.

        ``make`` gets a copy of the broker with connections of that loop.
        """
        with self._portal_lock:
            if self._portal is None:
                self._portal = _Portal(self.broker.copy())
            portal = self._portal
        return portal.call(make)

    # -- building and storing jobs -----------------------------------------------

    def _build(
        self,
        task_name: str,
        task: Task[Any, Any] | None,
        args: tuple[object, ...],
        kwargs: dict[str, object],
        *,
        level: Level | str | None = None,
        flow: str | None = None,
        idempotency_key: str | None = None,
        delay: When | None = None,
        deadline: When | None = None,
        retries: int | None = None,
        timeout: float | None = None,
    ) -> Job:
        chosen = self._level(level, task)
        if flow is not None and not isinstance(flow, str):
            raise TypeError(f"flow = {flow!r}: expected a str naming the flow (tenant, user, ...)")
        if idempotency_key is not None and (
            not isinstance(idempotency_key, str) or not idempotency_key
        ):
            raise TypeError(f"idempotency_key = {idempotency_key!r}: expected a non-empty str")
        now = _now()
        run_at = None if delay is None else _when("delay", delay, now)
        deadline_at = None if deadline is None else _when("deadline", deadline, now)
        retry = task.retry if task is not None else RetryPolicy()
        retry_chosen = task is not None or retries is not None
        if retries is not None:
            retry = RetryPolicy(retries, retry.base, retry.factor, retry.cap, retry.jitter)
        if timeout is None and task is not None:
            timeout = task.timeout
        elif timeout is not None:
            _check_seconds("timeout", timeout, positive=True)
        payload = self.serializer.dumps([list(args), kwargs])
        ttl = (
            task.result_ttl if task is not None and task.result_ttl is not None else self.result_ttl
        )
        return Job(
            id=uuid.uuid4().hex,
            task=task_name,
            payload=payload,
            level=chosen.name,
            flow=flow or "",
            retry=retry,
            timeout=timeout,
            deadline=deadline_at,
            run_at=run_at,
            enqueued_at=now,
            idempotency_key=idempotency_key,
            result_ttl=ttl,
            retry_chosen=retry_chosen,
        )

    def _level(self, level: Level | str | None, task: Task[Any, Any] | None) -> Level:
        """The enqueue's level, else the task's, else the current request's, else the default."""
        if level is not None:
            return self.levels.resolve(level)
        if task is not None and task.level is not None:
            return self.levels.resolve(task.level)
        here = current_level()
        if here is not None and here.name in self.levels:
            return self.levels[here.name]
        return self.default_level

    async def _store(self, job: Job) -> JobHandle[Any]:
        stored = await self.broker.enqueue(job)
        return JobHandle(self, stored.id, created=stored.id == job.id)

    def __repr__(self) -> str:
        return f"<JobQueue {self.broker!r}, {len(self.tasks)} tasks>"


@final
class Task(Generic[P, R]):
    """A function registered on a `JobQueue`; call it directly, or `enqueue` it to run later."""

    def __init__(  # noqa: PLR0917
        self,
        queue: JobQueue,
        function: Callable[P, R],
        name: str,
        level: str | None,
        retry: RetryPolicy,
        timeout: float | None,
        result_ttl: float | None,
    ) -> None:
        self.queue = queue
        self.function = function
        self.name = name
        self.level = level
        self.retry = retry
        self.timeout = timeout
        self.result_ttl = result_ttl
        self.is_async = inspect.iscoroutinefunction(function)
        self._signature = inspect.signature(function)
        self.__doc__ = function.__doc__
        self.__name__ = getattr(function, "__name__", name)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.function(*args, **kwargs)

    async def enqueue(self, *args: Any, **kwargs: Any) -> JobHandle[Any]:
        """Store a job that runs this task with these arguments; returns its handle at once.

        Options taken out of ``kwargs``: ``level``, ``flow``,
        ``idempotency_key``, ``delay`` (seconds, timedelta or datetime),
        ``deadline`` (likewise: shed if not started by then), ``retries``,
        ``timeout``. A function parameter with one of these names is passed
        with `enqueue_call`.
        """
        options = {k: kwargs.pop(k) for k in _OPTIONS if k in kwargs}
        return await self.enqueue_call(args, kwargs, **options)

    async def enqueue_call(
        self, args: tuple[object, ...], kwargs: Mapping[str, object], **options: Any
    ) -> JobHandle[Any]:
        """`enqueue` with the function's arguments given apart from the options."""
        job = self.build(args, kwargs, **options)
        return await self.queue._store(job)

    def enqueue_sync(self, *args: Any, **kwargs: Any) -> JobHandle[Any]:
        """`enqueue` for sync code (a thread, a script, a sync web framework)."""
        options = {k: kwargs.pop(k) for k in _OPTIONS if k in kwargs}
        job = self.build(args, kwargs, **options)
        stored = self.queue.run_sync(lambda broker: broker.enqueue(job))
        return JobHandle(self.queue, stored.id, created=stored.id == job.id)

    def build(self, args: tuple[object, ...], kwargs: Mapping[str, object], **options: Any) -> Job:
        """The job `enqueue` would store: arguments checked against the signature and serialized."""
        unknown = set(options) - set(_OPTIONS)
        if unknown:
            raise TypeError(
                f"unknown enqueue option(s) {sorted(unknown)}; accepted: {list(_OPTIONS)}"
            )
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"task {self.name}: {exc}") from None
        return self.queue._build(self.name, self, tuple(args), dict(kwargs), **options)

    def __repr__(self) -> str:
        return f"<Task {self.name} level={self.level} retries={self.retry.retries}>"


_OPTIONS = ("level", "flow", "idempotency_key", "delay", "deadline", "retries", "timeout")


@final
class JobHandle(Generic[T]):
    """An enqueued job, by id: its status, its result when it has one, cancelling it.

    ``created`` is False when an idempotency key matched an existing job,
    whose handle this then is.
    """

    def __init__(self, queue: JobQueue, job_id: str, *, created: bool = True) -> None:
        self.queue = queue
        self.id = job_id
        self.created = created

    async def job(self) -> Job:
        """The job as stored now; raises JobNotFound if unknown or expired."""
        job = await self.queue.broker.get(self.id)
        if job is None:
            raise _not_found(self.id)
        return job

    async def status(self) -> JobState:
        """The job's state now."""
        return (await self.job()).state

    async def result(self, timeout: float | None = None) -> T:
        """The job's return value, once it has finished; woken by the broker, not by polling.

        Raises `TaskFailed` if it ended without one (dead, cancelled, shed),
        TimeoutError if ``timeout`` seconds pass first.
        """
        return await _await_result(self.queue.broker, self.queue.serializer, self.id, timeout)  # type: ignore[return-value]

    async def cancel(self) -> bool:
        """Cancel the job if it has not started; True if it is now cancelled."""
        job = await self.queue.broker.cancel(self.id)
        if job is None:
            raise _not_found(self.id)
        return job.state is JobState.CANCELLED

    # sync counterparts, for sync code

    def status_sync(self) -> JobState:
        """`status` for sync code."""
        job = self.queue.run_sync(lambda broker: broker.get(self.id))
        if job is None:
            raise _not_found(self.id)
        return job.state

    def result_sync(self, timeout: float | None = None) -> T:
        """`result` for sync code."""
        serializer = self.queue.serializer
        return self.queue.run_sync(  # type: ignore[return-value]
            lambda broker: _await_result(broker, serializer, self.id, timeout)
        )

    def cancel_sync(self) -> bool:
        """`cancel` for sync code."""
        job = self.queue.run_sync(lambda broker: broker.cancel(self.id))
        if job is None:
            raise _not_found(self.id)
        return job.state is JobState.CANCELLED

    def __repr__(self) -> str:
        return f"<JobHandle {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobHandle) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)


def _not_found(job_id: str) -> JobNotFound:
    return JobNotFound(f"no job {job_id}: never enqueued, or dropped after its result TTL")


async def _await_result(
    broker: Broker, serializer: Serializer, job_id: str, timeout: float | None
) -> object:
    """Wait for the job to finish (woken by the broker) and decode its result."""
    if timeout is not None:
        _check_seconds("timeout", timeout, positive=False)
    loop = asyncio.get_running_loop()
    until = None if timeout is None else loop.time() + timeout
    while True:
        left = 3600.0 if until is None else max(0.0, until - loop.time())
        job = await broker.wait(job_id, left)
        if job is None:
            raise _not_found(job_id)
        if job.state is JobState.SUCCEEDED:
            return serializer.loads(job.result or b"null")
        if job.is_finished:
            raise TaskFailed(job)
        if until is not None and loop.time() >= until:
            raise TimeoutError(
                f"job {job_id} ({job.task}) is still {job.state.value} after {timeout}s"
            )


@final
class _Portal:
    """An event loop on a thread of its own, running a broker copy for sync callers."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="prioritize-jobs-sync", daemon=True
        )
        self.thread.start()

    def call(self, make: Callable[[Broker], Awaitable[T]]) -> T:
        async def run() -> T:
            return await make(self.broker)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.broker.close(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def _gate_policy(policy: Policy | GatePolicy | None, gate: str) -> GatePolicy:
    if isinstance(policy, GatePolicy):
        return policy
    if policy is None:
        return GatePolicy(capacity=DEFAULT_CAPACITY, name=gate)
    if isinstance(policy, Policy):
        if gate in policy.gates:
            return policy.gate(gate)
        return GatePolicy(capacity=DEFAULT_CAPACITY, name=gate, level_set=policy.levels)
    raise TypeError(f"policy = {policy!r}: expected a Policy, a GatePolicy or None")


def _default_level(policy: Policy | GatePolicy | None, levels: LevelSet) -> Level:
    """The policy's default level; for a bare gate, "normal" if it has one, else the least."""
    if isinstance(policy, Policy):
        return policy.default_level
    return levels["normal"] if "normal" in levels else levels.least_important  # noqa: SIM401


def _now() -> float:
    import time

    return time.time()


def _check_seconds(name: str, value: object, *, positive: bool) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= 0 if positive else value < 0):  # type: ignore[operator]
        bound = "> 0" if positive else "≥ 0"
        raise ValueError(f"{name} = {value!r}: expected a finite number of seconds {bound}")


def _when(name: str, value: When, now: float) -> float:
    """Epoch seconds for a delay/deadline given as seconds from now, a timedelta or a datetime."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(
                f"{name} = {value!r} has no time zone: give an aware datetime "
                "(datetime.now(timezone.utc) + ...) or seconds from now"
            )
        return value.timestamp()
    if isinstance(value, timedelta):
        value = value.total_seconds()
    _check_seconds(name, value, positive=False)
    return now + float(value)
