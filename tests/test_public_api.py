"""The public names are fixed here: adding or removing one is a deliberate change."""

from __future__ import annotations

import subprocess
import sys

import prioritize
import prioritize.core

PUBLIC = [
    "AIMD", "DEFAULT_LEVELS", "AdaptiveCapacity", "AdaptiveSpec", "Classification",
    "Classifier", "ConfigError", "Gate", "GatePolicy", "GateStats", "Gradient", "Level",
    "LevelPolicy", "LevelSet", "LevelStats", "Order", "Percent", "Policy", "PrioritizeError",
    "PriorityQueue", "PriorityThreadPoolExecutor", "QueueClosed", "Reason", "Rejected",
    "RequestInfo", "Rule", "Scheduler", "Slot", "ThreadPriorityQueue", "Ticket", "TicketState",
    "TicketStateError", "TrustDecision", "TrustPolicy", "UnknownLevelError", "current_level",
    "level_scope", "load_policy", "parse_policy", "policy_from_toml",
]  # fmt: skip


def isort_order(names: list[str]) -> list[str]:
    """Constants, then classes, then functions, each alphabetical (ruff's RUF022 order)."""
    return sorted(names, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n))


def test_all_is_sorted_and_complete() -> None:
    assert prioritize.__all__ == isort_order(prioritize.__all__)
    assert prioritize.__all__ == PUBLIC
    for name in prioritize.__all__:
        assert getattr(prioritize, name) is not None


def test_core_all_is_sorted_and_exported() -> None:
    assert prioritize.core.__all__ == isort_order(prioritize.core.__all__)
    for name in prioritize.core.__all__:
        assert getattr(prioritize.core, name) is not None


def test_importing_prioritize_loads_only_the_standard_library() -> None:
    code = (
        "import sys; before = set(sys.modules); import prioritize; "
        "new = {m.split('.')[0] for m in set(sys.modules) - before}; "
        "print(' '.join(sorted(m for m in new if m not in sys.stdlib_module_names)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["prioritize"]
