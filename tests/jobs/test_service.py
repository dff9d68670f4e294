"""The job service (`prioritize.jobs.service`): in-process over ASGI, and through a real uvicorn.

Jobs are completed by a `Worker` (registered tasks) or by hand, reserving
and finishing them on the broker as a worker would (tasks known only by
name). A long poll is known to be waiting when the broker's ``wait`` has
been entered (`Watched`), never by sleeping.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from prioritize import ConfigError, GatePolicy, LevelPolicy, LevelSet, Policy, Rule, TrustPolicy
from prioritize.jobs import (
    JobQueue,
    MemoryBroker,
    Outcome,
    OutcomeKind,
    SerializationError,
    open_broker,
)
from prioritize.jobs.service import MAX_BODY, MAX_WAIT, PROBLEM_TYPES, create_app
from prioritize.jobs.worker import Worker
from tests.servers import serve_asgi

SECRET = b"a-secret-the-services-share"
PROBLEM_JSON = "application/problem+json"
JSON = {"Content-Type": "application/json"}


class Watched:
    """A broker that tells the test when a long poll waits on it, and how that wait ended."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.timeouts: list[float] = []
        self.was_cancelled = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def wait(self, job_id: str, timeout: float) -> Any:
        self.timeouts.append(timeout)
        self.entered.set()
        try:
            return await self.inner.wait(job_id, timeout)
        except asyncio.CancelledError:
            self.was_cancelled = True
            raise


Store = Callable[[], Any]


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """Makes the broker a test runs on: every job-storing test runs on memory and SQLite."""
    if request.param == "memory":
        return MemoryBroker
    return lambda: open_broker(f"sqlite:///{tmp_path}/jobs.db")


def queue_of(broker: Any = None, policy: Policy | None = None) -> JobQueue:
    return JobQueue(Watched(MemoryBroker() if broker is None else broker), policy=policy)


def app_of(queue: JobQueue, **options: Any) -> Starlette:
    return create_app(queue, **options)


def client(app: Any, *, raise_errors: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_errors)
    return httpx.AsyncClient(transport=transport, base_url="http://jobs")


def run(body: Callable[[], Coroutine[Any, Any, None]], *queues: JobQueue) -> None:
    """Run the test's body, then close the queues' brokers on the same loop."""

    async def main() -> None:
        try:
            await body()
        finally:
            for queue in queues:
                await queue.close()

    asyncio.run(main())


async def complete(queue: JobQueue, value: object) -> str:
    """Do a worker's part by hand: reserve the next job and report it succeeded with ``value``."""
    (job,) = await queue.broker.reserve("test-worker", 1, lease=30)
    result = queue.serializer.dumps(value)
    outcome = Outcome(job.id, job.attempts, OutcomeKind.SUCCEEDED, result=result)
    assert await queue.broker.finish("test-worker", [outcome]) == [True]
    return job.id


