"""What only the SQLite broker has: a file that outlives it, other processes, locks, bad paths.

The rules every broker keeps are in test_conformance.py; here the file is
looked at directly where that is the point (its tables, its gauges, its
locks), and other processes are real ones (tests/jobs/sqlite_child.py).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from prioritize.core.jobgate import JobGate, LevelSnapshot
from prioritize.core.levels import LevelSet
from prioritize.core.policy import GatePolicy
from prioritize.jobs import Job, JobState, Outcome, OutcomeKind
from prioritize.jobs.brokers import open_broker
from prioritize.jobs.brokers.sqlite import SQLiteBroker, StoreError
from tests.jobs.conftest import ManualClock
from tests.jobs.sqlite_child import GATE, WITNESS
from tests.jobs.test_conformance import OPEN, job, run

CHILD = Path(__file__).with_name("sqlite_child.py")


def ok(held: Job) -> Outcome:
    return Outcome(held.id, held.attempts, OutcomeKind.SUCCEEDED, result=b"3")


def broker_on(path: Path, gate: GatePolicy = OPEN, **options: object) -> SQLiteBroker:
    broker = SQLiteBroker(path, **options)  # type: ignore[arg-type]
    broker.configure(gate)
    return broker


def assert_gauges_match_rows(path: Path) -> None:
    """The per-level gauges the gate reads equal a count of the rows."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT level_rank, state, count(*) FROM prioritize_jobs GROUP BY level_rank, state"
        ).fetchall()
        counted = {(rank, state): n for rank, state, n in rows}
        levels = conn.execute(
            "SELECT rank, queued, scheduled, running, dead FROM prioritize_levels"
        ).fetchall()
    for rank, *gauges in levels:
        states = ("queued", "scheduled", "running", "dead")
        assert gauges == [counted.get((rank, state), 0) for state in states], rank


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition`` holds (a minute at most: then it is a failure)."""
    async with asyncio.timeout(60):
        while not condition():
            await asyncio.sleep(0.001)


# -- the file --------------------------------------------------------------------------


def test_the_store_is_created_once_and_reopened_by_another_broker(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    clock = ManualClock()

    async def body() -> None:
        first = broker_on(path, clock=clock)
        sent = [await first.enqueue(job("high", "a")) for _ in range(2)]
        sent += [await first.enqueue(job("high", "b")), await first.enqueue(job("low"))]
        (held,) = await first.reserve("w1", 1, lease=60)
        await first.enqueue(job("low", run_at=clock.now + 30))
        before = await first.stats()
        await first.close()
        with sqlite3.connect(path) as conn:
            schema = conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)

        second = broker_on(path, clock=clock)
        assert await second.get(held.id) == held
        assert await second.stats() == before
        assert await second.finish("w1", [ok(held)]) == [True]
        # flows and tags were stored: b's job comes before a's second one, then low's
        order = [j.id for j in await second.reserve("w2", 10, lease=60)]
        assert order == [sent[2].id, sent[1].id, sent[3].id]
        await second.close()
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall() == schema
            assert conn.execute("SELECT version FROM prioritize_store").fetchall() == [(2,)]
        assert_gauges_match_rows(path)

    run(body)


def test_open_broker_makes_a_sqlite_broker_on_the_path(tmp_path: Path) -> None:
    broker = open_broker(f"sqlite:///{tmp_path}/jobs.db")
    assert isinstance(broker, SQLiteBroker)
    assert broker.path == f"{tmp_path}/jobs.db"


def test_a_copy_is_another_connection_to_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"

    async def body() -> None:
        broker = broker_on(path)
        other = broker.copy()
        assert other is not broker
        assert other.path == broker.path
        sent = await other.enqueue(job())  # configured like the original
        assert await broker.get(sent.id) == sent
        await other.close()
        await broker.close()

    run(body)


def test_a_closed_broker_opens_its_file_again_when_used(tmp_path: Path) -> None:
    async def body() -> None:
        broker = broker_on(tmp_path / "jobs.db")
        sent = await broker.enqueue(job())
        await broker.close()
        assert "closed" in repr(broker)
        assert await broker.get(sent.id) == sent
        assert "open" in repr(broker)
        await broker.close()

    run(body)


def test_the_gate_state_is_stored_even_when_no_job_is_reserved(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    gate = GatePolicy(capacity=1, name="jobs")

    async def body() -> None:
        broker = broker_on(path, gate)
        await broker.enqueue(job())
        assert len(await broker.reserve("w1", 1, lease=60)) == 1
        await broker.enqueue(job())
        assert await broker.reserve("w1", 1, lease=60) == []  # the seat is taken
        await broker.close()

    run(body)
    model = JobGate(gate)
    empty = [LevelSnapshot(0, 0)] * 5
    model.reserve([*empty[:2], LevelSnapshot(1, 0), *empty[3:]])
    model.reserve([*empty[:2], LevelSnapshot(1, 1), *empty[3:]])  # "normal" now waits
    with sqlite3.connect(path) as conn:
        (stored,) = conn.execute("SELECT gate FROM prioritize_store").fetchone()
    assert tuple(json.loads(stored)) == model.state()
    assert model.state() != JobGate(gate).state()


def test_expired_results_are_deleted_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    clock = ManualClock()

    async def body() -> None:
        broker = broker_on(path, clock=clock)
        await broker.enqueue(job(result_ttl=10.0))
        (held,) = await broker.reserve("w1", 1, lease=60)
        await broker.finish("w1", [ok(held)])
        clock.advance(11)
        assert await broker.get(held.id) is None  # gone for readers at once
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT count(*) FROM prioritize_jobs").fetchone() == (1,)
        await broker.reserve("w1", 1, lease=60)  # the upkeep deletes the row
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT count(*) FROM prioritize_jobs").fetchone() == (0,)
        await broker.close()

    run(body)


def test_enqueue_many_stores_every_job_in_one_transaction_or_none(tmp_path: Path) -> None:
    async def body() -> None:
        broker = broker_on(tmp_path / "jobs.db")
        stored = await broker.enqueue_many([job("high"), job("low", flow="x"), job()])
        assert [j.state for j in stored] == [JobState.QUEUED] * 3
        taken = stored[0]
        with pytest.raises(ValueError, match=rf"a job with id '{taken.id}' is already stored"):
            await broker.enqueue_many([job(), job(id=taken.id)])
        assert (await broker.stats()).total("queued") == 3
        await broker.close()

    run(body)


def test_concurrent_enqueues_each_get_their_own_answer(tmp_path: Path) -> None:
    async def body() -> None:
        broker = broker_on(tmp_path / "jobs.db")
        first = await broker.enqueue(job())
        sent = [job() for _ in range(20)]
        results = await asyncio.gather(
            *(broker.enqueue(j) for j in sent),
            broker.enqueue(job(id=first.id)),
            return_exceptions=True,
        )
        assert [r.id for r in results[:-1]] == [j.id for j in sent]  # type: ignore[union-attr]
        assert isinstance(results[-1], ValueError)
        assert f"a job with id '{first.id}' is already stored" in str(results[-1])
        assert (await broker.stats()).total("queued") == 21
        await broker.close()

    run(body)


# -- other processes -------------------------------------------------------------------


def test_workers_in_several_processes_never_share_a_job_and_keep_the_level_max(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    total = 240
    levels = ["low", "high", "normal", "low"]
    with sqlite3.connect(path) as conn:
        conn.executescript(WITNESS)
    workers = [
        subprocess.Popen(
            [sys.executable, str(CHILD), "work", str(path), f"w{n}", str(limit), str(total)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n, limit in enumerate([1, 2, 3])
    ]
    for worker in workers:  # all are listening before the first job lands
        assert worker.stdout is not None
        assert worker.stdout.readline() == "ready\n"

    async def produce() -> None:
        broker = broker_on(path, GATE)
        for start in range(0, total, 20):
            await broker.enqueue_many([job(levels[n % 4]) for n in range(start, start + 20)])
        await broker.close()

    run(produce)
    for worker in workers:
        _, errors = worker.communicate(timeout=300)
        assert worker.returncode == 0, errors
    with sqlite3.connect(path) as conn:
        deliveries = conn.execute("SELECT job_id, attempt FROM deliveries").fetchall()
        assert conn.execute("SELECT count(*) FROM held").fetchone() == (0,)
    assert len(deliveries) == total
    assert len({job_id for job_id, _ in deliveries}) == total
    assert {attempt for _, attempt in deliveries} == {1}

    async def check() -> None:
        broker = broker_on(path, GATE)
        stats = await broker.stats()
        assert (stats.total("succeeded"), stats.total("running"), stats.total("queued")) == (
            total,
            0,
            0,
        )
        await broker.close()

    run(check)
    assert_gauges_match_rows(path)


def test_wait_is_woken_by_a_result_written_in_another_process(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"

    async def body() -> None:
        broker = broker_on(path, GATE)
        sent = await broker.enqueue(job())
        waiting = asyncio.create_task(broker.wait(sent.id, 3600))
        await until(lambda: "1 waiting" in repr(broker))
        child = await asyncio.create_subprocess_exec(
            sys.executable, str(CHILD), "finish", str(path), stderr=subprocess.PIPE
        )
        async with asyncio.timeout(60):
            done = await waiting
            _, errors = await child.communicate()
        assert child.returncode == 0, errors
        assert done is not None
        assert (done.state, done.result) == (JobState.SUCCEEDED, b'"done"')
        await broker.close()

    run(body)


def test_wait_for_work_returns_when_a_delayed_job_comes_due(tmp_path: Path) -> None:
    clock = ManualClock()

    async def body() -> None:
        broker = broker_on(tmp_path / "jobs.db", clock=clock)
        await broker.enqueue(job(run_at=clock.now + 0.01))
        async with asyncio.timeout(60):
            await broker.wait_for_work(3600)  # its own process enqueued it: due, not woken
        clock.advance(0.01)
        assert len(await broker.reserve("w1", 1, lease=60)) == 1
        await broker.close()

    run(body)


# -- locks -----------------------------------------------------------------------------


def test_a_store_locked_by_another_connection_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"

    async def body() -> None:
        broker = broker_on(path)
        await broker.stats()  # the file and its tables exist
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the write lock, held
        enqueue = asyncio.create_task(broker.enqueue(job()))
        await until(lambda: broker.lock_waits > 0)
        assert not enqueue.done()
        holder.execute("COMMIT")
        stored = await enqueue
        assert await broker.get(stored.id) == stored
        holder.close()
        await broker.close()

    run(body)


def test_a_store_locked_past_busy_timeout_raises_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"

    async def body() -> None:
        broker = broker_on(path, busy_timeout=0)
        await broker.stats()
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(
            StoreError,
            match=rf"the job store {path} stayed locked by another connection for more than "
            r"busy_timeout = 0.0 s",
        ):
            await broker.enqueue(job())
        holder.execute("ROLLBACK")
        holder.close()
        await broker.enqueue(job())  # the lock gone, it works again
        await broker.close()

    run(body)


# -- refusals --------------------------------------------------------------------------


def test_a_path_in_a_missing_directory_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "no-such-dir" / "jobs.db"

    async def body() -> None:
        broker = broker_on(path)
        with pytest.raises(
            StoreError, match=rf"the job store {path} cannot be used: unable to open database "
            r"file \(does its directory exist, and may this process write there\?\)",
        ):  # fmt: skip
            await broker.enqueue(job())
        await broker.close()

    run(body)


def test_a_file_that_is_not_a_database_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are not the jobs you are looking for\n" * 100)

    async def body() -> None:
        broker = broker_on(path)
        with pytest.raises(
            StoreError, match=rf"the job store {path} cannot be used: file is not a database"
        ):
            await broker.get("job-1")
        await broker.close()

    run(body)


def test_a_store_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"

    async def body() -> None:
        broker = broker_on(path)
        await broker.stats()
        await broker.close()
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE prioritize_store SET version = 99")
        with pytest.raises(
            StoreError,
            match=rf"the job store {path} has schema version 99; this version of prioritize "
            r"reads version 2 only",
        ):
            await broker.get("job-1")
        await broker.close()

    run(body)


def test_a_store_of_version_1_is_brought_up_to_date_and_keeps_its_jobs(tmp_path: Path) -> None:
    """Version 1 had no ``retry_chosen``: its jobs read as chosen, as they were enqueued."""
    path = tmp_path / "jobs.db"

    async def body() -> None:
        broker = broker_on(path)
        (stored,) = await broker.enqueue_many([job()])
        await broker.close()
        with sqlite3.connect(path) as conn:  # as version 1 made it
            conn.execute("ALTER TABLE prioritize_jobs DROP COLUMN retry_chosen")
            conn.execute("UPDATE prioritize_store SET version = 1")
        broker = broker_on(path)
        assert await broker.get(stored.id) == stored
        (held,) = await broker.reserve("w1", 1, lease=60)
        assert held.id == stored.id
        assert held.retry_chosen
        await broker.close()
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT version FROM prioritize_store").fetchall() == [(2,)]

    run(body)


def test_a_store_of_other_levels_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    other = GatePolicy(capacity=2, level_set=LevelSet(["urgent", "later"]), name="jobs")

    async def body() -> None:
        broker = broker_on(path)
        await broker.enqueue(job())
        await broker.close()
        stranger = broker_on(path, other)
        with pytest.raises(
            ValueError,
            match=r"this job store holds jobs of levels \['critical', 'high', 'normal', 'low', "
            r"'bulk'\]; it cannot switch to \['urgent', 'later'\] \(use another file",
        ):
            await stranger.enqueue(job("urgent"))
        await stranger.close()

    run(body)


def test_configure_refuses_another_level_set() -> None:
    broker = SQLiteBroker("jobs.db")
    broker.configure(OPEN)
    broker.configure(GatePolicy(capacity=3, name="jobs"))  # same levels: fine
    with pytest.raises(
        ValueError,
        match=r"this broker already holds jobs of levels \['critical', 'high', 'normal', "
        r"'low', 'bulk'\]; it cannot switch to \['a', 'b'\]",
    ):
        broker.configure(GatePolicy(capacity=1, level_set=LevelSet(["a", "b"])))


def test_an_unconfigured_broker_says_how_to_configure_it(tmp_path: Path) -> None:
    async def body() -> None:
        broker = SQLiteBroker(tmp_path / "jobs.db")
        with pytest.raises(
            RuntimeError, match=r"SQLiteBroker is not configured: create a JobQueue"
        ):
            await broker.enqueue(job())
        assert await broker.get("job-1") is None  # reading needs no gate
        await broker.close()

    run(body)


@pytest.mark.parametrize(
    ("path", "options", "error", "message"),
    [
        (b"jobs.db", {}, TypeError, r"path = b'jobs.db': expected a str or os.PathLike"),
        (17, {}, TypeError, r"path = 17: expected a str or os.PathLike naming the SQLite file"),
        ("", {}, ValueError, r"path = '': expected the path of a file; an in-memory"),
        (":memory:", {}, ValueError, r"private to one connection \(use MemoryBroker"),
        ("j.db", {"dead_ttl": 0}, ValueError, r"dead_ttl = 0: expected a finite number of "
         r"seconds > 0"),
        ("j.db", {"dead_ttl": float("inf")}, ValueError, r"dead_ttl = inf: expected a finite"),
        ("j.db", {"busy_timeout": -1}, ValueError, r"busy_timeout = -1: expected a finite "
         r"number of seconds ≥ 0"),
        ("j.db", {"busy_timeout": True}, ValueError, r"busy_timeout = True: expected"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused_naming_what_is_accepted(
    path: object, options: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        SQLiteBroker(path, **options)  # type: ignore[arg-type]


def test_repr_shows_the_file_and_the_waiters(tmp_path: Path) -> None:
    broker = SQLiteBroker(tmp_path / "jobs.db")
    assert repr(broker) == f"<SQLiteBroker {tmp_path}/jobs.db closed, 0 waiting>"


def test_a_reserve_that_changes_nothing_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"

    async def body() -> None:
        broker = broker_on(path)
        await broker.enqueue(job())
        await broker.reserve("w1", 1, lease=60)
        observer = sqlite3.connect(path)
        (before,) = observer.execute("PRAGMA data_version").fetchone()
        for _ in range(3):  # idle workers asking again and again wake no other process
            assert await broker.reserve("w1", 5, lease=60) == []
            await broker.stats()
        assert observer.execute("PRAGMA data_version").fetchone() == (before,)
        await broker.enqueue(job())
        assert observer.execute("PRAGMA data_version").fetchone() != (before,)
        observer.close()
        await broker.close()

    run(body)


def test_flows_whose_jobs_were_all_taken_are_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"

    async def body() -> None:
        broker = broker_on(path)
        for flow in ["a", "a", "b", "c"]:
            await broker.enqueue(job(flow=flow))
        assert len(await broker.reserve("w1", 3, lease=60)) == 3  # a, b, c: a has one left
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT flow FROM prioritize_flows").fetchall() == [("a",)]
        assert len(await broker.reserve("w1", 3, lease=60)) == 1
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT flow FROM prioritize_flows").fetchall() == []
        await broker.close()

    run(body)
