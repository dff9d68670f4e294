"""Try a policy against a load before deploying it: a discrete-event simulator.

`parse_load` validates a ``[simulate]`` table into a `LoadSpec`; `simulate`
runs its arrivals through a gate's real `Scheduler` and through plain FIFO
admission at the same capacity, in virtual time, and returns a `Report` of
measured figures. Pure Python, no I/O, no click or rich: the CLI
(`prioritize simulate`) renders what this package computes.
"""

from __future__ import annotations

from .engine import Arrival as Arrival
from .engine import fifo_policy as fifo_policy
from .engine import generate_arrivals as generate_arrivals
from .engine import simulate as simulate
from .load import LevelLoad as LevelLoad
from .load import LoadSpec as LoadSpec
from .load import merge_overrides as merge_overrides
from .load import parse_load as parse_load
from .report import LevelFigures as LevelFigures
from .report import Report as Report
from .report import RunFigures as RunFigures
from .service import Constant as Constant
from .service import Exponential as Exponential
from .service import Lognormal as Lognormal
from .service import ServiceTime as ServiceTime
from .service import Uniform as Uniform

__all__ = [
    "Arrival",
    "Constant",
    "Exponential",
    "LevelFigures",
    "LevelLoad",
    "LoadSpec",
    "Lognormal",
    "Report",
    "RunFigures",
    "ServiceTime",
    "Uniform",
    "fifo_policy",
    "generate_arrivals",
    "merge_overrides",
    "parse_load",
    "simulate",
]
