"""An enqueue that returned is durable: it survives SIGKILL of the process that made it.

A child process enqueues jobs without end and prints each id the moment
the call storing it returns; the test kills it mid-burst (SIGKILL: no
cleanup, no flush, no close), reopens the file, and finds every printed id.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from prioritize.jobs.brokers.sqlite import SQLiteBroker
from tests.jobs.sqlite_child import GATE

CHILD = Path(__file__).with_name("sqlite_child.py")
#: ids to read before the kill: enough that it lands mid-burst, in a busy writer
PRINTED_BEFORE_KILL = 400


@pytest.mark.parametrize("mode", ["one", "many"])
def test_every_enqueue_that_returned_survives_sigkill(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "jobs.db"
    child = subprocess.Popen(
        [sys.executable, str(CHILD), "burst", str(path), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    printed: list[str] = []
    try:
        for line in child.stdout:
            printed.append(line.rstrip("\n"))
            if len(printed) >= PRINTED_BEFORE_KILL:
                break
    finally:
        child.send_signal(signal.SIGKILL)
        rest, errors = child.communicate()
    # what it printed before dying is still in the pipe; a line cut short is not an id
    printed += rest.split("\n")[:-1]
    assert child.returncode == -signal.SIGKILL, errors
    assert len(printed) >= PRINTED_BEFORE_KILL, errors

    async def reopen() -> list[str]:
        broker = SQLiteBroker(path)
        broker.configure(GATE)
        try:
            return [job_id for job_id in printed if await broker.get(job_id) is None]
        finally:
            await broker.close()

    assert asyncio.run(reopen()) == []
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        (stored,) = conn.execute("SELECT count(*) FROM prioritize_jobs").fetchone()
    assert stored >= len(printed)
