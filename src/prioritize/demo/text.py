"""How the demo's figures are written for people: latencies, ratios, the comparison line.

Shared by the terminal tables and the HTML report, so both show the same
numbers the same way, and the comparison line is built from exactly the
figures the tables show.
"""

from __future__ import annotations

from .figures import LevelFigures
from .run import AIM, TARGET, Comparison, DemoResult

__all__ = [
    "COLUMNS",
    "LATENCY_NOTE",
    "RUN_LABELS",
    "comparison_line",
    "figure_cells",
    "format_latency",
    "format_load",
    "format_ratio",
    "run_title",
    "setup_line",
    "target_line",
]

#: The columns of every run's table, in order.
COLUMNS = ("level", "offered", "served", "shed", "errors", "p50", "p95", "p99")

#: What each run is called in titles and the comparison line.
RUN_LABELS = {"unloaded": "unloaded", "priorities": "with priorities", "fifo": "plain FIFO"}


def format_latency(seconds: float | None) -> str:
    """``840 µs``, ``12.3 ms``, ``151 ms``, ``1.83 s``; ``-`` when nothing was served."""
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def format_ratio(ratio: float | None) -> str:
    """``1.2×`` below 10, ``12×`` from 10 on; ``?`` when there is nothing to compare."""
    if ratio is None:
        return "?"
    return f"{ratio:.1f}×" if ratio < 9.95 else f"{ratio:,.0f}×"


def figure_cells(figures: LevelFigures) -> list[str]:
    """One table row: the `COLUMNS` of one level (or the total) of one run."""
    return [
        figures.level,
        f"{figures.offered:,}",
        f"{figures.served:,}",
        f"{figures.shed:,}",
        f"{figures.errors:,}",
        format_latency(figures.p50),
        format_latency(figures.p95),
        format_latency(figures.p99),
    ]


def format_load(load: float) -> str:
    """Offered work over capacity: ``3.9×``, ``0.24×``."""
    return f"{load:.1f}×" if load >= 1 else f"{load:.2f}×"


def setup_line(result: DemoResult) -> str:
    """``16 seats × 100 ms of work (50–150 ms) = 160 req/s capacity · queue 256``."""
    setup = result.setup
    low, high = setup.work_range
    return (
        f"{setup.capacity} seats × {format_latency(setup.work)} of work "
        f"({low * 1e3:.3g}–{format_latency(high)}) = {setup.capacity_rate:,.0f} req/s capacity · "
        f"queue {setup.queue}"
    )


def run_title(result: DemoResult, name: str) -> str:
    """``with priorities · 630 req/s = 3.9× capacity · 15 s measured after 2 s warm-up``."""
    run = {r.name: r for r in result.runs}[name]
    warmup = f" after {run.warmup:g} s warm-up" if run.warmup else ""
    same = " · the same requests" if name == "fifo" else ""
    return (
        f"{RUN_LABELS[name]} · {run.rate:,.0f} req/s = {format_load(run.load)} capacity{same} · "
        f"{run.duration:.3g} s measured{warmup}"
    )


def comparison_line(comparison: Comparison) -> str:
    """The demo's claim, from the measured p99s: unloaded, with priorities, with FIFO."""
    c = comparison
    return (
        f"{c.level} p99: {format_latency(c.unloaded)} unloaded, "
        f"{format_latency(c.priorities)} under {format_load(c.load)} overload with priorities "
        f"({format_ratio(c.priorities_ratio)}), "
        f"{format_latency(c.fifo)} with plain FIFO ({format_ratio(c.fifo_ratio)})"
    )


def target_line(comparison: Comparison) -> str:
    """Whether the level stayed within `TARGET` (and `AIM`) times its unloaded p99."""
    ratio = format_ratio(comparison.priorities_ratio)
    if comparison.is_within_aim:
        verdict = f"met ({ratio}, within the aim)"
    elif comparison.is_within_target:
        verdict = f"met ({ratio}, above the aim)"
    else:
        verdict = f"not met on this run ({ratio})"
    return (
        f"target: {comparison.level} p99 with priorities within {TARGET:g}× of unloaded, "
        f"aim {AIM:g}×: {verdict}"
    )


#: How latency is measured, in one line under the tables.
LATENCY_NOTE = (
    "latency: from each request's scheduled send time to its whole response; "
    "percentiles of served requests"
)
