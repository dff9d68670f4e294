"""Thread pools whose queue is a priority scheduler.

`PriorityThreadPoolExecutor` is a drop-in `concurrent.futures.Executor`: the
standard `ThreadPoolExecutor` semantics, with each call submitted at a level
and a `GatePolicy` deciding which queued call a free thread runs next and
which calls are shed with `Rejected`. See docs/threads.md.
"""

from __future__ import annotations

from ._executor import PriorityThreadPoolExecutor as PriorityThreadPoolExecutor

__all__ = ["PriorityThreadPoolExecutor"]