def problem_of(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    """The problem body, after checking the status, media type, type, title and instance."""
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["type"] == (PROBLEM_TYPES[kind] if kind else "about:blank")
    assert body["status"] == status
    assert body["instance"] == response.request.url.path
    return body


def errors_of(response: httpx.Response) -> list[dict[str, str]]:
    body = problem_of(response, 422, "invalid-request")
    assert body["title"] == "Unprocessable Content"
    fields = ", ".join(dict.fromkeys(e["field"] for e in body["errors"]))
    count = len(body["errors"])
    assert (
        body["detail"] == f"{count} problem{'s' if count != 1 else ''} with the request: {fields}"
    )
    return body["errors"]  # type: ignore[no-any-return]


def levels_message() -> str:
    return "valid levels are ['critical', 'high', 'normal', 'low', 'bulk']"


# --- submit, read, complete ------------------------------------------------------------------


def test_a_submitted_job_is_accepted_queued_and_its_result_read_once_a_worker_ran_it(
    store: Store,
) -> None:
    queue = queue_of(store())

    @queue.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    async def body() -> None:
        async with client(app_of(queue)) as http:
            submitted = await http.post(
                "/v1/jobs", json={"task": "add", "args": [2], "kwargs": {"b": 3}}
            )
            assert submitted.status_code == 202
            job_id = submitted.json()["id"]
            location = f"/v1/jobs/{job_id}"
            assert submitted.headers["location"] == location
            assert submitted.json() == {
                "id": job_id,
                "status": "queued",
                "level": "normal",
                "location": location,
            }
            queued = (await http.get(location)).json()
            assert queued["status"] == "queued"
            assert queued["started_at"] is None
            assert queued["result"] is None
            await Worker(queue, concurrency=1).run_until_idle()
            done = await http.get(location)
        assert done.headers["cache-control"] == "no-store"
        job = done.json()
        assert {k: job[k] for k in ("id", "task", "level", "flow", "status", "attempts")} == {
            "id": job_id,
            "task": "add",
            "level": "normal",
            "flow": None,
            "status": "succeeded",
            "attempts": 1,
        }
        assert job["result"] == 5
        assert job["error"] is None
        assert job["traceback"] is None
        for stamp in ("enqueued_at", "started_at", "finished_at"):
            assert job[stamp].endswith("Z")
        assert job["enqueued_at"] <= job["started_at"] <= job["finished_at"]

    run(body, queue)


def test_without_registered_tasks_any_task_name_is_stored_for_the_workers(store: Store) -> None:
    queue = queue_of(store())

    async def body() -> None:
        async with client(app_of(queue)) as http:
            submitted = await http.post(
                "/v1/jobs",
                json={"task": "reports.monthly", "args": [2026, 11], "flow": "tenant-4"},
            )
            assert submitted.status_code == 202
            job_id = await complete(queue, {"rows": 12})
            assert job_id == submitted.json()["id"]
            job = (await http.get(submitted.headers["location"])).json()
        assert (job["task"], job["flow"], job["status"]) == (
            "reports.monthly",
            "tenant-4",
            "succeeded",
        )
        assert job["result"] == {"rows": 12}

    run(body, queue)


def test_a_delayed_job_is_scheduled_and_a_deadline_is_kept(store: Store) -> None:
    queue = queue_of(store())

    async def body() -> None:
        async with client(app_of(queue)) as http:
            submitted = await http.post(
                "/v1/jobs", json={"task": "later", "delay": 3600, "deadline": 7200}
            )
            job = (await http.get(submitted.headers["location"])).json()
        assert submitted.status_code == 202
        assert submitted.json()["status"] == "scheduled"
        assert job["status"] == "scheduled"
        assert job["run_at"] < job["deadline"]

    run(body, queue)


def test_a_failed_job_shows_its_error_and_traceback(store: Store) -> None:
    queue = queue_of(store())

    @queue.task(name="explode", retries=0)
    async def explode() -> None:
        raise RuntimeError("the disk is full")

    async def body() -> None:
        async with client(app_of(queue)) as http:
            location = (await http.post("/v1/jobs", json={"task": "explode"})).headers["location"]
            await Worker(queue, concurrency=1).run_until_idle()
            job = (await http.get(location)).json()
        assert job["status"] == "dead"
        assert job["result"] is None
        assert job["error"] == "RuntimeError: the disk is full"
        assert "raise RuntimeError" in job["traceback"]

    run(body, queue)


def test_an_unknown_job_is_a_404_problem() -> None:
    async def body() -> None:
        async with client(app_of(queue_of())) as http:
            for response in (await http.get("/v1/jobs/nope"), await http.delete("/v1/jobs/nope")):
                problem = problem_of(response, 404, "job-not-found")
                assert problem["title"] == "Not Found"
                assert problem["detail"] == (
                    "no job nope: never submitted, or dropped after its result TTL"
                )

    run(body)


# --- long polls --------------------------------------------------------------------------------


def test_a_long_poll_answers_as_soon_as_the_job_finishes(store: Store) -> None:
    queue = queue_of(store())
    watched: Watched = queue.broker  # type: ignore[assignment]

    async def body() -> None:
        async with client(app_of(queue)) as http:
            location = (await http.post("/v1/jobs", json={"task": "slow"})).headers["location"]
            polling = asyncio.ensure_future(http.get(location, params={"wait": 30}))
            assert await asyncio.to_thread(watched.entered.wait, 30)
            assert not polling.done()
            await complete(queue, "done")
            answer = await polling
        assert answer.status_code == 200
        assert (answer.json()["status"], answer.json()["result"]) == ("succeeded", "done")
        assert watched.timeouts == [30.0]

    run(body, queue)


def test_a_long_poll_waits_at_most_max_wait_and_no_wait_reads_at_once(store: Store) -> None:
    queue = queue_of(store())
    watched: Watched = queue.broker  # type: ignore[assignment]

    async def body() -> None:
        async with client(app_of(queue)) as http:
            location = (await http.post("/v1/jobs", json={"task": "t"})).headers["location"]
            assert (await http.get(location, params={"wait": 0})).json()["status"] == "queued"
            assert (await http.get(location)).json()["status"] == "queued"
            assert watched.timeouts == []
            await complete(queue, None)
            finished = await http.get(location, params={"wait": 3600})
        assert finished.json()["status"] == "succeeded"
        assert watched.timeouts == [MAX_WAIT]

    run(body, queue)


@pytest.mark.parametrize("wait", ["soon", "-1", "nan", "inf", ""])
def test_a_wait_that_is_not_seconds_is_a_422_naming_wait(wait: str) -> None:
    async def body() -> None:
        async with client(app_of(queue_of())) as http:
            response = await http.get("/v1/jobs/any", params={"wait": wait})
        assert errors_of(response) == [
            {
                "field": "wait",
                "message": "expected a number of seconds ≥ 0 (at most 60 are waited), "
                f"got {wait!r}",
            }
        ]

    run(body)


def test_a_client_that_disconnects_ends_its_long_poll(store: Store) -> None:
    queue = queue_of(store())
    watched: Watched = queue.broker  # type: ignore[assignment]
    sent: list[MutableMapping[str, Any]] = []

    async def body() -> None:
        app = app_of(queue)
        handle = await queue.enqueue("t")
        messages = iter([{"type": "http.request", "body": b"", "more_body": False}])

        async def receive() -> dict[str, Any]:
            message = next(messages, None)
            if message is not None:
                return message
            assert await asyncio.to_thread(watched.entered.wait, 30)
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": f"/v1/jobs/{handle.id}",
            "raw_path": f"/v1/jobs/{handle.id}".encode(),
            "query_string": b"wait=30",
            "headers": [],
            "client": ("127.0.0.1", 5000),
            "server": ("jobs", 80),
        }
        await app(scope, receive, send)
        assert (await handle.status()).value == "queued"

    run(body, queue)
    assert watched.was_cancelled
    assert sent[0]["status"] == 499


