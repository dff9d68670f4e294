"""``prioritize worker module:queue``: run a `JobQueue`'s jobs until told to stop.

The command imports the module (the current directory first on
``sys.path``, as ``python -m`` does), takes the `JobQueue` named after the
colon and runs a `Worker` on it. SIGTERM or SIGINT starts a graceful
shutdown: no new jobs, up to ``--grace`` seconds for the running ones, the
rest released back to the queue, every outcome reported; a second signal
releases the running jobs at once. The exit status is 0 after a shutdown,
1 with one line naming the problem if the worker cannot start.

Logs go to stderr, as text or as one JSON object per line
(``--log-format json``) carrying the fields a log pipeline filters on:
``job_id``, ``task``, ``level``, ``attempt``, ``duration``, ``error``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import signal
import sys
import threading
from datetime import UTC, datetime
from typing import NoReturn

import click

from ..jobs.brokers import open_broker
from ..jobs.queue import JobQueue
from ..jobs.worker import Worker

__all__ = ["JsonFormatter", "load_queue", "worker"]

logger = logging.getLogger("prioritize.jobs.worker")

#: attributes every LogRecord has: the rest of a record's ``__dict__`` came from ``extra``
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, log_level, logger, message, and every ``extra`` field.

    ``log_level`` rather than ``level``: ``level`` is the job's level.
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "log_level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise SystemExit(1)


def load_queue(app: str) -> JobQueue:
    """The `JobQueue` ``module.path:attribute`` names; raises ValueError saying what is wrong."""
    module_name, colon, attribute = app.partition(":")
    if not colon or not module_name or not attribute:
        raise ValueError(f"{app!r} is not module:attribute; expected e.g. myapp.tasks:jobs")
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise ValueError(
                f"cannot import {module_name!r}: no module named {exc.name!r} in the current "
                f"directory ({here}) or on sys.path"
            ) from exc
        raise ValueError(f"importing {module_name!r} failed: {_describe(exc)}") from exc
    except Exception as exc:
        raise ValueError(
            f"importing {module_name!r} failed: {_describe(exc)} "
            f"(python -c 'import {module_name}' shows the traceback)"
        ) from exc
    queues = [name for name, value in vars(module).items() if isinstance(value, JobQueue)]
    if not hasattr(module, attribute):
        found = f"its JobQueue objects: {', '.join(queues)}" if queues else "it has no JobQueue"
        raise ValueError(f"module {module_name!r} has no attribute {attribute!r}; {found}")
    queue = getattr(module, attribute)
    if not isinstance(queue, JobQueue):
        raise ValueError(f"{app} is a {type(queue).__name__}, not a JobQueue")
    return queue


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _parse_levels(text: str | None, queue: JobQueue) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    accepted = ", ".join(queue.levels.names)
    if not names:
        raise ValueError(f"--levels {text!r}: expected level names separated by commas: {accepted}")
    unknown = [name for name in names if name not in queue.levels]
    if unknown:
        raise ValueError(
            f"--levels {text}: unknown level {', '.join(map(repr, unknown))}; "
            f"the queue's levels are {accepted}"
        )
    return names


def _serve_metrics(worker: Worker, port: int) -> None:
    try:
        import prometheus_client

        from ..jobs.metrics import register_worker
    except ImportError:
        _fail("--metrics-port needs prometheus-client: pip install 'prioritize[metrics]'")
    try:
        prometheus_client.start_http_server(port)
    except OSError as exc:
        _fail(f"--metrics-port {port}: cannot serve metrics there: {exc}")
    register_worker(worker)


def _configure_logging(log_format: str, log_level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log_level.upper())


async def _run(worker: Worker) -> None:
    """Run the worker, SIGTERM/SIGINT stopping it gracefully, a second one at once."""
    loop = asyncio.get_running_loop()
    received = 0

    def on_signal(signum: int) -> None:
        nonlocal received
        received += 1
        name = signal.Signals(signum).name
        if received == 1:
            logger.info(
                "%s: stopping once the running jobs end (at most %g s); send it again to "
                "release them now",
                name,
                worker.grace,
            )
            worker.stop()
        else:
            logger.warning("%s again: releasing the running jobs now", name)
            worker.stop(immediate=True)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await worker.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await worker.queue.close()


@click.command()
@click.argument("app", metavar="MODULE:QUEUE")
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Jobs this worker runs at once (and the most it reserves).",
)
@click.option(
    "--levels", default=None, help="Comma-separated levels this worker takes. [default: all]"
)
@click.option(
    "--lease",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds a job stays reserved without a heartbeat (renewed every third).",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds a shutdown waits for running jobs before releasing them.",
)
@click.option("--broker", "broker_url", default=None, help="Broker URL instead of the queue's.")
@click.option("--name", default=None, help="Worker name in the broker. [default: host:pid:random]")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics on this port (needs prometheus-client).",
)
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def worker(
    *,
    app: str,
    concurrency: int,
    levels: str | None,
    lease: float,
    grace: float,
    broker_url: str | None,
    name: str | None,
    metrics_port: int | None,
    log_format: str,
    log_level: str,
) -> None:
    """Run the jobs of the JobQueue MODULE:QUEUE (e.g. myapp.tasks:jobs) until SIGTERM."""
    try:
        queue = load_queue(app)
        chosen = _parse_levels(levels, queue)
        if broker_url is not None:
            try:
                queue.broker = open_broker(broker_url)
            except ValueError as exc:
                raise ValueError(f"--broker: {exc}") from None
            queue.broker.configure(queue.gate_policy)
        runner = Worker(
            queue, concurrency=concurrency, levels=chosen, lease=lease, grace=grace, name=name
        )
    except ValueError as exc:
        _fail(str(exc))
    if metrics_port is not None:
        _serve_metrics(runner, metrics_port)
    _configure_logging(log_format, log_level)
    asyncio.run(_run(runner))
    stuck = [t.name for t in threading.enumerate() if t.name.startswith("prioritize-job")]
    if stuck:
        # a sync job past its timeout or grace: a thread cannot be stopped, and
        # the interpreter would wait for it at exit; its job is released already
        logger.warning("exiting with %d job thread(s) still running: %s", len(stuck), stuck)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
