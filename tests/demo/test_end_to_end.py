"""``prioritize demo`` end to end: real uvicorn servers, real HTTP, a short run.

No timing figure is asserted — the machine is shared and noisy — only what
must hold whatever the timings: every level in every table, counts that add
up, shed answers that are problem details, a comparison line that quotes the
tables, and a self-contained report.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

from prioritize import Reason
from prioritize.demo.text import format_latency, format_ratio

from .output import RUN_LABELS, comparison, latency, tables
from .short_run import short_demo

LEVELS = ["critical", "high", "normal", "low", "bulk"]
VOID = {"meta", "br", "hr", "img", "input", "link", "area", "base", "col", "source", "wbr"}
SVG_LEAVES = {"rect", "line", "polyline", "circle", "path", "text", "title"}


def test_demo_prints_a_table_with_every_level_for_every_run() -> None:
    run = short_demo()
    assert run.exit_code == 0, run.stdout + run.stderr
    printed = tables(run.lines)
    assert list(printed) == list(RUN_LABELS)
    for rows in printed.values():
        assert list(rows) == [*LEVELS, "total"]


def test_offered_is_served_plus_shed_plus_errors_for_every_level() -> None:
    run = short_demo()
    for rows in tables(run.lines).values():
        for row in rows.values():
            assert row.offered == row.served + row.shed + row.errors, row
        assert rows["total"].offered == sum(rows[level].offered for level in LEVELS)
    for figures in run.result.runs:
        for level in (*figures.levels, figures.total):
            assert level.offered == level.served + level.shed + level.errors


def test_the_tables_show_the_measured_figures() -> None:
    run = short_demo()
    printed = tables(run.lines)
    for figures in run.result.runs:
        for level in (*figures.levels, figures.total):
            row = printed[figures.name][level.level]
            assert (row.offered, row.served, row.shed, row.errors) == (
                level.offered,
                level.served,
                level.shed,
                level.errors,
            )
            assert row.p99 == format_latency(level.p99)


def test_overload_is_shed_with_problem_details_and_nothing_errs() -> None:
    result = short_demo().result
    reasons = {reason.value for reason in Reason}
    for figures in (result.priorities, result.fifo):
        assert figures.total.shed > 0  # four times the capacity cannot all be served
        assert figures.total.errors == 0, figures.total.errors_by_detail
        # a 503 counts as shed only with an application/problem+json body naming a reason
        assert set(figures.total.shed_by_reason) <= reasons
    assert result.unloaded.total.errors == 0


def test_the_comparison_line_quotes_the_tables_p99s() -> None:
    run = short_demo()
    printed, line = tables(run.lines), comparison(run.lines)
    assert line["level"] == "critical"
    for name in RUN_LABELS:
        assert line[name] == printed[name]["critical"].p99
    unloaded = run.result.unloaded.level("critical").p99
    for name in ("priorities", "fifo"):
        measured = getattr(run.result, name).level("critical").p99
        assert line[f"{name}_ratio"] + "×" == format_ratio(measured / unloaded)
        # and the ratio agrees with the rounded figures shown, to their precision
        shown = latency(line[name]) / latency(line["unloaded"])  # type: ignore[operator]
        assert abs(shown - measured / unloaded) <= 0.02 * shown + 0.1


class _Report(HTMLParser):
    """Collects what a self-contained report must not have, and checks tags balance."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def test_the_report_is_self_contained_html_with_a_chart_per_level() -> None:
    run = short_demo()
    text = run.report.read_text(encoding="utf-8")
    parser = _Report()
    parser.feed(text)
    parser.close()
    assert parser.problems == []
    assert parser.stack == []
    names = [tag for tag, _ in parser.tags]
    assert names[:2] == ["html", "head"]
    for forbidden in ("script", "link", "img", "iframe", "object", "embed"):
        assert forbidden not in names
    for tag, attrs in parser.tags:
        for key in ("src", "href", "xlink:href"):
            assert key not in attrs, (tag, attrs)
    assert "http://" not in text
    assert "https://" not in text
    assert "url(" not in text
    figures = [attrs.get("id") for tag, attrs in parser.tags if tag == "figure"]
    assert figures == [f"level-{level}" for level in LEVELS]
    assert names.count("svg") == len(LEVELS)
    claim = re.search(r'<p class="claim">(.*?)</p>', text)
    assert claim is not None
    assert html.unescape(claim[1]) == comparison(run.lines).group(0)