# --- cancel --------------------------------------------------------------------------------------


def test_delete_cancels_a_queued_job_and_says_so_again_when_repeated(store: Store) -> None:
    queue = queue_of(store())

    async def body() -> None:
        async with client(app_of(queue)) as http:
            location = (await http.post("/v1/jobs", json={"task": "t"})).headers["location"]
            first = await http.delete(location)
            again = await http.delete(location)
            read = await http.get(location)
        for response in (first, again, read):
            assert response.status_code == 200
            assert response.json()["status"] == "cancelled"
            assert response.json()["reason"] == "cancelled"

    run(body, queue)


def test_delete_of_a_running_or_finished_job_is_a_409_problem(store: Store) -> None:
    queue = queue_of(store())

    async def body() -> None:
        async with client(app_of(queue)) as http:
            location = (await http.post("/v1/jobs", json={"task": "t"})).headers["location"]
            (job,) = await queue.broker.reserve("test-worker", 1, lease=30)
            running = await http.delete(location)
            outcome = Outcome(job.id, job.attempts, OutcomeKind.SUCCEEDED, result=b"1")
            await queue.broker.finish("test-worker", [outcome])
            finished = await http.delete(location)
        for response, state in ((running, "running"), (finished, "succeeded")):
            problem = problem_of(response, 409, "job-not-cancellable")
            assert problem["title"] == "Conflict"
            assert problem["detail"] == (
                f"job {job.id} is {state}: only a queued or scheduled job can be cancelled"
            )
            assert problem["job_status"] == state

    run(body, queue)


# --- idempotency ---------------------------------------------------------------------------------


def test_an_idempotency_key_header_answers_a_repeat_with_200_and_the_first_job(
    store: Store,
) -> None:
    queue = queue_of(store())

    async def body() -> None:
        async with client(app_of(queue)) as http:
            request = {"task": "charge", "args": ["o-17", 1999]}
            first = await http.post("/v1/jobs", json=request, headers={"Idempotency-Key": "k-1"})
            repeat = await http.post("/v1/jobs", json=request, headers={"Idempotency-Key": '"k-1"'})
            other = await http.post("/v1/jobs", json=request, headers={"Idempotency-Key": "k-2"})
        assert first.status_code == 202
        assert repeat.status_code == 200
        job_id = first.json()["id"]
        assert repeat.headers["location"] == f"/v1/jobs/{job_id}"
        job = repeat.json()
        assert (job["id"], job["status"], job["level"]) == (job_id, "queued", "normal")
        assert job["location"] == f"/v1/jobs/{job_id}"
        assert job["task"] == "charge"
        assert other.status_code == 202
        assert other.json()["id"] != job_id

    run(body, queue)


def test_an_idempotency_key_in_the_body_works_alike_and_may_repeat_the_header(store: Store) -> None:
    queue = queue_of(store())

    async def body() -> None:
        async with client(app_of(queue)) as http:
            request = {"task": "charge", "kwargs": {"cents": 5}, "idempotency_key": "k-9"}
            first = await http.post("/v1/jobs", json=request)
            both = await http.post("/v1/jobs", json=request, headers={"Idempotency-Key": "k-9"})
        assert (first.status_code, both.status_code) == (202, 200)
        assert both.json()["id"] == first.json()["id"]

    run(body, queue)


def test_a_reused_idempotency_key_with_other_arguments_is_a_422_problem(store: Store) -> None:
    queue = queue_of(store())

    async def body() -> None:
        async with client(app_of(queue)) as http:
            headers = {"Idempotency-Key": "k-1"}
            first = await http.post(
                "/v1/jobs", json={"task": "charge", "args": [1]}, headers=headers
            )
            other_args = await http.post(
                "/v1/jobs", json={"task": "charge", "args": [2]}, headers=headers
            )
            other_task = await http.post(
                "/v1/jobs", json={"task": "refund", "args": [1]}, headers=headers
            )
        job_id = first.json()["id"]
        for response in (other_args, other_task):
            problem = problem_of(response, 422, "idempotency-key-reused")
            assert problem["detail"] == (
                f"idempotency key 'k-1' was used for job {job_id} (charge) with other "
                "arguments; use a new key for a new job"
            )
            assert problem["errors"] == [
                {"field": "idempotency_key", "message": "already used for another job"}
            ]
            assert problem["job"] == f"/v1/jobs/{job_id}"

    run(body, queue)


def test_a_job_gone_between_matching_its_key_and_reading_it_is_a_404_problem() -> None:
    class Forgetful(Watched):
        async def get(self, job_id: str) -> Any:
            return None

    queue = JobQueue(Forgetful(MemoryBroker()))

    async def body() -> None:
        async with client(app_of(queue)) as http:
            request = {"task": "t", "idempotency_key": "k"}
            first = await http.post("/v1/jobs", json=request)
            repeat = await http.post("/v1/jobs", json=request)
        problem = problem_of(repeat, 404, "job-not-found")
        assert problem["detail"] == (
            f"job {first.json()['id']}, which held this idempotency key, is gone (past its "
            "result TTL); send the request again"
        )

    run(body)


