"""The demo's terminal output: one table per run, then the comparison, as rich renderables.

Every figure comes from the `DemoResult`; the comparison line is written
from the same p99s the tables show (`text.comparison_line`).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from .figures import RunFigures
from .run import DemoResult
from .text import (
    COLUMNS,
    LATENCY_NOTE,
    comparison_line,
    figure_cells,
    format_latency,
    run_title,
    setup_line,
    target_line,
)

__all__ = ["demo_view", "run_table"]

_STYLES = {"unloaded": "cyan", "priorities": "green", "fifo": "yellow"}


def run_table(run: RunFigures) -> Table:
    """One run's figures: a row per level, then the total."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "level" else "right")
    rows = [*run.levels, run.total]
    for index, figures in enumerate(rows):
        table.add_row(*figure_cells(figures), end_section=index == len(rows) - 2)
    return table


def _machine_lines(result: DemoResult) -> Text:
    """How hard the machine worked, so a reader can tell queueing from CPU contention."""
    overload = result.runs[1:]
    servers = [r.server_cpu / r.wall if r.server_cpu is not None else None for r in overload]
    clients = [r.client_cpu / r.wall for r in overload]
    names = ", ".join("with priorities" if r.name == "priorities" else "FIFO" for r in overload)
    line = Text(
        f"machine: server {_shares(servers)} of a core, load generator {_shares(clients)} "
        f"({names})\n",
        style="dim",
    )
    worst = max(run.lag_p99 for run in result.runs)
    if worst > result.setup.work / 10:
        line.append(
            f"warning: requests were sent up to {format_latency(worst)} late (p99): this "
            "machine is busy, and the latencies include that",
            style="bold red",
        )
    else:
        line.append(
            f"requests were sent at most {format_latency(worst)} late (p99): "
            "the latencies measure the queues, not the machine",
            style="dim",
        )
    return line


def _shares(values: Sequence[float | None]) -> str:
    return " and ".join("?" if v is None else f"{v:.0%}" for v in values)


def demo_view(result: DemoResult) -> Group:
    """Everything `prioritize demo` prints for a result, as one renderable.

    Print it with ``soft_wrap=True``: the summary lines are meant to stay one
    line each, whatever the width, so they can be read back and compared.
    """
    comparison, seed = result.comparison(), result.options.seed
    style = "bold green" if comparison.is_within_target else "bold red"
    parts: list[RenderableType] = [
        Text(f"prioritize demo · uvicorn on 127.0.0.1 · PriorityMiddleware · seed {seed}"),
        Text(setup_line(result)),
        Text(""),
    ]
    for run in result.runs:
        parts.append(Text(run_title(result, run.name), style=f"bold {_STYLES[run.name]}"))
        parts.append(run_table(run))
    parts += [
        Text(comparison_line(comparison), style="bold"),
        Text(target_line(comparison), style=style),
        Text(LATENCY_NOTE, style="dim"),
        _machine_lines(result),
    ]
    return Group(*parts)
