"""Checks of a `Worker`'s settings, each failing with a message that names the bad value.

Kept apart from the worker so its constructor reads as what it stores. The
checks run once, when the worker is built: a bad value stops a deployment
at start, not after the first job (a heartbeat no shorter than the lease,
say, would only show as leases running out between two renewals).
"""

from __future__ import annotations

import math
from collections.abc import Collection

from ..core.levels import LevelSet

__all__ = ["check_concurrency", "check_heartbeat", "check_levels", "check_seconds"]


def check_concurrency(concurrency: object) -> None:
    """ValueError unless ``concurrency`` is a whole number of slots, at least one."""
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ValueError(f"concurrency = {concurrency!r}: expected a whole number ≥ 1")


def check_seconds(name: str, value: object, *, zero: bool = False) -> None:
    """ValueError unless ``value`` is a finite number of seconds, > 0 (≥ 0 with ``zero``)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value < 0 if zero else value <= 0):  # type: ignore[operator]
        bound = "≥ 0" if zero else "> 0"
        raise ValueError(f"{name} = {value!r}: expected a finite number of seconds {bound}")


def check_heartbeat(lease: float, heartbeat: float | None) -> float:
    """The seconds between two lease renewals: a third of ``lease`` by default, always less."""
    heartbeat = lease / 3 if heartbeat is None else heartbeat
    check_seconds("heartbeat", heartbeat)
    if heartbeat >= lease:
        raise ValueError(
            f"heartbeat = {heartbeat!r}: expected fewer seconds than the lease ({lease!r}), "
            "or the lease runs out between two renewals"
        )
    return heartbeat


def check_levels(known: LevelSet, levels: Collection[str] | None) -> list[str] | None:
    """The names in ``levels`` (one name may be given alone), once each, all of ``known``."""
    if levels is None:
        return None
    if isinstance(levels, str):
        levels = [levels]
    names = list(dict.fromkeys(levels))
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        what = f"unknown level(s) {', '.join(map(repr, unknown))}" if unknown else "no level"
        raise ValueError(
            f"levels = {list(levels)!r}: {what}; the queue's levels are {', '.join(known.names)}"
        )
    return names
