"""What every command shares: loading the policy and failing with a clear list of problems."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

import click
from rich.console import Console

from ..config import load_policy
from ..core.config import Policy
from ..errors import ConfigError, Problem
from ..simulate.load import LoadSpec, parse_load

__all__ = ["check_load", "fail", "load_or_fail", "stdout_console"]

#: Width used when stdout is not a terminal (a pipe, a file, a test runner).
PIPE_WIDTH = 100


def fail(error: ConfigError, source: object = None) -> NoReturn:
    """Print every problem of ``error`` on stderr, one per line with its key path; exit 1.

    Plain ``click.echo`` rather than rich: problem lines must never be wrapped
    or styled, so they can be grepped and compared.
    """
    problems = error.problems
    if len(problems) == 1 and not problems[0].path:
        click.echo(f"error: {problems[0].message}", err=True)  # names its file already
        raise SystemExit(1)
    source = source or error.source
    where = f" in {source}" if source else ""
    click.echo(f"{len(problems)} problem{'s' if len(problems) != 1 else ''}{where}:", err=True)
    for problem in problems:
        click.echo(f"  {problem}", err=True)
    raise SystemExit(1)


def check_load(policy: Policy, table: Mapping[str, object]) -> LoadSpec:
    """`parse_load` for ``policy``, exiting 1 with the problems listed instead of raising.

    Key paths are given as they appear in the file: under ``tool.prioritize``
    when the policy came from a ``pyproject.toml``.
    """
    try:
        return parse_load(table, policy.levels, list(policy.gates))
    except ConfigError as error:
        if Path(policy.source).name == "pyproject.toml":
            error = ConfigError(
                [Problem(f"tool.prioritize.{p.path}", p.message) for p in error.problems]
            )
        fail(error, policy.source)


def load_or_fail(path: Path | None) -> Policy:
    """`load_policy`, exiting 1 with the problems listed instead of raising."""
    try:
        return load_policy(path)
    except ConfigError as error:
        fail(error, path)


def stdout_console() -> Console:
    """A console for results: the terminal's width, or `PIPE_WIDTH` when piped."""
    console = Console()
    if not console.is_terminal:
        console.width = PIPE_WIDTH
    return console
