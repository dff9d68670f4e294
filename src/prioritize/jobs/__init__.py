"""Durable jobs run by priority: accept at once, run when a seat is free, lose nothing.

See docs/jobs.md. `JobQueue` holds the tasks and a broker; a worker
(`prioritize worker module:queue`) runs them.
"""

from __future__ import annotations

from ..core.retry import Jitter as Jitter
from ..core.retry import RetryPolicy as RetryPolicy
from .broker import Broker as Broker
from .brokers import MemoryBroker as MemoryBroker
from .brokers import open_broker as open_broker
from .model import Job as Job
from .model import JobError as JobError
from .model import JobNotFound as JobNotFound
from .model import JobState as JobState
from .model import JobStats as JobStats
from .model import LevelJobStats as LevelJobStats
from .model import Outcome as Outcome
from .model import OutcomeKind as OutcomeKind
from .model import SerializationError as SerializationError
from .model import StoreError as StoreError
from .model import TaskFailed as TaskFailed
from .queue import JobHandle as JobHandle
from .queue import JobQueue as JobQueue
from .queue import Task as Task
from .serializer import JsonSerializer as JsonSerializer
from .serializer import Serializer as Serializer
from .worker import Worker as Worker
from .worker import WorkerStats as WorkerStats

__all__ = [
    "Broker",
    "Jitter",
    "Job",
    "JobError",
    "JobHandle",
    "JobNotFound",
    "JobQueue",
    "JobState",
    "JobStats",
    "JsonSerializer",
    "LevelJobStats",
    "MemoryBroker",
    "Outcome",
    "OutcomeKind",
    "RetryPolicy",
    "SerializationError",
    "Serializer",
    "StoreError",
    "Task",
    "TaskFailed",
    "Worker",
    "WorkerStats",
    "open_broker",
]
