"""The job service: submit jobs over HTTP, follow them, fetch their results, cancel them.

::

    queue = JobQueue("sqlite:///prioritize.db", policy=load_policy())
    app = create_app(queue, policy=load_policy())  # or: prioritize serve module:queue

========  ==================  ===============================================================
POST      /v1/jobs            submit: 202 and ``Location``; 200 if an idempotency key matched
GET       /v1/jobs/{id}       status, and the result once there is one; ``?wait=N`` long-polls
DELETE    /v1/jobs/{id}       cancel a job that has not started
GET       /v1/stats           jobs per level
GET       /metrics            Prometheus
GET       /openapi.json       this API, OpenAPI 3.1
========  ==================  ===============================================================

docs/jobs-api.md has the bodies, status codes, problem types and examples.

Theory of operation
-------------------
* **Only submissions are admitted.** ``POST /v1/jobs`` goes through a
  `PriorityMiddleware` built from the policy, so its rules and trust
  classify the submitting request, and overload sheds it with 503 and
  ``Retry-After``. Reads, cancels, stats and metrics are not admitted: they
  are cheap, and a long poll holding a seat while it waits would let
  pollers crowd out submissions.
* **The job's level is the request's**, or the task's declared level if
  that is less important. A ``level`` in the body may only lower it: the
  same `Classifier` rule an untrusted ``X-Priority`` follows, applied with
  that level as the default.
* **Long polls are woken, not polled**: ``Broker.wait`` returns when the
  job finishes. A client that disconnects ends its wait.
* **Metrics read a snapshot.** A scrape refreshes the job counts from the
  broker at most once per ``stats_max_age`` seconds, on the app's own event
  loop (where the broker's connections live); the collector only reads the
  snapshot, so prometheus_client never calls the broker.
* **Every error is a problem** (RFC 9457, ``application/problem+json``)
  with a ``type`` from `PROBLEM_TYPES`; a 422 lists every bad field.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, final

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, request_response

from .. import __version__
from ..core.classify import Classifier, RequestInfo
from ..core.config import Policy
from ..core.levels import Level
from ..core.policy import GatePolicy
from ..http.middleware import STATE_KEY, PriorityMiddleware
from ..metrics import GateMetrics, HttpMetrics
from ._http import (
    NO_STORE,
    check_media_type,
    http_problem,
    internal_problem,
    invalid,
    not_found,
    problem,
    read_limited,
    refuse_size,
    too_large,
)
from ._openapi import PROBLEM_TYPES, openapi_document
from ._service_metrics import MetricsEndpoint, new_registry
from ._submission import (
    FieldError,
    InvalidSubmission,
    MalformedBody,
    Submission,
    check_arguments,
    header_idempotency_key,
    parse_json,
    read_submission,
)
from .broker import Broker
from .model import Job, JobState, SerializationError
from .queue import JobQueue

__all__ = ["MAX_BODY", "MAX_WAIT", "PROBLEM_TYPES", "SUBMIT_GATE", "create_app"]

#: largest submission body accepted, in bytes (1 MiB)
MAX_BODY = 1 << 20
#: longest long poll, in seconds: longer ``?wait=`` values are cut to it
MAX_WAIT = 60.0
#: the policy gate that admits submissions, unless `create_app` is told another
SUBMIT_GATE = "submit"
#: seats of the stand-in submit gate, for a policy that defines none
SUBMIT_CAPACITY = 64

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


def create_app(
    queue: JobQueue,
    *,
    policy: Policy | None = None,
    tasks: Collection[str] | None = None,
    gate: str = SUBMIT_GATE,
    registry: CollectorRegistry | None = None,
    max_body: int = MAX_BODY,
    stats_max_age: float = 1.0,
) -> Starlette:
    """The job service's ASGI app, over ``queue``.

    ``policy`` classifies submissions (rules, trust) and must have the
    queue's levels; None means the queue's levels with no rules. Submissions
    are admitted through its gate ``gate``; if the policy has no gate of
    that name and ``gate`` is the default, a stand-in of `SUBMIT_CAPACITY`
    seats is used. ``tasks`` are the task names accepted; None accepts the
    queue's registered tasks, or any name if it has none (the workers have
    the code). ``registry`` receives the metrics (a new one, with process
    metrics, if None: apps never clash over names). Raises `TypeError`,
    `ValueError` or `ConfigError` naming what does not fit.
    """
    if not isinstance(queue, JobQueue):
        raise TypeError(f"create_app serves a JobQueue, not {type(queue).__name__}")
    policy = _service_policy(queue, policy, gate)
    service = _Service(queue, _allow_list(queue, tasks), max_body)
    submit = PriorityMiddleware(request_response(service.submit), policy, gate=gate)
    registry = new_registry() if registry is None else registry
    metrics = MetricsEndpoint(queue, registry, stats_max_age)
    gates = GateMetrics(registry)
    for name, admitting in submit.gates.items():
        gates.add(admitting, name)
    # MiddlewareSource declares ignored_headers a plain attribute, which a Counter cannot match
    HttpMetrics(submit, registry)  # type: ignore[arg-type]
    document = openapi_document(
        version=__version__, levels=queue.levels.names, max_body=max_body, max_wait=MAX_WAIT
    )

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    routes = [
        Route("/v1/jobs", submit, methods=["POST"], name="submit_job"),
        Route("/v1/jobs/{job_id}", service.read, methods=["GET"], name="get_job"),
        Route("/v1/jobs/{job_id}", service.cancel, methods=["DELETE"], name="cancel_job"),
        Route("/v1/stats", service.stats, methods=["GET"], name="stats"),
        Route("/metrics", metrics, methods=["GET"], name="metrics"),
        Route("/openapi.json", openapi, methods=["GET"], name="openapi"),
    ]
    handlers = {HTTPException: http_problem, Exception: internal_problem}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.queue = queue
    app.state.middleware = submit
    app.state.registry = registry
    return app


@final
class _Service:
    """The handlers, over one queue."""

    def __init__(self, queue: JobQueue, tasks: frozenset[str] | None, max_body: int) -> None:
        self.queue = queue
        self.max_body = max_body
        self._tasks = tasks
        levels = queue.levels
        #: per level: a classifier with no rules that lets a requested level only lower it
        self._lowering = {lvl.name: Classifier((), default=lvl, levels=levels) for lvl in levels}

    @property
    def broker(self) -> Broker:
        """The queue's broker now (the command may have replaced the one it was built with)."""
        return self.queue.broker

    # -- POST /v1/jobs -------------------------------------------------------------

    async def submit(self, request: Request) -> Response:
        refused = check_media_type(request) or refuse_size(request, self.max_body)
        if refused is not None:
            return refused
        raw = await read_limited(request, self.max_body)
        if raw is None:
            return too_large(request, self.max_body)
        try:
            data = parse_json(raw)
        except MalformedBody as exc:
            return problem(request, 400, "malformed-json", str(exc))
        try:
            submission = self._read(request, data)
        except InvalidSubmission as exc:
            return invalid(request, exc.errors)
        task = self.queue.tasks.get(submission.task)
        level = self._level(request, submission.level, None if task is None else task.level)
        try:
            handle = await self.queue.enqueue(
                submission.task,
                submission.args,
                submission.kwargs,
                level=level,
                flow=submission.flow,
                idempotency_key=submission.idempotency_key,
                delay=submission.delay,
                deadline=submission.deadline,
            )
        except SerializationError as exc:  # a serializer other than JSON refused the arguments
            return invalid(request, [FieldError(self._unwritable(submission), str(exc))])
        location = f"/v1/jobs/{handle.id}"
        if not handle.created:
            return await self._matched(request, handle.id, submission, location)
        status = JobState.SCHEDULED if submission.delay else JobState.QUEUED
        body = {"id": handle.id, "status": status.value, "level": level, "location": location}
        return JSONResponse(body, 202, headers={"Location": location, **NO_STORE})

    def _read(self, request: Request, data: object) -> Submission:
        """The submission in ``data``, with the header's key; every problem at once."""
        errors: list[FieldError] = []
        header_key = None
        raw_key = request.headers.get("idempotency-key")
        if raw_key is not None:
            try:
                header_key = header_idempotency_key(raw_key)
            except InvalidSubmission as exc:
                errors += exc.errors
        tasks = self._accepted()
        try:
            submission = read_submission(
                data, levels=self.queue.levels, tasks=tasks, header_key=header_key
            )
        except InvalidSubmission as exc:
            raise InvalidSubmission(errors + exc.errors) from None
        task = self.queue.tasks.get(submission.task)
        if task is not None:
            errors += check_arguments(task.name, task.function, submission.args, submission.kwargs)
        if errors:
            raise InvalidSubmission(errors)
        return submission

    def _accepted(self) -> frozenset[str] | None:
        """Task names accepted: the allow-list, else those registered now, else any (None)."""
        if self._tasks is not None:
            return self._tasks
        return frozenset(self.queue.tasks) or None

    def _level(self, request: Request, asked: str | None, declared: str | None) -> str:
        """The request's level, lowered to the task's declared level, then to ``asked``.

        A task declared ``bulk`` stays bulk when a critical caller submits
        it (as with `Task.enqueue`), and a task declared ``critical`` is no
        more important than the request that submits it, so an untrusted
        caller cannot raise a job by choosing the task.
        """
        classified: Level = request.scope["state"][STATE_KEY]  # set by PriorityMiddleware
        if declared is not None:
            task_level = self.queue.levels[declared]
            if task_level.rank > classified.rank:
                classified = task_level
        if asked is None:
            return classified.name
        return self._lowering[classified.name].classify(RequestInfo(requested=asked)).name

    def _unwritable(self, submission: Submission) -> str:
        """Which of args and kwargs the queue's serializer refuses."""
        try:
            self.queue.serializer.dumps(submission.args)
        except SerializationError:
            return "args"
        return "kwargs"

    async def _matched(
        self, request: Request, job_id: str, submission: Submission, location: str
    ) -> Response:
        """The answer when the idempotency key is held by a job already stored."""
        job = await self.broker.get(job_id)
        if job is None:
            detail = f"job {job_id}, which held this idempotency key, is gone (past its result TTL)"
            return problem(request, 404, "job-not-found", f"{detail}; send the request again")
        stored = self.queue.serializer.loads(job.payload)
        if job.task != submission.task or stored != [submission.args, submission.kwargs]:
            detail = (
                f"idempotency key {submission.idempotency_key!r} was used for job {job.id} "
                f"({job.task}) with other arguments; use a new key for a new job"
            )
            errors = [FieldError("idempotency_key", "already used for another job")]
            return problem(
                request,
                422,
                "idempotency-key-reused",
                detail,
                errors=[e.as_dict() for e in errors],
                job=location,
            )
        body = {**self._job_body(job), "location": location}
        return JSONResponse(body, 200, headers={"Location": location, **NO_STORE})

    # -- GET and DELETE /v1/jobs/{id} ----------------------------------------------

    async def read(self, request: Request) -> Response:
        job_id: str = request.path_params["job_id"]
        try:
            wait = _wait_seconds(request.query_params.get("wait"))
        except InvalidSubmission as exc:
            return invalid(request, exc.errors)
        if wait > 0:
            found = await _wait_unless_gone(self.broker, job_id, wait, request.receive)
            if found is _GONE:
                return Response(status_code=499)  # nobody reads it; access logs show why
        else:
            found = await self.broker.get(job_id)
        if not isinstance(found, Job):
            return not_found(request, job_id)
        return JSONResponse(self._job_body(found), headers=NO_STORE)

    async def cancel(self, request: Request) -> Response:
        job_id: str = request.path_params["job_id"]
        job = await self.broker.cancel(job_id)
        if job is None:
            return not_found(request, job_id)
        if job.state is not JobState.CANCELLED:
            detail = (
                f"job {job_id} is {job.state.value}: only a queued or scheduled job can be "
                "cancelled"
            )
            return problem(request, 409, "job-not-cancellable", detail, job_status=job.state.value)
        return JSONResponse(self._job_body(job), headers=NO_STORE)

    def _job_body(self, job: Job) -> dict[str, object]:
        result = None
        if job.state is JobState.SUCCEEDED and job.result is not None:
            result = self.queue.serializer.loads(job.result)
        return {
            "id": job.id,
            "task": job.task,
            "level": job.level,
            "flow": job.flow or None,
            "status": job.state.value,
            "attempts": job.attempts,
            "enqueued_at": _time(job.enqueued_at),
            "started_at": _time(job.started_at),
            "finished_at": _time(job.finished_at),
            "run_at": _time(job.run_at),
            "deadline": _time(job.deadline),
            "reason": job.reason,
            "result": result,
            "error": job.error,
            "traceback": job.traceback,
        }

    # -- GET /v1/stats -------------------------------------------------------------

    async def stats(self, request: Request) -> Response:
        stats = await self.queue.stats()
        return JSONResponse({"levels": stats.as_dict()}, headers=NO_STORE)


