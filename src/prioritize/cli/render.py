"""Rich renderings of a simulation report: the comparison table people read.

Kept apart from the commands so the layout can be tested on its own and the
simulator stays free of presentation. Every figure comes from the `Report`;
nothing here computes a result, it only formats and compares two measured
numbers.
"""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..core.tickets import Reason
from ..simulate.report import SHED_REASONS, LevelFigures, Report, RunFigures

__all__ = ["format_wait", "report_view", "shed_share"]

_POLICY = "green"
_FIFO = "yellow"


def format_wait(seconds: float | None) -> str:
    """A wait for people: ``0``, ``840 µs``, ``12.3 ms``, ``2.19 s``; ``-`` if none was served."""
    if seconds is None:
        return "-"
    if seconds == 0:
        return "0"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def shed_share(figures: LevelFigures) -> str:
    """Percent of offered requests shed; never rounds a few to 0% or most to 100%."""
    if not figures.offered:
        return "-"
    share = 100 * figures.shed_total / figures.offered
    if 0 < share < 0.5:
        return "<1%"
    if 99.5 <= share < 100:
        return ">99%"
    return f"{share:.0f}%"


def _title(report: Report) -> str:
    spec, policy = report.spec, report.policy
    offered = policy.total.offered / spec.duration
    warmup = f" after {spec.warmup:g} s warmup" if spec.warmup else ""
    return (
        f"gate {spec.gate} · {policy.capacity} seats · queue {policy.queue} · seed {spec.seed}\n"
        f"offered {offered:,.0f} req/s = {report.offered_load:.1f}× capacity · "
        f"{spec.duration:g} s measured{warmup}"
    )


def _main_table(report: Report) -> Table:
    table = Table(title=_title(report), box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    table.add_column("level")
    table.add_column("offered", justify="right")
    for label, style in (("policy", _POLICY), ("FIFO", _FIFO)):
        table.add_column(f"{label}\nserved", justify="right", header_style=style)
        table.add_column("\nshed", justify="right", header_style=style)
        table.add_column("\np50 wait", justify="right", header_style=style)
        table.add_column("\np99 wait", justify="right", header_style=style)
    rows = list(zip(report.policy.levels, report.fifo.levels, strict=True))
    rows.append((report.policy.total, report.fifo.total))
    for index, (mine, fifo) in enumerate(rows):
        cells: list[str | Text] = [mine.level, f"{mine.offered:,}"]
        for figures, style in ((mine, _POLICY), (fifo, _FIFO)):
            cells += [
                Text(f"{figures.served:,}", style=style),
                Text(shed_share(figures), style=style),
                Text(format_wait(figures.p50), style=style),
                Text(format_wait(figures.p99), style=style),
            ]
        table.add_row(*cells, end_section=index == len(rows) - 2)
    return table


def _reason_table(report: Report) -> Table:
    table = Table(
        title="requests shed, by reason", box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left"
    )
    table.add_column("level")
    reasons = [r for r in SHED_REASONS if r is not Reason.SHUTDOWN or _stranded(report)]
    for label, style in (("policy", _POLICY), ("FIFO", _FIFO)):
        for index, reason in enumerate(reasons):
            header = f"{label if index == 0 else ''}\n{reason.value}"
            table.add_column(header, justify="right", header_style=style)
    pairs = list(zip(report.policy.levels, report.fifo.levels, strict=True))
    pairs.append((report.policy.total, report.fifo.total))
    for index, (mine, fifo) in enumerate(pairs):
        cells: list[str | Text] = [mine.level]
        for figures, style in ((mine, _POLICY), (fifo, _FIFO)):
            cells += [Text(f"{figures.shed[r]:,}", style=style) for r in reasons]
        table.add_row(*cells, end_section=index == len(pairs) - 2)
    return table


def _stranded(report: Report) -> int:
    """Requests left waiting forever, shed ``shutdown`` at the end (a policy smell)."""
    return sum(run.total.shed[Reason.SHUTDOWN] for run in (report.policy, report.fifo))


def _warning(report: Report) -> Text:
    return Text(
        "shutdown: requests that could never get a seat (every seat they may take is "
        "reserved for more important levels) and never time out (max_wait = inf); "
        "they were shed when the drained gate was closed.\n",
        style="bold red",
    )


def _verdict(report: Report) -> Text:
    """One line comparing the most important loaded level's p99 wait in the two runs."""
    mine, fifo = report.policy.levels[0], report.fifo.levels[0]
    line = Text(f"{mine.level}: p99 wait ")
    line.append(format_wait(mine.p99), style=f"bold {_POLICY}")
    line.append(f" and {shed_share(mine)} shed under the policy, ")
    line.append(format_wait(fifo.p99), style=f"bold {_FIFO}")
    line.append(f" and {shed_share(fifo)} shed under plain FIFO")
    return line


def _footnote(report: Report) -> Text:
    fifo: RunFigures = report.fifo
    wait = format_wait(report.fifo_max_wait) if report.fifo_max_wait != float("inf") else "∞"
    return Text(
        f"FIFO: one queue, same {fifo.capacity} seats, queue {fifo.queue}, max_wait {wait} "
        "(the policy's largest finite).\nWaits are those of served requests.",
        style="dim",
    )


def report_view(report: Report) -> Group:
    """Everything `prioritize simulate` prints for a report, as one renderable."""
    parts: list[RenderableType] = [_main_table(report), _reason_table(report)]
    if _stranded(report):
        parts.append(_warning(report))
    return Group(*parts, _verdict(report), _footnote(report))
