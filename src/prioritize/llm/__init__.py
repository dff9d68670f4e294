"""LLM provider budgets: requests and tokens per minute shared by priority.

`Budget` (asyncio) and `SyncBudget` (threads) spend a provider's rate by
each level's share of it; `prioritize.llm.transport`'s `BudgetTransport`
and `SyncBudgetTransport` (``pip install 'prioritize[llm]'``, httpx) put
the official ``openai`` and ``anthropic`` clients, async and sync, behind a
budget with one argument. `prioritize.llm.standin` is a
small provider stand-in that enforces real limits, for tests and demos.
See docs/llm.md.
"""

from __future__ import annotations

from ..core.budget import RateScheduler as RateScheduler
from ..core.budget_policy import BudgetLevelPolicy as BudgetLevelPolicy
from ..core.budget_policy import BudgetPolicy as BudgetPolicy
from .budget import Budget as Budget
from .budget import Spend as Spend
from .sync_budget import SyncBudget as SyncBudget
from .sync_budget import SyncSpend as SyncSpend

__all__ = [
    "Budget",
    "BudgetLevelPolicy",
    "BudgetPolicy",
    "RateScheduler",
    "Spend",
    "SyncBudget",
    "SyncSpend",
]
