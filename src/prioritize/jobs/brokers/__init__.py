"""Job brokers: memory (tests, one process), SQLite (embedded default), Redis (many machines).

`open_broker` turns a URL into one: ``memory://``, ``sqlite:///path/to.db``
(``sqlite:////abs/path.db``, or a plain path ending in ``.db``), ``redis://host:port/0``.
"""

from __future__ import annotations

from ..broker import Broker
from .memory import MemoryBroker

__all__ = ["MemoryBroker", "open_broker"]


def open_broker(url: str) -> Broker:
    """The broker a URL names; raises ValueError naming the accepted forms."""
    if not isinstance(url, str) or not url:
        raise ValueError(
            f"broker URL {url!r}: expected 'memory://', 'sqlite:///path' or 'redis://host:port/db'"
        )
    if url in {"memory://", "memory"}:
        return MemoryBroker()
    if url.startswith("sqlite:") or url.endswith((".db", ".sqlite", ".sqlite3")):
        from .sqlite import SQLiteBroker  # type: ignore[import-not-found,unused-ignore]

        return SQLiteBroker(_sqlite_path(url))  # type: ignore[no-any-return,unused-ignore]
    if url.startswith(("redis://", "rediss://", "unix://", "redis+cluster://")):
        from .redis import RedisBroker  # type: ignore[import-not-found,unused-ignore]

        return RedisBroker.from_url(url)  # type: ignore[no-any-return,unused-ignore]
    raise ValueError(
        f"broker URL {url!r} is not understood: expected 'memory://', 'sqlite:///path/to.db' "
        "(or a path ending in .db), 'redis://host:port/db' or 'redis+cluster://host:port'"
    )


def _sqlite_path(url: str) -> str:
    """The file of a SQLite URL, as SQLAlchemy reads them.

    ``sqlite:///jobs.db`` is relative to the current directory,
    ``sqlite:////var/lib/jobs.db`` absolute; a bare path is taken as is.
    """
    if not url.startswith("sqlite:"):
        return url
    if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
        raise ValueError(
            f"SQLite URL {url!r}: expected 'sqlite:///relative/path.db' or "
            "'sqlite:////absolute/path.db' (three slashes, then the path)"
        )
    return url[len("sqlite:///") :]
