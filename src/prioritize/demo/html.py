"""The demo's HTML report: one self-contained file that opens from disk.

Everything is inline — the charts are SVG elements, the styles one
``<style>`` block — and nothing is fetched: no script, no font, no image,
no stylesheet from anywhere. The report holds the same tables as the
terminal, a latency-over-time chart per level (p99 per time bucket for the
run with priorities and for FIFO, the unloaded p99 as a dashed line), and
both policies as TOML.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from .figures import RunFigures
from .run import DemoResult
from .svg import Series, latency_chart
from .text import (
    COLUMNS,
    RUN_LABELS,
    comparison_line,
    figure_cells,
    run_title,
    setup_line,
    target_line,
)

__all__ = ["COLORS", "demo_html"]

#: Line colours per run, in the charts and the tables' titles.
COLORS = {"unloaded": "#6b7280", "priorities": "#15803d", "fifo": "#d97706"}

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-variant-numeric: tabular-nums; }
th, td { padding: 0.2rem 0.7rem; text-align: right; border-bottom: 1px solid #e5e5e5; }
th:first-child, td:first-child { text-align: left; }
tr.total td { font-weight: 600; border-top: 2px solid #999; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.3rem; }
.claim { font-size: 1.1rem; font-weight: 600; }
.dim { color: #666; }
figure { margin: 1rem 0 2rem; } figcaption { font-weight: 600; margin-bottom: 0.3rem; }
pre { background: #f5f5f5; padding: 0.8rem; overflow-x: auto; }
"""


def demo_html(result: DemoResult, when: datetime | None = None) -> str:
    """The whole report as one HTML document; ``when`` the run finished, if it is to be shown."""
    comparison, options = result.comparison(), result.options
    run = (
        f"prioritize demo --duration {options.duration:g} --warmup {options.warmup:g} "
        f"--rate-factor {options.rate_factor:g} --seed {options.seed}"
    )
    finished = f" · {when:%Y-%m-%d %H:%M %Z}".rstrip() if when is not None else ""
    body = [
        "<h1>prioritize demo</h1>",
        f'<p class="dim"><code>{escape(run)}</code>{escape(finished)}</p>',
        f"<p>{escape(setup_line(result))}. A real uvicorn server on 127.0.0.1 with "
        "<code>PriorityMiddleware</code> in front of an endpoint that awaits each "
        "request's work; an open-loop load (Poisson arrivals, sent at their scheduled "
        "times whatever the answers). Latency runs from each request's scheduled send "
        "time to its whole response; percentiles are of served requests.</p>",
        f'<p class="claim">{escape(comparison_line(comparison))}</p>',
        f"<p>{escape(target_line(comparison))}</p>",
        "<h2>Latency over time, per level</h2>",
        '<p class="dim">p99 latency of the requests scheduled in each '
        f"{result.priorities.bucket:g} s of the measured window. A gap: nothing of that "
        "level was served then.</p>",
        *(_level_figure(result, level.level) for level in result.priorities.levels),
        "<h2>Figures</h2>",
        *(_table(result, run) for run in result.runs),
        "<h2>Policies</h2>",
        "<p>With priorities:</p>",
        f"<pre>{escape(result.setup.priority_toml())}</pre>",
        "<p>Plain FIFO (the same seats, queue bound and longest <code>max_wait</code>; "
        "one level, so arrival order decides):</p>",
        f"<pre>{escape(result.setup.fifo_toml())}</pre>",
    ]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            "<title>prioritize demo</title>",
            f"<style>{_STYLE}</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )


def _level_figure(result: DemoResult, level: str) -> str:
    route = result.setup.route(level)
    width = result.priorities.bucket
    series = [
        Series(
            f"{RUN_LABELS['unloaded']} p99",
            COLORS["unloaded"],
            [(0.0, result.unloaded.level(level).p99)],
            is_reference=True,
        ),
        *(
            Series(
                f"{RUN_LABELS[run.name]} p99",
                COLORS[run.name],
                [(b.start + width / 2, b.p99) for b in run.timeline[level]],
            )
            for run in (result.priorities, result.fifo)
        ),
    ]
    title = f"{level} ({route.path}): p99 latency over time"
    chart = latency_chart(title, result.priorities.duration, series)
    caption = f"<figcaption>{escape(title)}</figcaption>"
    return f'<figure id="level-{escape(level)}">\n{caption}\n{chart}\n</figure>'


def _table(result: DemoResult, run: RunFigures) -> str:
    head = "".join(f"<th>{name}</th>" for name in COLUMNS)
    rows = []
    for figures in (*run.levels, run.total):
        cells = "".join(f"<td>{escape(cell)}</td>" for cell in figure_cells(figures))
        rows.append(
            f'<tr class="total">{cells}</tr>' if figures is run.total else f"<tr>{cells}</tr>"
        )
    title = escape(run_title(result, run.name))
    caption = f'<caption style="color: {COLORS[run.name]}">{title}</caption>'
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
