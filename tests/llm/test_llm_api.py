"""prioritize.llm's public names, and what importing it loads."""

from __future__ import annotations

import subprocess
import sys

import prioritize.llm


def test_all_is_sorted_and_exported() -> None:
    assert prioritize.llm.__all__ == sorted(prioritize.llm.__all__)
    for name in prioritize.llm.__all__:
        assert getattr(prioritize.llm, name) is not None


def test_both_front_ends_and_both_transports_are_public() -> None:
    import prioritize.llm.transport

    assert {"Budget", "Spend", "SyncBudget", "SyncSpend"} <= set(prioritize.llm.__all__)
    assert prioritize.llm.transport.__all__ == [
        "HEADER",
        "BudgetTransport",
        "SyncBudgetTransport",
        "remaining_of",
    ]


def test_the_budget_needs_no_http_library() -> None:
    code = (
        "import sys, prioritize.llm; prioritize.llm.SyncBudget; "
        "print('httpx' in sys.modules, 'starlette' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
