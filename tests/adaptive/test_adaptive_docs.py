"""docs/adaptive.md shows what the code does: its examples run, its output is the real output.

* every ```` ```toml policy ```` block reads its adaptive capacities as written (its
  ``python`` blocks run in tests/test_docs_examples.py, as every guide's);
* a ```` ```toml simulate NAME ```` block, written to ``NAME``, makes ``prioritize simulate
  NAME`` print exactly the ```` ```console ```` block that follows it;
* the table comparing capacities is what the simulator measures for those capacities.
"""

from __future__ import annotations

import contextlib
import copy
import re
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from prioritize import parse_policy, policy_from_toml
from prioritize.adaptive import AdaptiveSpec, parse_adaptive
from prioritize.cli import main
from prioritize.cli.render import format_wait
from prioritize.simulate import engine, parse_load

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "adaptive.md"
TEXT = DOC.read_text(encoding="utf-8")
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
BLOCKS = [(m.group(1).split(), m.group(2)) for m in FENCE.finditer(TEXT)]


def blocks(lang: str, tag: str | None = None) -> list[tuple[list[str], str]]:
    return [
        (info, body)
        for info, body in BLOCKS
        if info[:1] == [lang] and (tag is None or info[1:2] == [tag])
    ]


def test_every_toml_block_is_checked() -> None:
    assert {info[1] for info, _ in blocks("toml")} == {"policy", "simulate"}
    assert blocks("python"), "the page has runnable examples"


@pytest.mark.parametrize("body", [body for _, body in blocks("toml", "policy")])
def test_policy_example_is_valid(body: str) -> None:
    data = tomllib.loads(body)
    specs = {}
    for name, gate in data["gates"].items():
        if isinstance(gate["capacity"], Mapping):
            specs[name] = parse_adaptive(gate["capacity"], f"gates.{name}.capacity")
            gate["capacity"] = specs[name].initial
    assert specs, "the example shows an adaptive capacity"
    parse_policy(data)  # everything else about the gates is valid at the initial capacity
    assert dict(policy_from_toml(body, "adaptive.toml").adaptive) == specs


def test_simulate_example_prints_what_the_page_shows(tmp_path: Path) -> None:
    ((info, body),) = blocks("toml", "simulate")
    name = info[2]
    (tmp_path / name).write_text(body, encoding="utf-8")
    shown = _console_after(body, f"$ prioritize simulate {name}")
    with contextlib.chdir(tmp_path):
        result = CliRunner().invoke(main, ["simulate", name, "-q"])
    assert result.exit_code == 0, result.output
    assert [line.rstrip() for line in result.output.splitlines()] == shown


#: The rows of the comparison table: label, capacity for ``[simulate] capacity``.
VARIANTS = [
    ("fixed, 32 seats (the knee)", 32),
    ("fixed, 128 seats", 128),
    ("gradient (defaults)", {"adaptive": "gradient", "min": 4, "max": 200, "initial": 32}),
    (
        "aimd, max_rtt = 0.075",
        {"adaptive": "aimd", "min": 4, "max": 200, "initial": 32, "max_rtt": 0.075},
    ),
]


def test_comparison_table_is_measured() -> None:
    ((_, body),) = blocks("toml", "simulate")
    policy = policy_from_toml(body, "adaptive.toml")
    rows = []
    for label, capacity in VARIANTS:
        table = copy.deepcopy(dict(policy.simulate))
        table["capacity"] = capacity
        spec = parse_load(table, policy.levels, list(policy.gates))
        gate, adaptive = policy.gate(spec.gate), None
        if isinstance(spec.capacity, AdaptiveSpec):
            gate, adaptive = spec.capacity.gate(gate), spec.capacity
        elif spec.capacity is not None:
            gate = replace(gate, capacity=spec.capacity)
        run = engine.run(gate, engine.generate_arrivals(spec), spec, "policy", adaptive=adaptive)
        limit = "-" if run.limit is None else f"{run.limit.mean:.0f}"
        cells = [
            label,
            limit,
            f"{run.total.served:,}",
            format_wait(run.level("critical").p99),
            format_wait(run.level("normal").p99),
            format_wait(run.rtt_p50),
            format_wait(run.rtt_p99),
        ]
        rows.append(f"| {' | '.join(cells)} |")
    labels = tuple(f"| {label} |" for label, _ in VARIANTS)
    assert [line for line in TEXT.splitlines() if line.startswith(labels)] == rows


def _console_after(body: str, command: str) -> list[str]:
    after = TEXT[TEXT.index(body) + len(body) :]
    match = re.search(rf"```console\n{re.escape(command)}\n(.*?)```", after, re.DOTALL)
    assert match is not None, f"no console block for {command!r} after the example"
    return [line.rstrip() for line in match.group(1).splitlines()]
