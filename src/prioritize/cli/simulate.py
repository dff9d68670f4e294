"""``prioritize simulate``: run a policy's gate and plain FIFO against the same load.

The load comes from the policy file's ``[simulate]`` table; flags override
single values of it. Overrides are merged into the raw table and validated
with it, so ``--rate bulk=-3`` is reported exactly like ``rate = -3`` in the
file (``simulate.load.bulk.rate: -3 is not a number > 0``).

When the gate's capacity is adaptive (in the policy, or ``[simulate]
capacity = {adaptive = ...}``) or the service slows with load
(``[simulate.service_model]``), a table of how the limit moved follows the
usual ones (docs/adaptive.md); otherwise the output is unchanged.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich import box
from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..adaptive.spec import AdaptiveSpec
from ..core.policy import GatePolicy
from ..errors import ConfigError
from ..simulate import LoadSpec, Report, merge_overrides
from ..simulate import simulate as run_simulation
from ..simulate.report import LIMIT_SLICES
from .common import check_load, fail, load_or_fail, stdout_console
from .render import format_wait, report_view

__all__ = ["simulate"]


def _parse_rates(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, object]:
    """``LEVEL=RATE`` pairs; a RATE that is not a number is left for load validation."""
    rates: dict[str, object] = {}
    for text in values:
        level, sep, rate = text.partition("=")
        if not sep or not level.strip():
            raise click.BadParameter(f"{text!r} is not LEVEL=RATE, e.g. critical=50")
        rates[level.strip()] = _number(rate.strip())
    return rates


def _number(text: str) -> object:
    """An int or float as TOML would read it, else the text itself (for a clear message)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _run(
    gate: GatePolicy, spec: LoadSpec, show_progress: bool, adaptive: AdaptiveSpec | None
) -> Report:
    if not show_progress:
        return run_simulation(gate, spec, adaptive=adaptive)
    columns = (
        TextColumn("{task.description:<12}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        tasks = {
            "policy": bar.add_task(f"gate {gate.name}", total=1.0),
            "fifo": bar.add_task("plain FIFO", total=1.0),
        }
        return run_simulation(
            gate,
            spec,
            lambda name, done: bar.update(tasks[name], completed=done),
            adaptive=adaptive,
        )


def _write_json(report: Report, target: str) -> None:
    if target == "-":
        click.echo(report.to_json())
        return
    try:
        Path(target).write_text(report.to_json() + "\n", encoding="utf-8")
    except OSError as error:
        click.echo(f"--json {target}: cannot write: {error.strerror or error}", err=True)
        raise SystemExit(1) from None


@click.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--gate", help="Gate of the policy to drive (default: [simulate] gate, or the only one)."
)
@click.option("--duration", type=float, help="Measured virtual seconds.")
@click.option(
    "--warmup", type=float, help="Virtual seconds simulated first and left out of the figures."
)
@click.option("--seed", type=int, help="Random seed: the same seed gives the same figures.")
@click.option(
    "--rate",
    "rates",
    multiple=True,
    metavar="LEVEL=RATE",
    callback=_parse_rates,
    help="Arrivals per second of one level (repeatable).",
)
@click.option("--overload", type=float, help="Multiply every level's rate by this factor.")
@click.option(
    "--json", "json_target", metavar="PATH", help="Write every figure as JSON ('-': stdout only)."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def simulate(
    *,
    path: Path | None,
    gate: str | None,
    duration: float | None,
    warmup: float | None,
    seed: int | None,
    rates: dict[str, object],
    overload: float | None,
    json_target: str | None,
    quiet: bool,
) -> None:
    """Try a policy against a load in virtual time, side by side with plain FIFO.

    PATH is a policy file with a [simulate] table (default: the same discovery
    as `prioritize check`). Arrivals are drawn once and run twice: through the
    policy's gate and through one FIFO queue with the same seats.
    """
    policy = load_or_fail(path)
    table = merge_overrides(
        policy.simulate,
        gate=gate,
        duration=duration,
        warmup=warmup,
        seed=seed,
        overload=overload,
        rates=rates,
    )
    spec = check_load(policy, table)
    show_progress = not quiet and Console(stderr=True).is_terminal
    try:
        adaptive = policy.adaptive.get(spec.gate)
        report = _run(policy.gate(spec.gate), spec, show_progress, adaptive)
    except ConfigError as error:  # [simulate] capacity leaves too few seats for the mins
        fail(error, policy.source)
    if json_target is not None:
        _write_json(report, json_target)
    if json_target != "-":
        console = stdout_console()
        console.print(report_view(report))
        if report.adaptive is not None or report.service_model is not None:
            console.print(capacity_view(report))


def capacity_view(report: Report) -> RenderableType:
    """How the limit moved and how long requests held their seats, in each run."""
    adaptive, model = report.adaptive, report.service_model
    title = f"adaptive capacity: {adaptive}" if adaptive else f"service: {model}"
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("run")
    if adaptive is not None:
        for header in ("limit\nmin", "\nmean", "\nmax", "\nchanges"):
            table.add_column(header, justify="right")
        step = report.spec.duration / LIMIT_SLICES
        table.add_column(f"mean limit per {step:g} s\nfrom {report.spec.warmup:g} s")
    if model is not None:
        table.add_column("rtt\np50", justify="right")
        table.add_column("\np99", justify="right")
    for label, run, style in (("policy", report.policy, "green"), ("FIFO", report.fifo, "yellow")):
        cells: list[str | Text] = [Text(label, style=style)]
        if run.limit is not None:
            figures = run.limit
            cells += [
                f"{figures.min}",
                f"{figures.mean:.1f}",
                f"{figures.max}",
                f"{figures.changes:,}",
                " ".join(f"{value:.0f}" for value in figures.series),
            ]
        if model is not None:
            cells += [format_wait(run.rtt_p50), format_wait(run.rtt_p99)]
        table.add_row(*cells)
    lines = []
    if adaptive is not None:
        service = f" Service: {model}." if model is not None else ""
        lines.append(f"Seat counts above are the initial limit, {adaptive.initial}.{service}")
    if model is not None:
        lines.append(
            "rtt: how long served requests held their seat. Seats past the knee add latency,"
        )
        lines.append("not throughput, so the offered load above is relative to the knee.")
    return Group(Text(title, style="italic"), table, Text("\n".join(lines), style="dim"))
