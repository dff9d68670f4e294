"""``prioritize demo``: overload a real server with and without priorities, and compare.

The demo package (uvicorn, a load generator, the HTML report) is imported
only when the command runs, so the other commands start without it and
``prioritize check`` works without the ``http`` extra. Options are checked
before anything starts: a bad value is a usage error (exit 2) naming the
option, the value and what is accepted; a server that cannot start or a
report that cannot be written exits 1 with the reason.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from .common import stdout_console

if TYPE_CHECKING:
    from ..demo import DemoOptions, DemoResult, Setup

__all__ = ["demo"]

#: The option each `prioritize.demo.run.option_problems` key stands for.
_FLAGS = {
    "duration": "--duration",
    "warmup": "--warmup",
    "rate_factor": "--rate-factor",
    "seed": "--seed",
}
_RUN_LABELS = {"unloaded": "unloaded", "priorities": "with priorities", "fifo": "plain FIFO"}


@click.command()
@click.option(
    "--duration",
    type=float,
    default=15.0,
    show_default=True,
    help="Measured seconds of each overload run; the unloaded run lasts a third of it.",
)
@click.option(
    "--warmup",
    type=float,
    default=2.0,
    show_default=True,
    help="Seconds of overload sent first and left out of the figures.",
)
@click.option(
    "--rate-factor",
    type=float,
    default=4.0,
    show_default=True,
    help="Offered load over capacity: 4 sends four times what the seats can serve.",
)
@click.option(
    "--seed",
    type=int,
    default=1,
    show_default=True,
    help="Random seed of the load: the same seed sends the same requests.",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(path_type=Path),
    default=Path("prioritize-demo.html"),
    show_default=True,
    help="Where to write the HTML report (self-contained; opens from disk).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no notice on stderr.")
def demo(
    *,
    duration: float,
    warmup: float,
    rate_factor: float,
    seed: int,
    report_path: Path,
    quiet: bool,
) -> None:
    """Overload a real uvicorn server, with priorities and with plain FIFO, and compare.

    Starts the server on 127.0.0.1 with PriorityMiddleware in front of an
    endpoint of 16 seats, measures each level unloaded, then sends the same
    open-loop overload through the policy with priorities and through plain
    FIFO admission. Prints a table per run and the critical p99 comparison,
    and writes an HTML report with latency-over-time charts per level.
    Takes about 45 seconds with the defaults.
    """
    _check_options(duration, warmup, rate_factor, seed, report_path)
    if importlib.util.find_spec("uvicorn") is None:
        click.echo(
            "error: prioritize demo serves HTTP with uvicorn, which is not installed; "
            "install the http extra: pip install 'prioritize[http]'",
            err=True,
        )
        raise SystemExit(1)
    from ..demo import DemoOptions, Setup
    from ..demo.html import demo_html
    from ..demo.process import ServerError
    from ..demo.view import demo_view

    setup = Setup()
    options = DemoOptions(duration=duration, warmup=warmup, rate_factor=rate_factor, seed=seed)
    if not quiet:
        click.echo(_notice(options), err=True)
    try:
        result = _run(setup, options, show_progress=not quiet)
    except ServerError as error:
        click.echo(f"error: {error}", err=True)
        raise SystemExit(1) from None
    console = stdout_console()
    console.print(demo_view(result), soft_wrap=True)
    try:
        report_path.write_text(demo_html(result, datetime.now(UTC)), encoding="utf-8")
    except OSError as error:
        click.echo(f"--report {report_path}: cannot write: {error.strerror or error}", err=True)
        raise SystemExit(1) from None
    console.print(f"report: {report_path}", highlight=False)


def _check_options(
    duration: float, warmup: float, rate_factor: float, seed: int, report: Path
) -> None:
    from ..demo.run import option_problems

    problems = option_problems(duration, warmup, rate_factor, seed)
    if problems:
        raise click.UsageError(
            "\n".join(
                f"Invalid value for '{_FLAGS[name]}': {message}"
                for name, message in problems.items()
            )
        )
    if report.is_dir():
        raise click.BadParameter(
            f"{str(report)!r} is a directory; expected a file path, e.g. {report / 'demo.html'}",
            param_hint="'--report'",
        )
    folder = report.parent
    if not folder.is_dir():
        raise click.BadParameter(
            f"{str(report)!r}: directory {str(folder)!r} does not exist", param_hint="'--report'"
        )
    if not os.access(folder, os.W_OK):
        raise click.BadParameter(
            f"{str(report)!r}: directory {str(folder)!r} is not writable", param_hint="'--report'"
        )


def _notice(options: DemoOptions) -> str:
    unloaded = options.duration * options.unloaded_share
    overload = options.warmup + options.duration
    return (
        f"prioritize demo: {unloaded:.3g} s unloaded, then {overload:.3g} s at "
        f"{options.rate_factor:g}× capacity with priorities and {overload:.3g} s with "
        f"plain FIFO, each against a uvicorn server on 127.0.0.1"
    )


def _run(setup: Setup, options: DemoOptions, *, show_progress: bool) -> DemoResult:
    from ..demo import run_demo

    stderr = Console(stderr=True)
    if not (show_progress and stderr.is_terminal):
        return asyncio.run(run_demo(setup, options))
    columns = (
        TextColumn("{task.description:<16}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("requests answered"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=stderr, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(_RUN_LABELS.get(name, name), total=total)
            bar.update(tasks[name], completed=done)

        return asyncio.run(run_demo(setup, options, progress))
