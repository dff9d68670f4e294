"""LLM provider budgets: requests and tokens per minute shared by priority.

`Budget` (asyncio) spends a provider's rate by each level's share of it;
`BudgetTransport` and `SyncBudgetTransport` (``pip install
'prioritize[llm]'``, httpx) put the official ``openai`` and ``anthropic``
clients behind a budget with one argument. `prioritize.llm.standin` is a
small provider stand-in that enforces real limits, for tests and demos.
See docs/llm.md.
"""

from __future__ import annotations

from ..core.budget import RateScheduler as RateScheduler
from ..core.budget_policy import BudgetLevelPolicy as BudgetLevelPolicy
from ..core.budget_policy import BudgetPolicy as BudgetPolicy
from .budget import Budget as Budget
from .budget import Spend as Spend

__all__ = ["Budget", "BudgetLevelPolicy", "BudgetPolicy", "RateScheduler", "Spend"]
