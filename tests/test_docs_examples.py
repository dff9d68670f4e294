"""The examples in the user documentation run here, so the docs cannot drift from behaviour.

Fenced blocks of README.md and the guides in docs/ (DOCS below) are picked
out by their info string:

* every ```` ```python ```` block is executed
  on its own (each one is self-contained) from the repository root, and must
  contain an ``assert`` that shows its outcome;
* a ```` ```toml policy ```` block must load with `policy_from_toml`;
  ```` ```toml pyproject ```` is loaded as the ``[tool.prioritize]`` table of a
  ``pyproject.toml``;
* a ```` ```toml broken NAME ```` block must fail, and the ```` ```console ````
  block after it, ``$ prioritize check NAME`` and its output, must be exactly
  what the command prints for that file;
* a ```` ```toml simulate NAME ```` block is a simulation file, run by the
  docs test of its page (tests/adaptive/test_adaptive_docs.py);
* any other ```` ```toml ```` block is an error here, so none goes unchecked.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from prioritize import ConfigError, Policy, policy_from_toml
from prioritize.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = (
    "README.md",
    "docs/concepts.md",
    "docs/policy-file.md",
    "docs/asyncio.md",
    "docs/threads.md",
    "docs/queues.md",
    "docs/adaptive.md",
    "docs/trust.md",
    "docs/http.md",
    "docs/http-client.md",
    "docs/metrics.md",
    "docs/jobs.md",
    "docs/jobs-api.md",
    "docs/processes.md",
    "docs/llm.md",
    "docs/databases.md",
)

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    tags: tuple[str, ...]
    text: str

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def _blocks(doc: str) -> list[Block]:
    text = (ROOT / doc).read_text(encoding="utf-8")
    out = []
    for match in _FENCE.finditer(text):
        lang, *tags = match.group(1).split() or [""]
        line = text.count("\n", 0, match.start()) + 1
        out.append(Block(doc, line, lang, tuple(tags), match.group(2)))
    return out


BLOCKS = [block for doc in DOCS for block in _blocks(doc)]
PYTHON = [b for b in BLOCKS if b.lang == "python"]
TOML = [b for b in BLOCKS if b.lang == "toml"]


def test_the_docs_have_examples_to_check() -> None:
    assert {b.doc for b in PYTHON} == set(DOCS)
    assert any("policy" in b.tags for b in TOML)


@pytest.mark.parametrize("block", PYTHON, ids=lambda b: b.id)
def test_python_example_runs(block: Block, monkeypatch: pytest.MonkeyPatch) -> None:
    assert re.search(r"^\s*assert\b", block.text, re.MULTILINE), (
        f"{block.id}: an example shows its outcome with an assert"
    )
    if block.doc == "docs/databases.md":
        _require_postgres()
    monkeypatch.chdir(ROOT)
    code = compile(block.text, block.id, "exec")
    with contextlib.redirect_stdout(io.StringIO()):
        exec(code, {"__name__": f"docs_example_{block.line}"})


def _require_postgres() -> None:
    """The database examples need the PostgreSQL `make test` starts: else skip, or fail under CI."""
    dsn = os.environ.get(
        "DATABASE_URL", "postgresql://prioritize:prioritize@127.0.0.1:5432/postgres"
    )
    try:
        with socket.create_connection(
            (urlsplit(dsn).hostname or "", urlsplit(dsn).port or 5432), 5
        ):
            return
    except OSError as exc:
        message = f"PostgreSQL for docs/databases.md at {dsn!r} not reachable: {exc}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.mark.parametrize("block", TOML, ids=lambda b: b.id)
def test_toml_example_is_what_it_claims(block: Block, tmp_path: Path) -> None:
    kind = block.tags[0] if block.tags else ""
    if kind == "policy":
        assert isinstance(policy_from_toml(block.text, f"{block.id}.toml"), Policy)
    elif kind == "pyproject":
        assert isinstance(policy_from_toml(block.text, "pyproject.toml"), Policy)
    elif kind == "broken":
        with pytest.raises(ConfigError):
            policy_from_toml(block.text, block.tags[1])
        _check_console_transcript(block, tmp_path)
    elif kind == "simulate":
        # a simulation file: `prioritize simulate` runs it in tests/adaptive/test_adaptive_docs.py
        assert len(block.tags) == 2, f"{block.id}: name the file, as 'simulate NAME.toml'"
        assert "gates" in tomllib.loads(block.text)
    else:
        pytest.fail(
            f"{block.id}: mark a toml block 'policy', 'pyproject', 'broken NAME' or 'simulate NAME'"
        )


def _check_console_transcript(block: Block, tmp_path: Path) -> None:
    name = block.tags[1]
    following = [b for b in BLOCKS if b.doc == block.doc and b.line > block.line]
    console = following[0] if following else None
    assert console is not None, f"{block.id}: a broken example is followed by a transcript"
    assert console.lang == "console", f"{block.id}: the next block is not its transcript"
    command, *expected = console.text.splitlines()
    assert command == f"$ prioritize check {name}"
    (tmp_path / name).write_text(block.text, encoding="utf-8")
    with contextlib.chdir(tmp_path):
        result = CliRunner().invoke(main, ["check", name])
    assert result.exit_code == 1
    assert result.output.splitlines() == expected
