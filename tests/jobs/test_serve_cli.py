"""``prioritize serve``: every way it refuses to start, and real servers answering over HTTP."""

from __future__ import annotations

import asyncio
import importlib
import itertools
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from prioritize.cli import main
from prioritize.jobs import JobQueue

#: the module (``prioritize.cli.serve`` the attribute is the command)
serve_module = importlib.import_module("prioritize.cli.serve")

_modules = itertools.count()


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["serve", *args])
    return result.exit_code, result.output


def write_module(folder: Path, body: str) -> str:
    """A module of tasks in ``folder`` under a name no other test imported; returns the name."""
    name = f"serve_cli_tasks_{next(_modules)}"
    (folder / f"{name}.py").write_text(textwrap.dedent(body), encoding="utf-8")
    return name


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh current directory (no policy file) that modules are imported from."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


# --- refusing to start ------------------------------------------------------------------------


def test_missing_dependencies_are_named_with_the_extra_to_install(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    required = {"starlette": "http", "no_such_module_for_tests": "metrics"}
    monkeypatch.setattr(serve_module, "_REQUIRED", required)
    assert invoke("--broker", "memory://") == (
        1,
        "error: prioritize serve needs no_such_module_for_tests, which is not installed; "
        "install it with: pip install 'prioritize[metrics]'\n",
    )


def test_a_broker_url_not_understood_is_named(here: Path) -> None:
    code, output = invoke("--broker", "ftp://jobs")
    assert code == 1
    assert output.startswith("error: --broker: broker URL 'ftp://jobs' is not understood: ")
    assert output.count("\n") == 1


def test_a_broker_that_cannot_be_loaded_is_named(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def open_broker(url: str) -> None:
        raise ImportError("No module named 'redis'")

    monkeypatch.setattr(serve_module, "open_broker", open_broker)
    assert invoke("--broker", "redis://localhost:6379/0") == (
        1,
        "error: --broker redis://localhost:6379/0: this broker cannot be loaded: "
        "No module named 'redis'\n",
    )


def test_a_broker_that_cannot_be_read_fails_before_listening(here: Path) -> None:
    name = write_module(
        here,
        """
        from prioritize.jobs import JobQueue, MemoryBroker

        class Down:
            def __init__(self):
                self.inner = MemoryBroker()

            def __getattr__(self, name):
                return getattr(self.inner, name)

            async def stats(self):
                raise ConnectionError("connection refused\\n  by 10.0.0.7:6379")

        jobs = JobQueue(Down())
        """,
    )
    assert invoke(f"{name}:jobs", "--port", "0") == (
        1,
        f"error: the broker of {name}:jobs: cannot read from it: "
        "connection refused by 10.0.0.7:6379\n",
    )
    code, output = invoke("--broker", "sqlite:////nonexistent-dir/jobs.db", "--port", "0")
    assert code == 1
    assert output.startswith(
        "error: broker sqlite:////nonexistent-dir/jobs.db: cannot read from it: "
    )


def test_module_problems_are_one_line(here: Path) -> None:
    assert invoke("tasks.py") == (
        1,
        "error: 'tasks.py' is not module:attribute; expected e.g. myapp.tasks:jobs\n",
    )
    name = write_module(
        here, "from prioritize.jobs import JobQueue\nqueue = JobQueue('memory://')\n"
    )
    assert invoke(f"{name}:jobs") == (
        1,
        f"error: module {name!r} has no attribute 'jobs'; its JobQueue objects: queue\n",
    )


def test_a_policy_file_with_problems_lists_them(here: Path) -> None:
    (here / "prioritize.toml").write_text("[gates.submit]\ncapacity = 0\n", encoding="utf-8")
    assert invoke("--broker", "memory://") == (
        1,
        f"1 problem in {here / 'prioritize.toml'}:\n"
        "  gates.submit.capacity: 0 is not a whole number ≥ 1\n",
    )
    assert invoke("--policy", "elsewhere.toml", "--broker", "memory://") == (
        1,
        f"error: elsewhere.toml: no such policy file (looked in {here})\n",
    )


def test_a_policy_with_other_levels_than_the_queue_is_refused(here: Path) -> None:
    (here / "prioritize.toml").write_text('levels = ["gold", "silver"]\n', encoding="utf-8")
    name = write_module(
        here, "from prioritize.jobs import JobQueue\njobs = JobQueue('memory://')\n"
    )
    assert invoke(f"{name}:jobs") == (
        1,
        "error: the policy's levels ['gold', 'silver'] are not the queue's ['critical', "
        "'high', 'normal', 'low', 'bulk']: a submitted job gets a level of the policy, which "
        "the queue must have; build both from the same policy\n",
    )


def test_an_address_in_use_is_named(here: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert invoke("--broker", "memory://", "--port", str(port)) == (
            1,
            f"error: cannot listen on 127.0.0.1:{port}: Address already in use\n",
        )


def test_an_address_that_cannot_be_resolved_is_named(here: Path) -> None:
    code, output = invoke("--broker", "memory://", "--host", "no-such-host.invalid")
    assert code == 1
    assert output.startswith("error: cannot listen on no-such-host.invalid:8000: ")
    assert "Unknown error" not in output


def test_a_policy_file_is_found_as_load_policy_finds_it(tmp_path: Path) -> None:
    assert not serve_module._has_policy_file(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n", encoding="utf-8")
    assert not serve_module._has_policy_file(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.prioritize]\n", encoding="utf-8")
    assert serve_module._has_policy_file(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.prioritize\n", encoding="utf-8")
    assert serve_module._has_policy_file(tmp_path)  # broken: load_policy will say how
    (tmp_path / "pyproject.toml").unlink()
    (tmp_path / "prioritize.toml").write_text("", encoding="utf-8")
    assert serve_module._has_policy_file(tmp_path)


# --- real servers -------------------------------------------------------------------------------


@contextmanager
def serving(cwd: Path, *args: str) -> Iterator[tuple[str, str]]:
    """``prioritize serve ARGS --port 0`` in a subprocess; yields its URL and first line.

    Stopped with SIGTERM on leaving, which must end it with status 0.
    """
    command = [sys.executable, "-c", "from prioritize.cli import main; main()", "serve"]
    process = subprocess.Popen(
        [*command, *args, "--port", "0"],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        first = process.stderr.readline()  # printed once the socket listens
        assert first.startswith("prioritize serve: listening on http://127.0.0.1:"), first
        url = first.split()[4]
        yield url, first.strip()
    finally:
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=60)
    assert process.returncode == 0, rest


def test_a_real_server_over_sqlite_answers_a_submission_and_keeps_the_job(tmp_path: Path) -> None:
    with serving(tmp_path, "--broker", "sqlite:///jobs.db") as (url, first):
        assert first.endswith("(broker sqlite:///jobs.db; any task)")
        with httpx.Client(base_url=url) as http:
            submitted = http.post("/v1/jobs", json={"task": "reports.monthly", "args": [11]})
            assert submitted.status_code == 202
            read = http.get(submitted.headers["location"])
            assert read.json()["status"] == "queued"
            assert http.get("/openapi.json").json()["openapi"] == "3.1.0"

    async def stored() -> str:
        queue = JobQueue(f"sqlite:///{tmp_path}/jobs.db")
        try:
            return (await queue.handle(submitted.json()["id"]).status()).value
        finally:
            await queue.close()

    assert asyncio.run(stored()) == "queued"  # durable: read back after the server stopped


def test_a_real_server_of_a_module_queue_classifies_by_the_policy_file(tmp_path: Path) -> None:
    (tmp_path / "prioritize.toml").write_text(
        '[[rules]]\nheaders = { x-plan = "gold" }\nlevel = "high"\n', encoding="utf-8"
    )
    name = write_module(
        tmp_path,
        """
        from prioritize.jobs import JobQueue

        jobs = JobQueue("sqlite:///tasks.db")

        @jobs.task(name="add")
        def add(a: int, b: int) -> int:
            return a + b
        """,
    )
    with serving(tmp_path, f"{name}:jobs") as (url, first):
        assert first.endswith(f"(the broker of {name}:jobs; tasks add)")
        with httpx.Client(base_url=url) as http:
            gold = http.post(
                "/v1/jobs", json={"task": "add", "args": [1, 2]}, headers={"X-Plan": "gold"}
            )
            unknown = http.post("/v1/jobs", json={"task": "mul", "args": [1, 2]})
    assert (gold.status_code, gold.json()["level"]) == (202, "high")
    assert unknown.status_code == 422
    assert unknown.json()["errors"] == [
        {"field": "task", "message": "unknown task 'mul'; accepted tasks: add"}
    ]
    assert (tmp_path / "tasks.db").is_file()