def test_idempotency_key_problems_are_named() -> None:
    async def body() -> None:
        async with client(app_of(queue_of())) as http:
            spaced = await http.post(
                "/v1/jobs", json={"task": "t"}, headers={"Idempotency-Key": "a b"}
            )
            empty = await http.post(
                "/v1/jobs", json={"task": "t"}, headers={"Idempotency-Key": '""'}
            )
            long = await http.post(
                "/v1/jobs", json={"task": "t"}, headers={"Idempotency-Key": "k" * 256}
            )
            differs = await http.post(
                "/v1/jobs",
                json={"task": "t", "idempotency_key": "b"},
                headers={"Idempotency-Key": "a"},
            )
        assert errors_of(spaced) == [
            {
                "field": "Idempotency-Key",
                "message": "'a b' is not a key: send a quoted string (\"8e03978e-...\") or "
                "visible ASCII characters without spaces",
            }
        ]
        assert errors_of(empty) == [
            {"field": "Idempotency-Key", "message": "a key is 1 to 255 characters, got 0"}
        ]
        assert errors_of(long) == [
            {"field": "Idempotency-Key", "message": "a key is 1 to 255 characters, got 256"}
        ]
        assert errors_of(differs) == [
            {
                "field": "idempotency_key",
                "message": "'b' differs from the Idempotency-Key header ('a'); send the key "
                "once, or the same in both",
            }
        ]

    run(body)


# --- levels: rules, trust, and the body's level ---------------------------------------------------


def classifying_policy(gates: dict[str, GatePolicy] | None = None) -> Policy:
    return Policy(
        rules=(
            Rule("high", headers={"x-plan": "gold"}),
            Rule("low", path_prefix="/v1/jobs", headers={"x-batch": "*"}),
        ),
        trust=TrustPolicy(secrets=(SECRET,)),
        gates=gates or {},
    )


def test_the_policy_rules_and_trust_decide_the_level_and_the_body_may_only_lower_it() -> None:
    policy = classifying_policy()
    queue = queue_of(policy=policy)
    signed = policy.trust.sign("critical", time.time())

    async def level(headers: dict[str, str], **fields: object) -> str:
        async with client(create_app(queue, policy=policy, registry=CollectorRegistry())) as http:
            response = await http.post("/v1/jobs", json={"task": "t", **fields}, headers=headers)
            assert response.status_code == 202
            job = (await http.get(response.headers["location"])).json()
        assert job["level"] == response.json()["level"]
        return str(job["level"])

    async def body() -> None:
        assert await level({}) == "normal"  # no rule matched: the default
        assert await level({"X-Plan": "gold"}) == "high"  # a header rule
        assert await level({"X-Batch": "yes"}) == "low"  # a path and header rule
        assert await level({"X-Priority": "bulk"}) == "bulk"  # anyone may lower
        assert await level({"X-Plan": "gold", "X-Priority": "critical"}) == "high"  # not raise
        assert await level(signed) == "critical"  # a signed header raises
        assert await level({}, level="low") == "low"  # the body lowers
        assert await level({"X-Plan": "gold"}, level="critical") == "high"  # and never raises
        assert await level(signed, level="critical") == "critical"
        assert await level(signed, level="high") == "high"  # below the signed level

    run(body)


def test_a_task_declared_less_important_keeps_its_level_and_never_raises_one() -> None:
    policy = classifying_policy()
    queue = queue_of(policy=policy)

    @queue.task(name="nightly", level="bulk")
    def nightly() -> None: ...

    @queue.task(name="page", level="critical")
    def page() -> None: ...

    signed = policy.trust.sign("critical", time.time())

    async def level(task: str, headers: dict[str, str]) -> str:
        async with client(create_app(queue, policy=policy, registry=CollectorRegistry())) as http:
            response = await http.post("/v1/jobs", json={"task": task}, headers=headers)
            assert response.status_code == 202
        return str(response.json()["level"])

    async def body() -> None:
        assert await level("nightly", signed) == "bulk"  # a critical caller: still bulk
        assert await level("page", {}) == "normal"  # the task cannot raise the request
        assert await level("page", signed) == "critical"

    run(body)


def test_a_submission_the_gate_sheds_gets_503_with_retry_after() -> None:
    gate = GatePolicy(capacity=1, levels={"bulk": LevelPolicy(max_wait=0)})
    policy = classifying_policy({"submit": gate})
    queue = queue_of(policy=policy)
    app = app_of(queue, policy=policy)

    async def body() -> None:
        seat = app.state.middleware.gates["submit"].slot("critical")
        assert seat.request()  # the submit gate's only seat is taken
        try:
            async with client(app) as http:
                response = await http.post(
                    "/v1/jobs", json={"task": "t"}, headers={"X-Priority": "bulk"}
                )
        finally:
            seat.release()
        problem = problem_of(response, 503, "shed")
        assert response.headers["retry-after"] == "1"
        assert (problem["level"], problem["reason"], problem["gate"]) == ("bulk", "limit", "submit")
        assert (await queue.stats()).total("queued") == 0

    run(body)


