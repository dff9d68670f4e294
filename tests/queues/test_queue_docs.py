"""The examples of docs/queues.md run here, so the page cannot drift from behaviour."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "queues.md"
_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def _python_blocks() -> list[tuple[int, str]]:
    text = DOC.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, match.start()) + 1, match.group(2))
        for match in _FENCE.finditer(text)
        if match.group(1).strip() == "python"
    ]


BLOCKS = _python_blocks()


def test_the_page_has_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize(("line", "code"), BLOCKS, ids=[f"queues.md:{line}" for line, _ in BLOCKS])
def test_queue_doc_example_runs(line: int, code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert re.search(r"^\s*assert\b", code, re.MULTILINE), "an example shows its outcome"
    monkeypatch.chdir(ROOT)
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, f"docs/queues.md:{line}", "exec"), {"__name__": f"queues_doc_{line}"})