def _wait_seconds(text: str | None) -> float:
    """``?wait=``: seconds ≥ 0, cut to `MAX_WAIT`; `InvalidSubmission` naming ``wait``."""
    if text is None:
        return 0.0
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 <= seconds < float("inf"):
        message = (
            f"expected a number of seconds ≥ 0 (at most {MAX_WAIT:g} are waited), got {text!r}"
        )
        raise InvalidSubmission([FieldError("wait", message)])
    return min(seconds, MAX_WAIT)


# -- waiting ------------------------------------------------------------------------------

#: `_wait_unless_gone`'s answer when the client left first
_GONE = object()


async def _wait_unless_gone(
    broker: Broker, job_id: str, seconds: float, receive: Receive
) -> object:
    """``broker.wait``, given up if the client disconnects first (then `_GONE`)."""
    waiting = asyncio.ensure_future(broker.wait(job_id, seconds))
    leaving = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((waiting, leaving), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiting, leaving):
            task.cancel()
        await asyncio.gather(waiting, leaving, return_exceptions=True)
    if waiting.cancelled():
        return _GONE
    return waiting.result()


async def _disconnected(receive: Receive) -> None:
    """Return when the client disconnects (a GET's empty body is read and dropped)."""
    while (await receive())["type"] != "http.disconnect":
        pass