# --- registered tasks and the allow-list -------------------------------------------------------


def registered_queue() -> JobQueue:
    queue = queue_of()

    @queue.task(name="billing.charge")
    def charge(order: str, cents: int) -> None: ...

    @queue.task(name="billing.refund")
    def refund(order: str) -> None: ...

    return queue


def test_with_registered_tasks_an_unknown_task_is_a_422_listing_them() -> None:
    async def body() -> None:
        async with client(app_of(registered_queue())) as http:
            typo = await http.post("/v1/jobs", json={"task": "billing.charg"})
            other = await http.post("/v1/jobs", json={"task": "mail.send"})
        assert errors_of(typo) == [
            {
                "field": "task",
                "message": "unknown task 'billing.charg'; did you mean 'billing.charge'? "
                "accepted tasks: billing.charge, billing.refund",
            }
        ]
        assert errors_of(other) == [
            {
                "field": "task",
                "message": "unknown task 'mail.send'; accepted tasks: billing.charge, "
                "billing.refund",
            }
        ]

    run(body)


def test_arguments_that_do_not_fit_a_registered_task_are_a_422() -> None:
    async def body() -> None:
        async with client(app_of(registered_queue())) as http:
            extra = await http.post("/v1/jobs", json={"task": "billing.refund", "args": ["o", 2]})
            missing = await http.post("/v1/jobs", json={"task": "billing.charge", "args": ["o"]})
            unknown = await http.post(
                "/v1/jobs", json={"task": "billing.refund", "kwargs": {"order": "o", "why": "x"}}
            )
        assert errors_of(extra) == [
            {"field": "args", "message": "task billing.refund: too many positional arguments"}
        ]
        assert errors_of(missing) == [
            {
                "field": "kwargs",
                "message": "task billing.charge: missing a required argument: 'cents'",
            }
        ]
        assert errors_of(unknown) == [
            {
                "field": "kwargs",
                "message": "task billing.refund: got an unexpected keyword argument 'why'",
            }
        ]

    run(body)


def test_an_allow_list_limits_the_tasks_accepted() -> None:
    async def body() -> None:
        app = app_of(registered_queue(), tasks=["billing.refund"])
        async with client(app) as http:
            refused = await http.post("/v1/jobs", json={"task": "billing.charge", "args": ["o", 1]})
            accepted = await http.post("/v1/jobs", json={"task": "billing.refund", "args": ["o"]})
        assert errors_of(refused) == [
            {
                "field": "task",
                "message": "unknown task 'billing.charge'; did you mean 'billing.refund'? "
                "accepted tasks: billing.refund",
            }
        ]
        assert accepted.status_code == 202

    run(body)


def test_create_app_refuses_what_cannot_work() -> None:
    queue = registered_queue()
    with pytest.raises(TypeError) as wrong_queue:
        create_app("memory://")  # type: ignore[arg-type]
    assert str(wrong_queue.value) == "create_app serves a JobQueue, not str"
    with pytest.raises(TypeError) as wrong_policy:
        create_app(queue, policy={"gates": {}})  # type: ignore[arg-type]
    assert str(wrong_policy.value) == (
        "policy = {'gates': {}}: expected a Policy (load_policy()) or None"
    )
    three = Policy(
        levels=LevelSet(["gold", "silver", "bronze"]),
        default_level=LevelSet(["gold", "silver", "bronze"])["silver"],
    )
    with pytest.raises(ValueError, match="the policy's levels") as other_levels:
        create_app(queue, policy=three)
    assert str(other_levels.value) == (
        "the policy's levels ['gold', 'silver', 'bronze'] are not the queue's ['critical', "
        "'high', 'normal', 'low', 'bulk']: a submitted job gets a level of the policy, which "
        "the queue must have; build both from the same policy"
    )
    with pytest.raises(ConfigError) as no_gate:
        create_app(queue, gate="web")
    assert str(no_gate.value) == "gates.web: no such gate in <default>; gates defined: none"
    with pytest.raises(TypeError) as one_name:
        create_app(queue, tasks="billing.charge")
    assert str(one_name.value) == (
        "tasks = 'billing.charge': expected a collection of task names, not one name"
    )
    with pytest.raises(ValueError, match="tasks is empty") as empty:
        create_app(queue, tasks=[])
    assert str(empty.value) == (
        "tasks is empty, so every submission would be refused; pass None to accept the "
        "queue's registered tasks (or any name, if it has none)"
    )
    with pytest.raises(ValueError, match="are not registered") as unregistered:
        create_app(queue, tasks=["billing.charge", "mail.send"])
    assert str(unregistered.value) == (
        "tasks ['mail.send'] are not registered on the queue; registered: "
        "['billing.charge', 'billing.refund']"
    )


# --- bad requests: 400, 413, 415, 422 ----------------------------------------------------------


def post_raw(
    http: httpx.AsyncClient, content: bytes, headers: dict[str, str] = JSON
) -> Awaitable[httpx.Response]:
    return http.post("/v1/jobs", content=content, headers=headers)


