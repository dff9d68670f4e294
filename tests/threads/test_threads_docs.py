"""The examples of docs/threads.md run here, so the page cannot drift from behaviour.

As tests/test_docs_examples.py does for the other pages: each ```` ```python ````
block runs on its own and shows its outcome with an ``assert``; each
```` ```toml policy ```` block must load.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from prioritize import Policy, policy_from_toml

ROOT = Path(__file__).resolve().parents[2]
DOC = "docs/threads.md"
_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def blocks(kind: str) -> list[tuple[str, str]]:
    text = (ROOT / DOC).read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        if match.group(1).strip() == kind:
            line = text.count("\n", 0, match.start()) + 1
            found.append((f"{DOC}:{line}", match.group(2)))
    return found


PYTHON = blocks("python")
POLICIES = blocks("toml policy")


def test_the_page_has_examples() -> None:
    assert len(PYTHON) >= 5
    assert POLICIES


@pytest.mark.parametrize(("where", "code"), PYTHON, ids=[w for w, _ in PYTHON])
def test_python_example_runs(where: str, code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert re.search(r"^\s*assert\b", code, re.MULTILINE), f"{where}: no assert"
    monkeypatch.chdir(ROOT)
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, where, "exec"), {"__name__": "docs_example"})


@pytest.mark.parametrize(("where", "text"), POLICIES, ids=[w for w, _ in POLICIES])
def test_policy_example_loads(where: str, text: str) -> None:
    policy = policy_from_toml(text, f"{where}.toml")
    assert isinstance(policy, Policy)
    assert policy.gate("workers").capacity == 8
