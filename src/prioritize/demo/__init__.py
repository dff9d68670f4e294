"""``prioritize demo``: a real server overloaded four times over, with priorities and with FIFO.

The demo starts uvicorn on 127.0.0.1 with `PriorityMiddleware` in front of
an endpoint of limited capacity, drives an open-loop mixed-priority load at
it, and measures what every level of request experiences: first unloaded,
then under overload with the policy's priorities, then under the same
overload with plain FIFO admission. One module per job:

* `setup` — the service's seats and work, the two policies, the mix;
* `load` — the open-loop schedule, drawn from the seed alone;
* `service`, `server`, `process` — the ASGI app, the child process that
  serves it, and the parent's handle on that child;
* `client`, `driver` — a lean HTTP/1.1 client and the open-loop sender;
* `figures`, `run` — per-level figures and the three runs end to end;
* `text`, `view`, `svg`, `html` — the terminal tables and the HTML report.

Only the ``prioritize demo`` command imports this package; it needs the
``cli`` and ``http`` extras (rich, uvicorn). ``import prioritize`` never
loads it.
"""

from __future__ import annotations

from .run import Comparison as Comparison
from .run import DemoOptions as DemoOptions
from .run import DemoResult as DemoResult
from .run import run_demo as run_demo
from .setup import Setup as Setup

__all__ = ["Comparison", "DemoOptions", "DemoResult", "Setup", "run_demo"]