def test_a_body_that_is_not_json_is_a_400_problem() -> None:
    async def body() -> None:
        async with client(app_of(queue_of())) as http:
            broken = await post_raw(http, b'{"task" "t"}')
            latin = await post_raw(http, b'{"task": "caf\xe9"}')
            deep = await post_raw(http, b"[" * 100_000)
        cases = [
            (broken, "the body is not JSON: Expecting ':' delimiter: line 1 column 9 (char 8)"),
            (latin, "the body is not UTF-8: byte 13 is 0xe9"),
            (deep, "the body is not JSON this service reads: nested too deeply"),
        ]
        for response, detail in cases:
            problem = problem_of(response, 400, "malformed-json")
            assert problem["title"] == "Bad Request"
            assert problem["detail"] == detail

    run(body)


def test_a_body_over_the_limit_is_a_413_problem_declared_or_streamed() -> None:
    async def chunks() -> Any:
        for _ in range(3):
            yield b" " * 600

    async def body() -> None:
        async with client(app_of(queue_of(), max_body=1000)) as http:
            declared = await post_raw(http, b" " * 1001)
            streamed = await http.post("/v1/jobs", content=chunks(), headers=JSON)
            just = await post_raw(http, b'{"task": "t"}'.ljust(1000))
        assert "content-length" not in streamed.request.headers
        for response in (declared, streamed):
            problem = problem_of(response, 413, "body-too-large")
            assert problem["title"] == "Content Too Large"
            assert problem["detail"] == "the body is over 1000 bytes, the most this service accepts"
            assert problem["max_bytes"] == 1000
        assert just.status_code == 202

    run(body)
    assert MAX_BODY == 1 << 20


def test_a_body_not_sent_as_json_is_a_415_problem() -> None:
    async def body() -> None:
        async with client(app_of(queue_of())) as http:
            data = b'{"task": "t"}'
            untyped = await post_raw(http, data, {})
            text = await post_raw(http, data, {"Content-Type": "text/plain"})
            gzipped = await post_raw(http, data, {**JSON, "Content-Encoding": "gzip"})
            typed = await post_raw(
                http, data, {"Content-Type": "application/vnd.jobs+json; charset=utf-8"}
            )
        cases = [
            (
                untyped,
                "a job is submitted as JSON: got no Content-Type; "
                "send Content-Type: application/json",
            ),
            (
                text,
                "a job is submitted as JSON: got Content-Type 'text/plain'; "
                "send Content-Type: application/json",
            ),
            (gzipped, "Content-Encoding 'gzip' is not accepted: send the JSON body uncompressed"),
        ]
        for response, detail in cases:
            problem = problem_of(response, 415, "unsupported-media-type")
            assert problem["title"] == "Unsupported Media Type"
            assert problem["detail"] == detail
            assert response.headers["accept-post"] == "application/json"
        assert typed.status_code == 202

    run(body)


def test_every_bad_field_is_named_in_one_422() -> None:
    body_text = (
        b'{"task": 7, "args": {"a": 1}, "kwargs": [1], "level": "urgent", "flow": "",'
        b' "delay": -1, "deadline": "soon", "idempotency_key": 5, "priority": "high"}'
    )

    async def body() -> None:
        async with client(app_of(queue_of())) as http:
            response = await post_raw(http, body_text)
        assert errors_of(response) == [
            {
                "field": "priority",
                "message": "unknown field; accepted: task, args, kwargs, level, flow, delay, "
                "deadline, idempotency_key",
            },
            {"field": "task", "message": "expected a task name of 1 to 255 characters, got 7"},
            {"field": "args", "message": "expected an array of arguments, got an object"},
            {"field": "kwargs", "message": "expected an object of keyword arguments, got an array"},
            {"field": "level", "message": f"unknown level 'urgent'; {levels_message()}"},
            {
                "field": "flow",
                "message": "expected a string naming the flow (tenant, user, ...) of 1 to 255 "
                "characters, got an empty string",
            },
            {
                "field": "idempotency_key",
                "message": "expected a non-empty string of 1 to 255 characters, got 5",
            },
            {
                "field": "delay",
                "message": "expected a number of seconds from 0 to 315360000 (3650 days), got -1",
            },
            {
                "field": "deadline",
                "message": "expected a number of seconds from 0 to 315360000 (3650 days), "
                "got a string",
            },
        ]

    run(body)


