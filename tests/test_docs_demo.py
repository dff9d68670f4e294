"""The demo output shown in the docs is the demos' real output, not a stale copy.

``prioritize simulate`` is deterministic (seeded, virtual time), so
docs/simulate.md shows its output exactly and any change to the scheduler's
decisions shows up here.

``prioritize demo`` (what ``make demo`` runs) measures a real server, so its
figures change from run to run and from machine to machine. README.md and
docs/demo.md show one real run; the tests check what holds for every run:
each line they show, numbers aside, is a line the demo prints today (so the
docs follow any change to the output's wording or layout), their tables add
up, and their comparison line quotes their own tables. No timing is asserted.
"""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from prioritize.cli import main
from prioritize.demo.setup import Setup
from tests.demo.output import RUN_LABELS, comparison, tables
from tests.demo.short_run import short_demo

ROOT = Path(__file__).resolve().parent.parent
LEVELS = ["critical", "high", "normal", "low", "bulk"]

#: Lines whose wording depends on what was measured (the verdict, the machine's lag).
_MEASURED_WORDING = ("target:", "requests were sent", "warning:")
_LATENCY = re.compile(r"(?<![\w.])(?:\d[\d,]*(?:\.\d+)?\s(?:µs|ms|s)\b|-(?=\s|$))")
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")


def simulate_output() -> list[str]:
    result = CliRunner().invoke(main, ["simulate", str(ROOT / "examples/prioritize.toml"), "-q"])
    assert result.exit_code == 0, result.output
    return [line.rstrip() for line in result.output.splitlines()]


def console_block(markdown: Path, command: str) -> list[str]:
    """The output lines of the longest console block that starts with ``$ command``."""
    pattern = rf"```console\n\$ {re.escape(command)}\n(.*?)```"
    blocks = [m.group(1) for m in re.finditer(pattern, markdown.read_text(), re.S)]
    assert blocks, f"no console block for {command!r} in {markdown.name}"
    return [line.rstrip() for line in max(blocks, key=len).splitlines()]


def shape(line: str) -> str:
    """A line with its measured numbers and column widths taken out."""
    line = re.sub(r"^report: .*", "report: <path>", line.strip())
    line = _NUMBER.sub("<n>", _LATENCY.sub("<t>", line))
    return re.sub(r"─+", "─", re.sub(r"\s+", " ", line))


def shown_lines(markdown: Path, command: str) -> list[str]:
    return [
        line
        for line in console_block(markdown, command)
        if line.strip() and line != "..." and not line.startswith(_MEASURED_WORDING)
    ]


def test_simulate_docs_show_the_real_output_exactly() -> None:
    shown = console_block(ROOT / "docs/simulate.md", "prioritize simulate examples/prioritize.toml")
    assert shown == simulate_output()


def test_simulate_docs_show_the_real_errors_of_their_broken_file(tmp_path: Path) -> None:
    block = console_block(ROOT / "docs/simulate.md", "cat broken.toml")
    command = block.index("$ prioritize simulate broken.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("\n".join(block[:command]) + "\n")
    result = CliRunner().invoke(main, ["simulate", str(broken)])
    assert result.exit_code == 1
    real = [
        line.rstrip() for line in result.output.replace(str(broken), "broken.toml").splitlines()
    ]
    assert block[command + 1 :] == real


def test_shape_takes_out_numbers_units_and_widths() -> None:
    assert shape(" critical     929   929  1.2 ms  -  ") == shape("critical 23 23 1.81 s 200 ms")
    assert shape("target: x") != shape("unloaded · 5 s measured")


def test_the_demo_output_in_the_docs_has_the_shape_of_the_real_output() -> None:
    real = {shape(line) for line in short_demo().lines}
    for doc, command in (("README.md", "make demo"), ("docs/demo.md", "make demo")):
        shown = shown_lines(ROOT / doc, command)
        assert len(shown) >= 15, doc
        unknown = [line for line in shown if shape(line) not in real]
        assert unknown == [], f"{doc} shows lines the demo no longer prints"


def test_the_tables_in_the_docs_add_up_and_the_comparison_quotes_them() -> None:
    for doc in ("README.md", "docs/demo.md"):
        block = console_block(ROOT / doc, "make demo")
        shown, line = tables(block), comparison(block)
        assert {"priorities", "fifo"} <= set(shown), doc
        for name, rows in shown.items():
            assert list(rows) == [*LEVELS, "total"], (doc, name)
            for row in rows.values():
                assert row.offered == row.served + row.shed + row.errors, (doc, row)
            assert line[name] == rows[line["level"]].p99, (doc, name)
    assert set(tables(console_block(ROOT / "docs/demo.md", "make demo"))) == set(RUN_LABELS)


def test_the_policies_in_the_demo_guide_are_the_ones_it_runs() -> None:
    text = (ROOT / "docs/demo.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    setup = Setup()
    assert blocks == [setup.priority_toml(), setup.fifo_toml()]
