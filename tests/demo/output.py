"""Reading ``prioritize demo``'s printed output back: its tables and its comparison line.

Used on the real output of a run and on the copies of it in the docs, so a
test can check that a table's figures add up and that the comparison line
quotes exactly the p99s the tables show.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Table titles start with the run's label.
RUN_LABELS = {"unloaded": "unloaded", "priorities": "with priorities", "fifo": "plain FIFO"}
HEADER = ["level", "offered", "served", "shed", "errors", "p50", "p95", "p99"]

_UNITS = {"µs": 1e-6, "ms": 1e-3, "s": 1.0}
COMPARISON = re.compile(
    r"^(?P<level>\w+) p99: (?P<unloaded>\S+ \S+) unloaded, (?P<priorities>\S+ \S+) under "
    r"(?P<load>[\d.]+)× overload with priorities \((?P<priorities_ratio>[\d.,]+)×\), "
    r"(?P<fifo>\S+ \S+) with plain FIFO \((?P<fifo_ratio>[\d.,]+)×\)$"
)


@dataclass(frozen=True)
class Row:
    level: str
    offered: int
    served: int
    shed: int
    errors: int
    p50: str
    p95: str
    p99: str


def latency(text: str) -> float | None:
    """``151 ms`` → 0.151; ``-`` → None."""
    if text == "-":
        return None
    value, unit = text.split(" ")
    return float(value) * _UNITS[unit]


def tables(lines: list[str]) -> dict[str, dict[str, Row]]:
    """Each run's rows by level (``total`` included), keyed ``unloaded``/``priorities``/``fifo``."""
    found: dict[str, dict[str, Row]] = {}
    current: dict[str, Row] | None = None
    for line in lines:
        text = line.strip()
        run = next((k for k, label in RUN_LABELS.items() if text.startswith(f"{label} · ")), None)
        if run is not None:
            current = found[run] = {}
            continue
        cells = re.split(r"\s{2,}", text)
        if current is None or not text or set(text) <= {"─"}:
            continue
        if cells == HEADER:
            continue
        if len(cells) != len(HEADER):
            current = None  # the tables are over
            continue
        level, *counts = cells[:5]
        current[level] = Row(level, *(int(c.replace(",", "")) for c in counts), *cells[5:])
    return found


def comparison(lines: list[str]) -> re.Match[str]:
    matches = [m for line in lines if (m := COMPARISON.match(line.strip()))]
    assert len(matches) == 1, f"expected one comparison line, found {len(matches)}"
    return matches[0]
