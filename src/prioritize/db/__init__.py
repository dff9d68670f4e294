"""Database connection pools whose connections are handed out by priority.

A pool's connections are a gate's seats: the same policy (``[gates.db]``
in ``prioritize.toml``: ``min`` reserved per level and lent while idle,
``max``, ``max_wait``, shedding with `Rejected`) decides who gets the next
free connection, and the level of a checkout is, unless given, the level of
the request or job being served (`prioritize.current_level`). See
docs/databases.md.

* `prioritize.db.asyncpg`: ``await create_pool(dsn, policy=..., gate="db")``,
  a prioritized ``asyncpg.Pool`` (extra ``asyncpg``).
* `prioritize.db.sqlalchemy`: ``create_engine(url, policy=...)`` and
  ``create_async_engine(url, policy=...)``, or the pool classes behind them
  for an engine made elsewhere (extra ``sqlalchemy``).

Each is imported on its own, so this package needs neither driver.
"""

from __future__ import annotations

__all__: list[str] = []
