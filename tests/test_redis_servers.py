"""The Redis the tests start for themselves answers, standalone and as a cluster."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from .redis_servers import redis_cluster, redis_server


def test_a_standalone_server_starts_answers_and_stops() -> None:
    async def body(url: str) -> None:
        client = Redis.from_url(url)
        try:
            assert await client.ping()
            await client.set("greeting", "hello")
            assert await client.get("greeting") == b"hello"
        finally:
            await client.aclose()

    with redis_server() as url:
        asyncio.run(body(url))
    client = Redis.from_url(url)

    async def gone() -> None:
        try:
            await client.ping()
        finally:
            await client.aclose()

    with pytest.raises(RedisConnectionError):  # stopped with the block: nothing left behind
        asyncio.run(gone())


def test_a_three_node_cluster_spreads_keys_and_keeps_a_hash_tag_together() -> None:
    async def body(urls: list[str]) -> None:
        cluster = RedisCluster.from_url(urls[0])
        try:
            for i in range(50):
                await cluster.set(f"key-{i}", i)
            assert len({cluster.keyslot(f"key-{i}") // 5462 for i in range(50)}) == 3
            # keys of one queue share a hash tag, so a Lua script may touch them together
            assert cluster.keyslot("{q}:queued") == cluster.keyslot("{q}:running")
            assert [int(await cluster.get(f"key-{i}")) for i in range(50)] == list(range(50))
        finally:
            await cluster.aclose()

    with redis_cluster() as urls:
        assert len(urls) == 3
        asyncio.run(body(urls))