@pytest.mark.parametrize(
    ("sent", "errors"),
    [
        (b"[1, 2]", [("body", "expected a JSON object with a 'task', got an array")]),
        (b'{"args": []}', [("task", "required: the name of the task to run")]),
        (
            b'{"task": "t", "tsak": 1}',
            [
                (
                    "tsak",
                    "unknown field; did you mean 'task'? accepted: task, args, kwargs, level, "
                    "flow, delay, deadline, idempotency_key",
                )
            ],
        ),
        (
            b'{"task": "t", "level": 2}',
            [("level", "expected a level name of 1 to 255 characters, got 2")],
        ),
        (
            b'{"task": "t", "level": "hihg"}',
            [("level", f"unknown level 'hihg'; did you mean 'high'? {levels_message()}")],
        ),
        (
            b'{"task": "' + b"t" * 256 + b'"}',
            [
                (
                    "task",
                    "expected a task name of 1 to 255 characters, got a string of 256 characters",
                )
            ],
        ),
        (
            b'{"task": "t", "kwargs": {"when": NaN, "odd key": [1, Infinity]},'
            b' "args": [-Infinity, 1e999]}',
            [
                ("args[0]", "-Infinity is not a finite number, which is all JSON can carry"),
                ("args[1]", "Infinity is not a finite number, which is all JSON can carry"),
                ("kwargs.when", "NaN is not a finite number, which is all JSON can carry"),
                (
                    'kwargs["odd key"][1]',
                    "Infinity is not a finite number, which is all JSON can carry",
                ),
            ],
        ),
        (
            b'{"task": "t", "args": ' + b"[" * 70 + b"]" * 70 + b"}",
            [("args" + "[0]" * 64, "nested deeper than 64 arrays and objects")],
        ),
        (
            b'{"task": "t", "delay": true, "deadline": 315360001}',
            [
                ("delay", "expected a number of seconds from 0 to 315360000 (3650 days), got true"),
                (
                    "deadline",
                    "expected a number of seconds from 0 to 315360000 (3650 days), got 315360001",
                ),
            ],
        ),
        (
            b'{"task": "t", "delay": null, "level": null, "flow": null, "deadline": NaN}',
            [("deadline", "expected a number of seconds from 0 to 315360000 (3650 days), got NaN")],
        ),
    ],
)
def test_each_bad_field_has_its_message(sent: bytes, errors: list[tuple[str, str]]) -> None:
    async def body() -> None:
        async with client(app_of(queue_of())) as http:
            response = await post_raw(http, sent)
        assert errors_of(response) == [{"field": f, "message": m} for f, m in errors]

    run(body)


def test_arguments_a_custom_serializer_refuses_are_a_422_naming_args_or_kwargs() -> None:
    class NoStrings:
        def dumps(self, value: object) -> bytes:
            if "secret" in json.dumps(value):
                raise SerializationError("'secret' may not be stored")
            return json.dumps(value).encode()

        def loads(self, data: bytes) -> object:
            return json.loads(data)

    queue = JobQueue(MemoryBroker(), serializer=NoStrings())

    async def body() -> None:
        async with client(app_of(queue)) as http:
            in_args = await http.post("/v1/jobs", json={"task": "t", "args": ["secret"]})
            in_kwargs = await http.post("/v1/jobs", json={"task": "t", "kwargs": {"a": "secret"}})
        message = "'secret' may not be stored"
        assert errors_of(in_args) == [{"field": "args", "message": message}]
        assert errors_of(in_kwargs) == [{"field": "kwargs", "message": message}]

    run(body)


# --- routes, errors, stats, metrics, OpenAPI ---------------------------------------------------


def test_unknown_routes_and_methods_are_problems_too() -> None:
    async def body() -> None:
        async with client(app_of(queue_of())) as http:
            missing = await http.get("/v2/jobs")
            wrong = await http.put("/v1/jobs")
        problem = problem_of(missing, 404, "")
        assert problem["detail"] == "no route /v2/jobs; the routes are listed at /openapi.json"
        problem = problem_of(wrong, 405, "")
        assert problem["title"] == "Method Not Allowed"
        assert problem["detail"] == "PUT is not allowed on /v1/jobs; allowed: POST"
        assert wrong.headers["allow"] == "POST"

    run(body)


def test_an_unexpected_error_is_a_500_problem_that_does_not_show_it() -> None:
    class Broken(Watched):
        async def get(self, job_id: str) -> Any:
            raise RuntimeError("the store is corrupt")

    async def body() -> None:
        app = app_of(JobQueue(Broken(MemoryBroker())))
        async with client(app, raise_errors=False) as http:
            response = await http.get("/v1/jobs/x")
        problem = problem_of(response, 500, "internal-error")
        assert problem["detail"] == "the service failed on this request; the error is in its log"
        assert "corrupt" not in response.text

    run(body)


def test_stats_count_jobs_per_level(store: Store) -> None:
    queue = queue_of(store())

    async def body() -> None:
        async with client(app_of(queue)) as http:
            for level in ("low", "low", "bulk"):
                await http.post("/v1/jobs", json={"task": "t", "level": level})
            response = await http.get("/v1/stats")
        levels = response.json()["levels"]
        assert list(levels) == ["critical", "high", "normal", "low", "bulk"]
        assert (levels["low"]["queued"], levels["bulk"]["queued"], levels["normal"]["queued"]) == (
            2,
            1,
            0,
        )
        assert set(levels["low"]) == {
            "queued", "scheduled", "running", "succeeded", "failed", "dead", "cancelled", "shed",
            "oldest_wait",
        }  # fmt: skip

    run(body, queue)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_export_the_submit_gate_the_middleware_and_the_jobs_per_level(store: Store) -> None:
    queue = queue_of(store())

    async def body() -> None:
        async with client(app_of(queue, stats_max_age=0)) as http:
            await http.post("/v1/jobs", json={"task": "t", "level": "low"})
            await http.post("/v1/jobs", json={"task": "t"})
            await complete(queue, 1)
            found = samples((await http.get("/metrics")).text)
        gate = (("gate", "submit"), ("level", "normal"), ("outcome", "granted"))
        assert found["prioritize_requests_total", gate] == 2  # the request's level, not the job's
        assert found["prioritize_capacity", (("gate", "submit"),)] == 64
        assert found["prioritize_http_abandoned_total", ()] == 0
        low = (("gate", "jobs"), ("level", "low"))
        assert found["prioritize_jobs", (*low, ("state", "queued"))] == 1
        normal = (("gate", "jobs"), ("level", "normal"))
        assert found["prioritize_jobs", (*normal, ("state", "queued"))] == 0
        assert found["prioritize_jobs_finished_total", (*normal, ("outcome", "succeeded"))] == 1
        assert found["prioritize_job_runs_failed_total", normal] == 0
        assert found["prioritize_jobs_oldest_wait_seconds", low] >= 0
        assert found["prioritize_jobs_sampled_timestamp_seconds", (("gate", "jobs"),)] > 0
        assert any(name == "process_cpu_seconds_total" for name, _ in found)

    run(body, queue)


