"""Real Redis servers for tests: a standalone server and a three-node cluster on loopback.

Each is a ``redis-server`` child process on a free port, with no persistence
and its files in a temporary directory, so runs never collide and leave
nothing behind. Readiness is waited for by asking the server (``PING``,
``CLUSTER INFO``), with a deadline, never by sleeping a fixed time.

Without ``redis-server`` installed the fixtures skip, except under
``CI=true``, where a server that cannot start is a failure
(``scripts/ensure-services``, run by ``make test``, installs it).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

STARTUP_TIMEOUT = 20.0
#: a cluster node's options: its state in nodes.conf of its own directory
_CLUSTER_NODE = (
    "--cluster-enabled", "yes",
    "--cluster-config-file", "nodes.conf",
    "--cluster-node-timeout", "2000",
)  # fmt: skip


def require_redis() -> None:
    """Skip (or fail under CI=true) when the Redis binaries are not installed."""
    missing = [name for name in ("redis-server", "redis-cli") if shutil.which(name) is None]
    if missing:
        message = f"{', '.join(missing)} not installed; run scripts/ensure-services"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def free_port() -> int:
    """A port free now, below 55536: a cluster node also listens on its port + 10,000."""
    rng = random.Random()
    for _ in range(100):
        port = rng.randrange(20_000, 55_536)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port found for redis-server")


def _cli(port: int, *args: str) -> str:
    done = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
        check=False,
    )
    return done.stdout.strip()


def _wait_until(condition: str, check: object) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.02)  # polling a server that is starting: there is nothing to wait on
    raise RuntimeError(f"redis: {condition} within {STARTUP_TIMEOUT} s")


def _start(directory: Path, options: tuple[str, ...]) -> tuple[subprocess.Popen[str], int]:
    """Start one redis-server on a free port and wait for its PING; retries a taken port."""
    for _attempt in range(5):  # another process may take the port between probe and bind
        port = free_port()
        process = subprocess.Popen(
            [
                "redis-server",
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(directory),
                *options,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            if _cli(port, "ping") == "PONG":
                return process, port
            time.sleep(0.02)  # polling a server that is starting: there is nothing to wait on
        _stop(process)
        output = process.stdout.read() if process.stdout else ""
        if "Address already in use" not in output:
            raise RuntimeError(f"redis-server did not start: {output[-800:]}")
    raise RuntimeError("no free port for redis-server after 5 attempts")


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STARTUP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def _server(directory: Path, *options: str) -> Iterator[int]:
    """One redis-server on a free port; yields the port once it answers PING."""
    process, port = _start(directory, options)
    try:
        yield port
    finally:
        _stop(process)
        if process.stdout is not None:
            process.stdout.close()


@contextmanager
def redis_server() -> Iterator[str]:
    """A standalone Redis; yields its URL, ``redis://127.0.0.1:PORT/0``."""
    require_redis()
    with (
        tempfile.TemporaryDirectory(prefix="prioritize-redis-") as directory,
        _server(Path(directory)) as port,
    ):
        yield f"redis://127.0.0.1:{port}/0"


@contextmanager
def redis_cluster(nodes: int = 3) -> Iterator[list[str]]:
    """A Redis Cluster of ``nodes`` masters (no replicas); yields their URLs once it is ok."""
    require_redis()
    with (
        tempfile.TemporaryDirectory(prefix="prioritize-cluster-") as directory,
        ExitStack() as stack,
    ):
        ports = []
        for index in range(nodes):
            node_dir = Path(directory) / f"node-{index}"
            node_dir.mkdir()
            ports.append(stack.enter_context(_server(node_dir, *_CLUSTER_NODE)))
        addresses = [f"127.0.0.1:{port}" for port in ports]
        create = ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0"]
        created = subprocess.run(
            [*create, "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=STARTUP_TIMEOUT,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout[-500:]}")
        _wait_until(
            "the cluster did not reach cluster_state:ok",
            lambda: all("cluster_state:ok" in _cli(port, "cluster", "info") for port in ports),
        )
        yield [f"redis://{address}" for address in addresses]
