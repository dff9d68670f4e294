"""The sans-I/O core: levels, policies, tickets and the scheduler.

Nothing here reads a clock, sleeps, locks or does I/O; every function that
depends on time takes ``now``. `tests/core/test_purity.py` enforces it.
"""

from __future__ import annotations

from .classify import Classification as Classification
from .classify import Classifier as Classifier
from .classify import RequestInfo as RequestInfo
from .classify import Rule as Rule
from .classify import TrustDecision as TrustDecision
from .classify import TrustPolicy as TrustPolicy
from .config import Policy as Policy
from .config import parse_policy as parse_policy
from .jobgate import JobGate as JobGate
from .jobgate import LevelSnapshot as LevelSnapshot
from .levels import DEFAULT_LEVELS as DEFAULT_LEVELS
from .levels import Level as Level
from .levels import LevelSet as LevelSet
from .policy import GatePolicy as GatePolicy
from .policy import LevelLimits as LevelLimits
from .policy import LevelPolicy as LevelPolicy
from .policy import Order as Order
from .policy import Percent as Percent
from .retry import Jitter as Jitter
from .retry import RetryPolicy as RetryPolicy
from .scheduler import Scheduler as Scheduler
from .stats import GateStats as GateStats
from .stats import LevelStats as LevelStats
from .stats import WaitSummary as WaitSummary
from .tickets import Reason as Reason
from .tickets import Ticket as Ticket
from .tickets import TicketState as TicketState

__all__ = [
    "DEFAULT_LEVELS",
    "Classification",
    "Classifier",
    "GatePolicy",
    "GateStats",
    "Jitter",
    "JobGate",
    "Level",
    "LevelLimits",
    "LevelPolicy",
    "LevelSet",
    "LevelSnapshot",
    "LevelStats",
    "Order",
    "Percent",
    "Policy",
    "Reason",
    "RequestInfo",
    "RetryPolicy",
    "Rule",
    "Scheduler",
    "Ticket",
    "TicketState",
    "TrustDecision",
    "TrustPolicy",
    "WaitSummary",
    "parse_policy",
]
