"""Baseline for bench/core.py: a plain ``heapq`` priority queue.

This is the floor a Python priority scheduler is measured against: the C
``heappush``/``heappop`` on a list of ``(rank, seq, item)`` tuples, where
``seq`` (an increasing counter) keeps FIFO order within a rank and stops the
comparison before it reaches ``item``. It has none of the scheduler's work:
no seats, no per-level limits, no flows, no bounded queues, no shedding.

The timed loops live here, next to the data they use, and take everything they
need as arguments so they bind nothing global inside the loop. Tuples are built
before the timed loop (the benchmark pre-generates them), so the loop measures
the two heap operations and the Python ``for`` that drives them, nothing else.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from typing import Any

Entry = tuple[int, int, Any]


def push_then_pop(heap: list[Entry], entries: Iterable[Entry]) -> None:
    """One ``heappush`` followed by one ``heappop`` per entry; the heap keeps its size."""
    push = heapq.heappush
    pop = heapq.heappop
    for entry in entries:
        push(heap, entry)
        pop(heap)


def pop_then_push(heap: list[Entry], entries: Iterable[Entry]) -> None:
    """One ``heappop`` (serve the best) then one ``heappush`` (a new arrival) per entry."""
    push = heapq.heappush
    pop = heapq.heappop
    for entry in entries:
        pop(heap)
        push(heap, entry)


class HeapQueue:
    """The smallest useful wrapper: ``put(rank, item)`` / ``get()`` with FIFO per rank.

    Reported for context only (what one Python method call per operation adds);
    the ratios in the benchmark table are against the bare loops above.
    """

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[Entry] = []
        self._seq = itertools.count()

    def put(self, rank: int, item: Any) -> None:
        heapq.heappush(self._heap, (rank, next(self._seq), item))

    def get(self) -> Any:
        return heapq.heappop(self._heap)[2]

    def __len__(self) -> int:
        return len(self._heap)
