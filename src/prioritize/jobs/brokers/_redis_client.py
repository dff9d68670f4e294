"""Clients for the Redis broker: made from a URL, copied for another loop, named in messages."""

from __future__ import annotations

import inspect
import random
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

Client: TypeAlias = "Redis | RedisCluster"
URL_FORMS = (
    "'redis://host:port/db', 'rediss://host:port/db', 'unix:///path/to/redis.sock' "
    "or 'redis+cluster://host:port'"
)


def make_client(url: str, options: dict[str, object]) -> Client:
    """A redis-py asyncio client for ``url``, retrying on connection errors and timeouts."""
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(f"Redis URL {url!r}: expected {URL_FORMS}")
    scheme = url.split("://", 1)[0].lower()
    settings: dict[str, Any] = {
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=20),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        **options,
    }
    try:
        if scheme in ("redis+cluster", "rediss+cluster"):
            plain = scheme.removesuffix("+cluster") + url[len(scheme) :]
            parts = urlsplit(plain)
            if not parts.hostname:
                raise ValueError(f"Redis URL {url!r}: name a node of the cluster, {URL_FORMS}")
            if parts.path.strip("/") not in ("", "0"):
                raise ValueError(
                    f"Redis URL {url!r}: a cluster has only database 0; "
                    f"remove {parts.path!r} from the URL"
                )
            return RedisCluster.from_url(plain, **settings)
        if scheme in ("redis", "rediss", "unix"):
            return Redis.from_url(url, **settings)
    except (ValueError, TypeError) as error:
        if str(error).startswith("Redis URL"):
            raise
        raise ValueError(f"Redis URL {url!r}: {error}") from None
    raise ValueError(f"Redis URL {url!r}: scheme {scheme!r} is not one of {URL_FORMS}")


def clone(client: Client) -> Client:
    """A new client with ``client``'s settings and connections of its own (for `copy`)."""
    if isinstance(client, RedisCluster):
        accepted = inspect.signature(RedisCluster.__init__).parameters
        kwargs = {k: v for k, v in client.connection_kwargs.items() if k in accepted}
        kwargs["ssl"] = client.connection_kwargs.get("connection_class") is SSLConnection
        nodes = [ClusterNode(node.host, node.port) for node in client.startup_nodes]
        return RedisCluster(startup_nodes=nodes, retry=client.retry, **kwargs)
    pool = client.connection_pool
    copied = type(pool)(
        connection_class=pool.connection_class,
        max_connections=pool.max_connections,
        **pool.connection_kwargs,
    )
    return Redis.from_pool(copied)


def where(client: Client) -> str:
    """The server a client talks to, as a URL without credentials (for messages)."""
    if isinstance(client, RedisCluster):
        nodes = ",".join(f"{node.host}:{node.port}" for node in client.startup_nodes)
        return f"redis+cluster://{nodes}"
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    scheme = "rediss" if client.connection_pool.connection_class is SSLConnection else "redis"
    host, port, db = kwargs.get("host", "localhost"), kwargs.get("port", 6379), kwargs.get("db", 0)
    return f"{scheme}://{host}:{port}/{db}"


def decodes(client: Client) -> bool:
    """Whether ``client`` decodes replies to str (which the broker cannot use)."""
    if isinstance(client, RedisCluster):
        return bool(client.encoder.decode_responses)
    return bool(client.connection_pool.connection_kwargs.get("decode_responses"))


def backoff(failures: int) -> float:
    """Seconds before trying Redis again: capped exponential, full jitter."""
    return min(2.0, 0.02 * 2.0 ** min(failures, 7)) * random.random()
