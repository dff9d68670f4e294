"""A process of its own over a SQLite job store, for the tests that need several, or a kill.

    python tests/jobs/sqlite_child.py burst PATH one|many
        enqueue jobs until killed (one at a time, or ten per enqueue_many),
        printing each id on stdout, flushed, once the call storing it returned
    python tests/jobs/sqlite_child.py work PATH WORKER LIMIT TOTAL
        print "ready", then hold up to LIMIT jobs, finishing one per reserve,
        until TOTAL jobs of the store have succeeded; each job held is witnessed
        in the table ``held`` of the same file, and every delivery in ``deliveries``
    python tests/jobs/sqlite_child.py finish PATH
        reserve one job and finish it with the result b'"done"'

The witness tables are the test's, not the broker's: a job goes into
``held`` after `reserve` returned it and out before its outcome is given
back, so the rows of ``held`` are always jobs the store counts as running.
A level found over its ``max`` there, or a job held twice, exits with an error.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import uuid

from prioritize.core.policy import GatePolicy, LevelPolicy
from prioritize.jobs import Job, Outcome, OutcomeKind
from prioritize.jobs.brokers.sqlite import SQLiteBroker

GATE = GatePolicy(
    capacity=4, levels={"low": LevelPolicy(max=2), "high": LevelPolicy(max=3)}, name="jobs"
)
LIMITS = {"low": 2, "high": 3}
WITNESS = """
CREATE TABLE IF NOT EXISTS held (job_id TEXT PRIMARY KEY, level TEXT, worker TEXT);
CREATE TABLE IF NOT EXISTS deliveries (job_id TEXT, worker TEXT, attempt INTEGER);
"""


def new_job(level: str = "normal") -> Job:
    return Job(id=uuid.uuid4().hex, task="tests.child", payload=b"[[],{}]", level=level)


async def burst(path: str, mode: str) -> None:
    broker = SQLiteBroker(path)
    broker.configure(GATE)
    while True:
        if mode == "one":
            stored = [await broker.enqueue(new_job())]
        else:
            stored = await broker.enqueue_many([new_job() for _ in range(10)])
        sys.stdout.write("".join(f"{job.id}\n" for job in stored))
        sys.stdout.flush()


async def work(path: str, worker: str, limit: int, total: int) -> None:
    broker = SQLiteBroker(path)
    broker.configure(GATE)
    witness = sqlite3.connect(path, timeout=60, isolation_level=None)
    print("ready", flush=True)
    holding: list[Job] = []
    try:
        while True:
            # finish one job per turn and keep the rest: every worker holds all it may,
            # so the gate's limits bind all the time
            done, holding = holding[:1], holding[1:]
            witness.executemany("DELETE FROM held WHERE job_id = ?", [(j.id,) for j in done])
            outcomes = [Outcome(j.id, j.attempts, OutcomeKind.SUCCEEDED, result=b"1") for j in done]
            got = await broker.reserve(worker, limit - len(holding), lease=3600, finished=outcomes)
            if got:
                _witness(witness, worker, got)
                holding += got
            elif not holding and (await broker.stats()).total("succeeded") >= total:
                return
            elif not holding:
                await broker.wait_for_work(0.0)  # no waiting: press on the lock
    finally:
        await broker.close()
        witness.close()


def _witness(witness: sqlite3.Connection, worker: str, got: list[Job]) -> None:
    witness.execute("BEGIN IMMEDIATE")
    try:
        witness.executemany(
            "INSERT INTO held VALUES (?, ?, ?)", [(j.id, j.level, worker) for j in got]
        )
    except sqlite3.IntegrityError:
        sys.exit(f"{worker} got a job another worker holds: {[j.id for j in got]}")
    witness.executemany(
        "INSERT INTO deliveries VALUES (?, ?, ?)", [(j.id, worker, j.attempts) for j in got]
    )
    counts = dict(witness.execute("SELECT level, count(*) FROM held GROUP BY level").fetchall())
    witness.execute("COMMIT")
    if sum(counts.values()) > GATE.capacity:
        sys.exit(f"{sum(counts.values())} jobs held at once, over capacity {GATE.capacity}")
    for level, most in LIMITS.items():
        if counts.get(level, 0) > most:
            sys.exit(f"{counts[level]} {level} jobs held at once, over its max {most}")


async def finish(path: str) -> None:
    broker = SQLiteBroker(path)
    broker.configure(GATE)
    try:
        (held,) = await broker.reserve("child", 1, lease=60)
        await broker.finish(
            "child", [Outcome(held.id, held.attempts, OutcomeKind.SUCCEEDED, b'"done"')]
        )
    finally:
        await broker.close()


def main(argv: list[str]) -> None:
    command, path, *rest = argv
    if command == "burst":
        asyncio.run(burst(path, rest[0]))
    elif command == "work":
        asyncio.run(work(path, rest[0], int(rest[1]), int(rest[2])))
    elif command == "finish":
        asyncio.run(finish(path))
    else:
        sys.exit(f"unknown command {command!r}: expected burst, work or finish")


if __name__ == "__main__":
    main(sys.argv[1:])
