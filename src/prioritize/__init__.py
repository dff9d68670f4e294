"""prioritize: keep the important work of a service fast when it is overloaded.

One policy (levels, classification rules and gates) decides who gets a scarce
resource first, who waits and who is shed with a clear answer. The scheduler
at the centre is sans-I/O (`prioritize.core`); front-ends adapt it to asyncio,
threads, HTTP, job queues and pools.
"""

from __future__ import annotations

from .adaptive import AIMD as AIMD
from .adaptive import AdaptiveCapacity as AdaptiveCapacity
from .adaptive import AdaptiveSpec as AdaptiveSpec
from .adaptive import Gradient as Gradient
from .aio import Gate as Gate
from .aio import Slot as Slot
from .config import load_policy as load_policy
from .config import policy_from_toml as policy_from_toml
from .context import current_level as current_level
from .context import level_scope as level_scope
from .core.classify import Classification as Classification
from .core.classify import Classifier as Classifier
from .core.classify import RequestInfo as RequestInfo
from .core.classify import Rule as Rule
from .core.classify import TrustDecision as TrustDecision
from .core.classify import TrustPolicy as TrustPolicy
from .core.config import Policy as Policy
from .core.config import parse_policy as parse_policy
from .core.levels import DEFAULT_LEVELS as DEFAULT_LEVELS
from .core.levels import Level as Level
from .core.levels import LevelSet as LevelSet
from .core.policy import GatePolicy as GatePolicy
from .core.policy import LevelPolicy as LevelPolicy
from .core.policy import Order as Order
from .core.policy import Percent as Percent
from .core.scheduler import Scheduler as Scheduler
from .core.stats import GateStats as GateStats
from .core.stats import LevelStats as LevelStats
from .core.tickets import Reason as Reason
from .core.tickets import Ticket as Ticket
from .core.tickets import TicketState as TicketState
from .errors import ConfigError as ConfigError
from .errors import PrioritizeError as PrioritizeError
from .errors import QueueClosed as QueueClosed
from .errors import Rejected as Rejected
from .errors import TicketStateError as TicketStateError
from .errors import UnknownLevelError as UnknownLevelError
from .executor import PriorityThreadPoolExecutor as PriorityThreadPoolExecutor
from .queues import PriorityQueue as PriorityQueue
from .queues import ThreadPriorityQueue as ThreadPriorityQueue

__version__ = "0.1.0"

__all__ = [
    "AIMD",
    "DEFAULT_LEVELS",
    "AdaptiveCapacity",
    "AdaptiveSpec",
    "Classification",
    "Classifier",
    "ConfigError",
    "Gate",
    "GatePolicy",
    "GateStats",
    "Gradient",
    "Level",
    "LevelPolicy",
    "LevelSet",
    "LevelStats",
    "Order",
    "Percent",
    "Policy",
    "PrioritizeError",
    "PriorityQueue",
    "PriorityThreadPoolExecutor",
    "QueueClosed",
    "Reason",
    "Rejected",
    "RequestInfo",
    "Rule",
    "Scheduler",
    "Slot",
    "ThreadPriorityQueue",
    "Ticket",
    "TicketState",
    "TicketStateError",
    "TrustDecision",
    "TrustPolicy",
    "UnknownLevelError",
    "current_level",
    "level_scope",
    "load_policy",
    "parse_policy",
    "policy_from_toml",
]
