"""Priority queues: items handed out by a gate's policy, bounded, never lost silently.

`PriorityQueue` is for asyncio, `ThreadPriorityQueue` for threads; both keep
their items in the core `Scheduler` (see `_state` for how seats map to
consumers). See docs/queues.md.
"""

from __future__ import annotations

from ..errors import QueueClosed as QueueClosed
from .aio import PriorityQueue as PriorityQueue
from .threads import ThreadPriorityQueue as ThreadPriorityQueue

__all__ = ["PriorityQueue", "QueueClosed", "ThreadPriorityQueue"]
