"""``prioritize worker``: every error it reports, and real runs in a child process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from prioritize.cli import main
from prioritize.cli.worker import load_queue
from prioritize.jobs import JobHandle, JobQueue, JobState
from tests.jobs.apps import basic
from tests.jobs.apps.processes import HANG, worker_processes
from tests.redis_servers import free_port

APP = "tests.jobs.apps.basic:jobs"
HERE = os.getcwd()


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["worker", *args])
    return result.exit_code, result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["tests.jobs.apps.basic"],
            "error: 'tests.jobs.apps.basic' is not module:attribute; expected e.g. "
            "myapp.tasks:jobs",
        ),
        (
            [":jobs"],
            "error: ':jobs' is not module:attribute; expected e.g. myapp.tasks:jobs",
        ),
        (
            ["nowhere.tasks:jobs"],
            f"error: cannot import 'nowhere.tasks': no module named 'nowhere' in the current "
            f"directory ({HERE}) or on sys.path",
        ),
        (
            ["tests.jobs.apps.broken_import:jobs"],
            "error: importing 'tests.jobs.apps.broken_import' failed: ModuleNotFoundError: "
            "No module named 'not_installed_anywhere'",
        ),
        (
            ["tests.jobs.apps.raises:jobs"],
            "error: importing 'tests.jobs.apps.raises' failed: RuntimeError: settings file "
            "missing (python -c 'import tests.jobs.apps.raises' shows the traceback)",
        ),
        (
            ["tests.jobs.apps.basic:queue"],
            "error: module 'tests.jobs.apps.basic' has no attribute 'queue'; "
            "its JobQueue objects: jobs",
        ),
        (
            ["tests.jobs.apps:jobs"],
            "error: module 'tests.jobs.apps' has no attribute 'jobs'; it has no JobQueue",
        ),
        (
            ["tests.jobs.apps.basic:settings"],
            "error: tests.jobs.apps.basic:settings is a dict, not a JobQueue",
        ),
        (
            [APP, "--levels", "critical,urgent"],
            "error: --levels critical,urgent: unknown level 'urgent'; the queue's levels are "
            "critical, high, normal, low, bulk",
        ),
        (
            [APP, "--levels", ","],
            "error: --levels ',': expected level names separated by commas: "
            "critical, high, normal, low, bulk",
        ),
        (
            [APP, "--broker", "ftp://jobs"],
            "error: --broker: broker URL 'ftp://jobs' is not understood: expected 'memory://', "
            "'sqlite:///path/to.db' (or a path ending in .db), 'redis://host:port/db' or "
            "'redis+cluster://host:port'",
        ),
    ],
)
def test_errors_exit_1_naming_what_is_wrong(args: list[str], message: str) -> None:
    code, err = invoke(*args)
    assert (code, err.strip()) == (1, message)


def test_metrics_port_without_prometheus_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.setitem(sys.modules, "prioritize.jobs.metrics", None)
    code, err = invoke(APP, "--metrics-port", "9100")
    assert (code, err.strip()) == (
        1,
        "error: --metrics-port needs prometheus-client: pip install 'prioritize[metrics]'",
    )


def test_metrics_port_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = invoke(APP, "--metrics-port", str(port))
    assert code == 1
    assert err.startswith(f"error: --metrics-port {port}: cannot serve metrics there: [Errno ")
    assert "Address already in use" in err


def test_usage_mistakes_exit_2() -> None:
    code, err = invoke(APP, "--concurrency", "0")
    assert code == 2
    assert "Invalid value for '-c' / '--concurrency': 0 is not in the range x>=1." in err


def test_load_queue_finds_the_queue() -> None:
    assert load_queue(APP) is basic.jobs


# -- real runs ---------------------------------------------------------------------


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=HANG) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_worker_runs_jobs_from_a_sqlite_file_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    port = free_port()

    async def main() -> None:
        jobs = basic.build(url)
        handles = [await jobs.enqueue("double", [i]) for i in range(40)]
        loud = await jobs.enqueue("shout", ["hey"], level="high")
        with worker_processes(tmp_path) as start:
            worker = start(
                APP,
                "--concurrency=4",
                "--log-format=json",
                f"--metrics-port={port}",
                PRIORITIZE_TEST_BROKER=url,
            )
            assert [await h.result(HANG) for h in handles] == [2 * i for i in range(40)]
            assert await loud.result(HANG) == "HEY"
            got = scrape(port)
            key = (("gate", "jobs"), ("level", "normal"), ("outcome", "succeeded"))
            assert got[("prioritize_jobs_processed_total", (*key, ("task", "double")))] == 40
            assert got[("prioritize_worker_slots", (("gate", "jobs"),))] == 4
            assert worker.stop() == 0
        lines = [json.loads(line) for line in worker.output().splitlines()]
        messages = [line["message"] for line in lines]
        assert any(m.startswith("SIGTERM: stopping once the running jobs end") for m in messages)
        succeeded = [line for line in lines if line.get("task") == "shout"]
        assert succeeded[0]["level"] == "high"
        assert lines[-1]["message"].endswith("stopped: 41 succeeded, 0 failed, 0 dead, 0 released")
        await jobs.close()

    asyncio.run(main())


async def until_running(handle: JobHandle[object]) -> None:
    """Poll the broker until a worker holds the job."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HANG
    while await handle.status() is not JobState.RUNNING:
        assert loop.time() < deadline, f"job {handle.id} never started"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("task", ["forever", "stuck_thread"])
def test_second_sigterm_releases_running_jobs_at_once(tmp_path: Path, task: str) -> None:
    url = sqlite_url(tmp_path)

    async def main() -> None:
        jobs: JobQueue = basic.build(url)
        handle = await jobs.enqueue(task)
        with worker_processes(tmp_path) as start:
            worker = start(APP, "--grace=3600", "--log-level=info", PRIORITIZE_TEST_BROKER=url)
            await until_running(handle)
            worker.signal(signal.SIGTERM)
            await worker.wait_for_output("SIGTERM: stopping once the running jobs end")
            worker.signal(signal.SIGTERM)
            assert worker.wait() == 0, worker.output()
        assert "SIGTERM again: releasing the running jobs now" in worker.output()
        job = await handle.job()
        assert (job.state, job.attempts) == (JobState.QUEUED, 0)
        if task == "stuck_thread":
            assert "exiting with 1 job thread(s) still running" in worker.output()
        await jobs.close()

    asyncio.run(main())
