"""Adaptive capacity: a gate's seat count that follows what the service behind it can take.

A fixed ``capacity`` is a guess made before the service is under load. A
limit controller replaces it with a measurement: it watches each completed
request's RTT (and whether it was dropped) and moves the limit up while the
service keeps up and down when it slows or fails, as TCP congestion
control does for a window. Two controllers, both sans-I/O (time is an
argument; nothing here reads a clock):

* `AIMD`: additive increase, multiplicative decrease on drops or an RTT
  above ``max_rtt`` (Netflix concurrency-limits' AIMDLimit);
* `Gradient`: the ratio of the no-load RTT to the current RTT, smoothed
  (Netflix's Gradient2Limit, with Envoy's measured no-load RTT).

`AdaptiveCapacity` applies a controller to a `Scheduler` (resizing it when
the limit changes), and `AdaptiveSpec` / `parse_adaptive` are the policy
file's ``capacity = {adaptive = "gradient", ...}``. See docs/adaptive.md.
"""

from __future__ import annotations

from .aimd import AIMD as AIMD
from .capacity import AdaptiveCapacity as AdaptiveCapacity
from .capacity import LimitController as LimitController
from .gradient import Gradient as Gradient
from .spec import AdaptiveSpec as AdaptiveSpec
from .spec import ControllerKind as ControllerKind
from .spec import parse_adaptive as parse_adaptive

__all__ = [
    "AIMD",
    "AdaptiveCapacity",
    "AdaptiveSpec",
    "ControllerKind",
    "Gradient",
    "LimitController",
    "parse_adaptive",
]
