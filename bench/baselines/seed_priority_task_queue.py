# Baseline for bench/core.py: the source document's PriorityTaskQueue, kept UNMODIFIED.
#
# Source: the guide "How to Implement Resource Prioritization", section "Priority Queue Implementation" > "Python Priority Queue"
# (the `priority_queue.py` snippet), copied verbatim from its first line
# ("# priority_queue.py") through the end of `PriorityWorkerPool`.
#
# Only the snippet's trailing "# Usage" example is left out: it uses `await` at
# module level, which is a SyntaxError in an importable module, and it is not part
# of the queue. Nothing below this header has been edited (not even to fix lint or
# its known defects): its put() on a full queue scans the whole
# list and re-heapifies it, O(n) per insert, which is exactly what the benchmark
# compares against. Do not "improve" this file; it is the yardstick. Lint skips
# bench/baselines (pyproject per-file-ignores); the formatter is kept off by the
# `fmt: off` directive below, which is a comment too.
#
# fmt: off
# ---------------------------------------------------------------------------------
# priority_queue.py
import asyncio
import heapq
from dataclasses import dataclass, field
from typing import Any, Callable, Optional
from enum import IntEnum
import time
import logging

logger = logging.getLogger(__name__)

class Priority(IntEnum):
    CRITICAL = 0   # Health checks, payments
    HIGH = 1       # User authentication
    NORMAL = 2     # Regular API calls
    LOW = 3        # Analytics, background tasks
    BULK = 4       # Batch operations

@dataclass(order=True)
class PrioritizedTask:
    priority: int
    timestamp: float = field(compare=True)
    task: Any = field(compare=False)
    task_id: str = field(compare=False, default="")

class PriorityTaskQueue:
    """Priority queue for request processing"""

    def __init__(self, max_size: int = 10000):
        self.max_size = max_size
        self.queue: list = []
        self.lock = asyncio.Lock()
        self.not_empty = asyncio.Event()
        self.counts = {p: 0 for p in Priority}

    async def put(self, task: Any, priority: Priority = Priority.NORMAL,
                  task_id: str = "") -> bool:
        """Add task to queue with priority"""
        async with self.lock:
            # Check capacity - might reject low priority
            if len(self.queue) >= self.max_size:
                if priority >= Priority.NORMAL:
                    logger.warning(f"Queue full, rejecting {priority.name} task")
                    return False
                else:
                    # Remove lowest priority task
                    self._remove_lowest_priority()

            item = PrioritizedTask(
                priority=priority.value,
                timestamp=time.time(),
                task=task,
                task_id=task_id
            )
            heapq.heappush(self.queue, item)
            self.counts[priority] += 1
            self.not_empty.set()
            return True

    async def get(self, timeout: Optional[float] = None) -> Optional[Any]:
        """Get highest priority task"""
        try:
            await asyncio.wait_for(self.not_empty.wait(), timeout=timeout)
        except asyncio.TimeoutError:
            return None

        async with self.lock:
            if not self.queue:
                self.not_empty.clear()
                return None

            item = heapq.heappop(self.queue)
            priority = Priority(item.priority)
            self.counts[priority] -= 1

            if not self.queue:
                self.not_empty.clear()

            return item.task

    def _remove_lowest_priority(self):
        """Remove lowest priority task to make room"""
        # Find and remove the lowest priority (highest number) task
        if not self.queue:
            return

        lowest_idx = 0
        lowest_priority = self.queue[0].priority

        for i, item in enumerate(self.queue):
            if item.priority > lowest_priority:
                lowest_idx = i
                lowest_priority = item.priority

        removed = self.queue.pop(lowest_idx)
        heapq.heapify(self.queue)
        self.counts[Priority(removed.priority)] -= 1

    def get_stats(self) -> dict:
        return {
            'total': len(self.queue),
            'by_priority': {p.name: self.counts[p] for p in Priority}
        }


# Worker pool with priority queue
class PriorityWorkerPool:
    """Worker pool that processes tasks by priority"""

    def __init__(self, num_workers: int, queue: PriorityTaskQueue):
        self.num_workers = num_workers
        self.queue = queue
        self.workers = []
        self._running = False

    async def start(self):
        """Start worker tasks"""
        self._running = True
        self.workers = [
            asyncio.create_task(self._worker(i))
            for i in range(self.num_workers)
        ]

    async def stop(self):
        """Stop all workers"""
        self._running = False
        for worker in self.workers:
            worker.cancel()

    async def _worker(self, worker_id: int):
        """Worker loop"""
        while self._running:
            task = await self.queue.get(timeout=1.0)
            if task:
                try:
                    await task()
                except Exception as e:
                    logger.error(f"Worker {worker_id} task error: {e}")