def test_metrics_go_to_the_registry_given_and_apps_never_clash_over_names() -> None:
    registry = CollectorRegistry()
    queue = queue_of()
    app_of(queue, registry=registry)
    app_of(queue)  # a registry of its own: the same names again are no clash
    names = {family.name for family in registry.collect()}
    assert {"prioritize_jobs", "prioritize_requests", "prioritize_http_abandoned"} <= names
    assert not any(name.startswith("process_") for name in names)


def test_a_scrape_reads_the_broker_at_most_once_per_max_age() -> None:
    queue = queue_of()
    queued = ("prioritize_jobs", (("gate", "jobs"), ("level", "normal"), ("state", "queued")))

    async def body() -> None:
        async with client(app_of(queue, stats_max_age=3600)) as http:
            await http.post("/v1/jobs", json={"task": "t"})
            first = samples((await http.get("/metrics")).text)
            await http.post("/v1/jobs", json={"task": "t"})
            second = samples((await http.get("/metrics")).text)
        assert first[queued] == second[queued] == 1

    run(body)


def test_a_scrape_while_the_broker_fails_exports_the_last_counts_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Flaky(Watched):
        is_down = False

        async def stats(self) -> Any:
            if self.is_down:
                raise ConnectionError("the broker went away")
            return await self.inner.stats()

    broker = Flaky(MemoryBroker())
    queue = JobQueue(broker)
    sampled = ("prioritize_jobs_sampled_timestamp_seconds", (("gate", "jobs"),))

    async def body() -> None:
        async with client(app_of(queue, stats_max_age=0)) as http:
            before = samples((await http.get("/metrics")).text)
            broker.is_down = True
            with caplog.at_level(logging.ERROR, logger="prioritize.jobs.service"):
                during = await http.get("/metrics")
        assert during.status_code == 200
        assert samples(during.text)[sampled] == before[sampled]
        assert [r.getMessage() for r in caplog.records] == [
            "reading job stats for /metrics failed; exporting the last ones"
        ]

    run(body)


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_the_openapi_document_describes_every_route_the_app_serves() -> None:
    app = app_of(queue_of())

    async def body() -> dict[str, Any]:
        async with client(app) as http:
            response = await http.get("/openapi.json")
        assert response.status_code == 200
        return response.json()  # type: ignore[no-any-return]

    document = asyncio.run(body())
    assert document["openapi"] == "3.1.0"
    served = {
        (route.path, method.lower())  # type: ignore[attr-defined]
        for route in app.routes
        for method in route.methods - {"HEAD"}  # type: ignore[attr-defined]
    }
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented == served
    for ref in _refs(document):
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]  # raises KeyError for a dangling reference
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["responses"], (path, method)
    submission = document["components"]["schemas"]["Submission"]
    assert submission["properties"]["level"]["enum"] == [
        "critical",
        "high",
        "normal",
        "low",
        "bulk",
    ]
    problem_types = document["components"]["schemas"]["Problem"]["properties"]["type"]["enum"]
    assert set(problem_types) == {*PROBLEM_TYPES.values(), "about:blank"}


# --- through a real uvicorn ---------------------------------------------------------------------


def test_through_uvicorn_submit_read_long_poll_and_a_problem(store: Store) -> None:
    queue = queue_of(store())
    watched: Watched = queue.broker  # type: ignore[assignment]

    @queue.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    with serve_asgi(app_of(queue)) as url:

        async def body() -> None:
            async with httpx.AsyncClient(base_url=url) as http:
                submitted = await http.post("/v1/jobs", json={"task": "add", "args": [20, 22]})
                assert submitted.status_code == 202
                location = submitted.headers["location"]
                assert (await http.get(location)).json()["status"] == "queued"
                polling = asyncio.ensure_future(http.get(location, params={"wait": 30}))
                assert await asyncio.to_thread(watched.entered.wait, 30)
                await Worker(queue, concurrency=1).run_until_idle()
                answer = await polling
                assert (answer.json()["status"], answer.json()["result"]) == ("succeeded", 42)
                bad = await http.post("/v1/jobs", json={"task": "ad"})
                assert errors_of(bad)[0]["message"] == (
                    "unknown task 'ad'; did you mean 'add'? accepted tasks: add"
                )
                text = (await http.get("/metrics")).text
                assert (
                    'prioritize_requests_total{gate="submit",level="normal",outcome="granted"}'
                    in text
                )

        asyncio.run(body())
