"""``prioritize serve [MODULE:QUEUE]``: the job service over HTTP, served by uvicorn.

With ``MODULE:QUEUE`` the service submits to that `JobQueue` (its tasks,
its broker, its levels); without, to a queue over ``--broker`` (SQLite in
``./prioritize.db`` by default) that accepts any task name — the workers
have the code. The policy is ``--policy``, else the one `load_policy`
finds in the current directory, else the queue's levels with no rules.

Everything that can fail before serving is checked first — the module,
the policy, the broker (one read of its stats), the address — and fails
with one line on stderr and exit status 1. Once listening, the command
prints the address it listens on, so ``--port 0`` is usable; SIGINT or
SIGTERM stops it (uvicorn's graceful shutdown), and the broker's
connections are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import socket
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from ..config import POLICY_FILE
from ..core.config import Policy
from ..jobs.broker import Broker
from ..jobs.brokers import open_broker
from ..jobs.queue import JobQueue
from .common import load_or_fail
from .worker import load_queue

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette

__all__ = ["DEFAULT_BROKER", "serve"]

#: the broker of a service started without MODULE:QUEUE (three slashes: relative)
DEFAULT_BROKER = "sqlite:///./prioritize.db"
#: modules the service runs on, and the extras that bring them
_REQUIRED = {"starlette": "http", "uvicorn": "http", "prometheus_client": "metrics"}


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(1)


@click.command()
@click.argument("app", metavar="[MODULE:QUEUE]", required=False)
@click.option(
    "--broker",
    "broker_url",
    default=None,
    help=f"Broker URL: memory://, sqlite:///path.db, redis://host:port/0. "
    f"[default: the queue's; without MODULE:QUEUE, {DEFAULT_BROKER}]",
)
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Policy file: levels, rules and trust that classify submissions. "
    "[default: ./prioritize.toml or pyproject.toml's [tool.prioritize]; else the levels alone]",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on (0: any free port, printed once listening).",
)
def serve(
    *, app: str | None, broker_url: str | None, policy_path: Path | None, host: str, port: int
) -> None:
    """Serve the job API (POST /v1/jobs, GET /v1/jobs/{id}, ...) for MODULE:QUEUE.

    MODULE:QUEUE (e.g. myapp.tasks:jobs) names a JobQueue: its registered
    tasks are the only ones accepted. Without it, any task name is accepted
    and stored for the workers. See docs/jobs-api.md.
    """
    missing = [name for name in _REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        extras = ",".join(sorted({_REQUIRED[name] for name in missing}))
        _fail(
            f"prioritize serve needs {', '.join(missing)}, which is not installed; "
            f"install it with: pip install 'prioritize[{extras}]'"
        )
    from ..jobs.service import create_app

    policy = _find_policy(policy_path)
    try:
        if app is not None:
            queue = load_queue(app)
            if broker_url is not None:
                queue.broker = _open(broker_url)
                queue.broker.configure(queue.gate_policy)
        else:
            queue = JobQueue(_open(broker_url or DEFAULT_BROKER), policy=policy)
        service = create_app(queue, policy=policy)
    except ValueError as exc:  # a ConfigError too
        _fail(_one_line(exc))
    url = broker_url or (DEFAULT_BROKER if app is None else None)
    where = f"broker {url}" if url is not None else f"the broker of {app}"
    listening = _listen(host, port)
    bound = listening.getsockname()[1]
    try:
        asyncio.run(_serve(service, queue, listening, host=host, port=bound, where=where))
    except _BrokerDown as exc:
        _fail(str(exc))
    finally:
        listening.close()


def _open(url: str) -> Broker:
    """``open_broker(url)``, its errors named after ``--broker``."""
    try:
        return open_broker(url)
    except ImportError as exc:
        raise ValueError(f"--broker {url}: this broker cannot be loaded: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"--broker: {exc}") from None


def _find_policy(path: Path | None) -> Policy | None:
    """``--policy``, else the file `load_policy` would find, else None (the queue's levels)."""
    if path is not None or _has_policy_file(Path.cwd()):
        return load_or_fail(path)
    return None


def _has_policy_file(here: Path) -> bool:
    """A ``prioritize.toml``, or a ``pyproject.toml`` with a [tool.prioritize] table."""
    if (here / POLICY_FILE).is_file():
        return True
    pyproject = here / "pyproject.toml"
    if not pyproject.is_file():
        return False
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return True  # let load_policy say what is wrong with it
    tool = data.get("tool")
    return isinstance(tool, dict) and "prioritize" in tool


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; exit 1 naming the address if there is none."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        # create_server adds the address to strerror: say it once; a lookup error has its own
        code = exc.errno
        plain = code is not None and code > 0 and not isinstance(exc, socket.gaierror)
        reason = os.strerror(code) if plain and code is not None else (exc.strerror or str(exc))
        _fail(f"cannot listen on {host}:{port}: {reason}")


class _BrokerDown(Exception):
    """The broker failed its first read: the message says which and why."""


async def _serve(
    app: Starlette, queue: JobQueue, listening: socket.socket, *, host: str, port: int, where: str
) -> None:
    import uvicorn

    try:
        await queue.stats()
    except Exception as exc:  # any broker's own error types: named, not caught by kind
        await _close_quietly(queue)
        raise _BrokerDown(f"{where}: cannot read from it: {_one_line(exc)}") from exc
    shown = f"[{host}]" if ":" in host else host
    accepted = f"tasks {', '.join(sorted(queue.tasks))}" if queue.tasks else "any task"
    click.echo(
        f"prioritize serve: listening on http://{shown}:{port} ({where}; {accepted})", err=True
    )
    server = _server_class(uvicorn.Server)(
        uvicorn.Config(app, host=host, port=port, lifespan="off")
    )
    try:
        await server.serve(sockets=[listening])
    finally:
        await queue.close()


def _server_class(base: type[uvicorn.Server]) -> type[uvicorn.Server]:
    """uvicorn's server, except that the signal that stopped it is not raised again after.

    uvicorn re-raises it once shut down, so the process ends as if killed
    by it (or with a KeyboardInterrupt). For this command a stop by SIGINT
    or SIGTERM, once uvicorn has finished the requests in flight, is a
    success: exit status 0, and the broker closed on the way out.
    """

    class Server(base):  # type: ignore[misc,valid-type]
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            handled = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


async def _close_quietly(queue: JobQueue) -> None:
    with contextlib.suppress(Exception):  # a broker that never opened has nothing to release
        await queue.close()


def _one_line(exc: BaseException) -> str:
    """An error's message on one line, whatever the broker or module wrote."""
    return " ".join(str(exc).split()) or type(exc).__name__