# -- setup ------------------------------------------------------------------------------


def _service_policy(queue: JobQueue, policy: Policy | None, gate: str) -> Policy:
    """The policy submissions are classified by, with the gate that admits them."""
    if policy is None:
        policy = Policy(levels=queue.levels, default_level=queue.default_level, source="<default>")
    elif not isinstance(policy, Policy):
        raise TypeError(f"policy = {policy!r}: expected a Policy (load_policy()) or None")
    if policy.levels != queue.levels:
        raise ValueError(
            f"the policy's levels {policy.levels.names} are not the queue's "
            f"{queue.levels.names}: a submitted job gets a level of the policy, which the "
            "queue must have; build both from the same policy"
        )
    if gate in policy.gates or gate != SUBMIT_GATE:
        policy.gate(gate)  # raises ConfigError naming the defined gates
        return policy
    stand_in = GatePolicy(capacity=SUBMIT_CAPACITY, name=gate, level_set=policy.levels)
    return replace(policy, gates={**policy.gates, gate: stand_in})


def _allow_list(queue: JobQueue, tasks: Collection[str] | None) -> frozenset[str] | None:
    if tasks is None:
        return None
    if isinstance(tasks, str):
        raise TypeError(f"tasks = {tasks!r}: expected a collection of task names, not one name")
    names = frozenset(tasks)
    if not names:
        raise ValueError(
            "tasks is empty, so every submission would be refused; pass None to accept the "
            "queue's registered tasks (or any name, if it has none)"
        )
    unknown = sorted(names - set(queue.tasks)) if queue.tasks else []
    if unknown:
        raise ValueError(
            f"tasks {unknown} are not registered on the queue; registered: {sorted(queue.tasks)}"
        )
    return names


def _time(epoch: float | None) -> str | None:
    """RFC 3339 in UTC, to the millisecond: ``2026-11-23T09:30:00.125Z``."""
    if epoch is None:
        return None
    stamp = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")
