"""The demo output shown in the docs is the demo's real output, not a stale copy.

The simulator is deterministic (seeded, virtual time), so any change to the
scheduler's decisions shows up here and the docs get refreshed with it.
"""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from prioritize.cli import main

ROOT = Path(__file__).resolve().parent.parent


def demo_output() -> list[str]:
    result = CliRunner().invoke(main, ["simulate", str(ROOT / "examples/prioritize.toml"), "-q"])
    assert result.exit_code == 0, result.output
    return [line.rstrip() for line in result.output.splitlines()]


def console_block(markdown: Path, command: str) -> list[str]:
    """The output lines of the longest console block that starts with ``$ command``."""
    pattern = rf"```console\n\$ {re.escape(command)}\n(.*?)```"
    blocks = [m.group(1) for m in re.finditer(pattern, markdown.read_text(), re.S)]
    assert blocks, f"no console block for {command!r} in {markdown.name}"
    return [line.rstrip() for line in max(blocks, key=len).splitlines()]


def test_simulate_docs_show_the_demo_output_exactly() -> None:
    shown = console_block(ROOT / "docs/simulate.md", "prioritize simulate examples/prioritize.toml")
    assert shown == demo_output()


def test_readme_shows_lines_of_the_real_demo_output() -> None:
    shown = [line for line in console_block(ROOT / "README.md", "make demo") if line != "..."]
    real = demo_output()
    assert len(shown) >= 10
    assert all(line in real for line in shown), [line for line in shown if line not in real]


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
