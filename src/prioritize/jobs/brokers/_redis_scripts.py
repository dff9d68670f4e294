"""The Redis broker's scripts and the arguments they take (see ``redis.py``, ``lua/``).

The scripts are files of ``lua/``, each prefixed with ``common.lua``; what a
script reads from ARGV is built here, so the layouts live next to each
other: the gate's resolved rules, the levels a reservation may take, and
the finished outcomes it acks.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Sequence
from importlib import resources
from typing import Final

from ...core.jobgate import JobGate
from ...core.levels import LevelSet
from ...core.policy import GatePolicy, Order
from ..model import Outcome, OutcomeKind
from ._redis_codec import to_bytes

#: one script per operation, lua/<name>.lua
SCRIPTS: Final = (
    "enqueue", "reserve", "read", "cancel", "heartbeat", "dead", "requeue", "stats",
    "sleep", "setup",
)  # fmt: skip
_KINDS = {OutcomeKind.SUCCEEDED: "s", OutcomeKind.FAILED: "f", OutcomeKind.RELEASED: "r"}


@functools.cache
def lua(part: str) -> str:
    """One file of lua/, as packaged."""
    return resources.files(__package__).joinpath("lua", f"{part}.lua").read_text("utf-8")


def source(name: str) -> str:
    """A script's text: the shared rules, the gate for reserve, then its own body."""
    parts = ["common", "gate", name] if name == "reserve" else ["common", name]
    return "\n".join(lua(part) for part in parts)


def gate_args(gate: GatePolicy) -> list[str]:
    """JobGate's resolved rules, as lua/gate.lua's gate_rules reads them."""
    jobgate = JobGate(gate)
    args = ["1" if gate.order is Order.WEIGHTED else "0", str(jobgate.capacity)]
    for level in gate.level_set:
        limits = jobgate.limits(level)
        args += [str(limits.min), str(limits.max), repr(1.0 / limits.weight)]
    return args


def allowed(levels: LevelSet, chosen: Collection[str] | None) -> str:
    """Per rank, '1' if this reservation may take that level's jobs; unknown names raise."""
    if chosen is None:
        return "1" * len(levels)
    ranks = {levels.resolve(name).rank for name in chosen}
    return "".join("1" if rank in ranks else "0" for rank in range(len(levels)))


def union(masks: Iterable[str]) -> str:
    """The levels any of ``masks`` takes ('1'/'0' per rank); '' for no masks."""
    out = ""
    for mask in masks:
        out = (
            mask
            if not out
            else "".join("1" if "1" in pair else "0" for pair in zip(out, mask, strict=True))
        )
    return out


def outcome_args(outcomes: Sequence[Outcome]) -> list[str | bytes]:
    """The outcomes a reservation acks, 8 fields each, as lua/common.lua's apply_one reads them."""
    args: list[str | bytes] = [str(len(outcomes))]
    for o in outcomes:
        present = "".join(
            "0" if v is None else "1" for v in (o.result, o.error, o.traceback, o.retry_at)
        )
        args += [o.job_id, str(o.attempt), _KINDS[OutcomeKind(o.kind)], present]
        args += [o.result or b"", to_bytes(o.error or ""), to_bytes(o.traceback or "")]
        args.append("" if o.retry_at is None else repr(float(o.retry_at)))
    return args
