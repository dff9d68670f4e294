"""The Redis broker's subscriber: one per broker, waking its local waiters.

A broker listens on two sharded pub/sub channels of its queue (see
``redis.py``, "Wakeups"): ``events``, where finishing a watched job
publishes ``j<id>``, and its own ``wake:<broker id>``, where a job made
ready publishes ``w<seq>`` for this broker's sleeping workers. This module
owns the subscription and the futures that wait on it; the broker decides
when to wait and what to ask Redis.

The subscriber reconnects by itself, with backoff, forever. Every
(re)subscription wakes every local waiter to look again, so a message lost
while disconnected costs a spurious wakeup, never a lost one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import final

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ._redis_client import Client, backoff
from ._redis_codec import to_bytes, to_text

__all__ = ["Subscriber"]

_log = logging.getLogger("prioritize.jobs.brokers.redis")


@final
class Subscriber:
    """The subscription of one broker, and the futures of its waiting jobs and workers."""

    def __init__(self, client: Client, channel: str, wake_channel: str) -> None:
        self._client = client
        self.channel = channel
        self.wake_channel = wake_channel
        self.wake_channel_bytes = to_bytes(wake_channel)
        self._listener: asyncio.Task[None] | None = None
        self._subscribed: asyncio.Event | None = None
        self.job_waiters: dict[str, set[asyncio.Future[None]]] = {}
        self.work_waiters: set[asyncio.Future[None]] = set()
        #: wakeups seen for workers (the broker compares it with its own count)
        self.work_gen = 0
        #: the queue's seq at each of our workers' last reservation (see `has_seen`)
        self.reserved_at: dict[str, int] = {}

    @property
    def is_subscribed(self) -> bool:
        return self._subscribed is not None and self._subscribed.is_set()

    @property
    def waiting(self) -> int:
        return len(self.work_waiters) + sum(len(w) for w in self.job_waiters.values())

    async def listening(self, until: float) -> bool:
        """Start the subscriber if needed; True once it is subscribed (False at ``until``)."""
        if self._listener is None or self._listener.done():
            self._subscribed = asyncio.Event()
            self._listener = asyncio.create_task(self._listen(self._subscribed))
        assert self._subscribed is not None
        if not self._subscribed.is_set():
            left = until - asyncio.get_running_loop().time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._subscribed.wait(), max(0.0, left))
        return self._subscribed.is_set()

    async def _listen(self, subscribed: asyncio.Event) -> None:
        """Dispatch messages; on any failure, back off and subscribe again."""
        failures = 0
        client = self._client
        while True:
            pubsub = client.pubsub()
            try:
                if isinstance(client, RedisCluster):
                    await (
                        client.initialize() if failures == 0 else client.nodes_manager.initialize()
                    )
                # one command: once it is confirmed, both channels are subscribed
                await pubsub.ssubscribe(self.wake_channel, self.channel)
                while True:
                    if isinstance(client, RedisCluster):
                        message = await pubsub.get_sharded_message(timeout=None)  # type: ignore[attr-defined]
                    else:
                        message = await pubsub.get_message(timeout=None)
                    if message is None or message["type"] == "sunsubscribe":
                        raise RedisConnectionError(f"subscription to {self.channel} lost")
                    if message["type"] == "ssubscribe":
                        failures = 0
                        subscribed.set()
                    self.dispatch(message["type"], message["channel"], message["data"])
            except (RedisError, OSError) as error:
                subscribed.clear()
                failures += 1
                delay = backoff(failures)
                _log.warning("%s: subscriber lost (%s); again in %.2fs", self.channel, error, delay)
                await asyncio.sleep(delay)  # backoff while Redis is away, not synchronisation
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def dispatch(self, kind: str, channel: object, data: object) -> None:
        if kind == "ssubscribe":  # (re)subscribed: whatever was missed, look again
            self.wake_work()
            for job_id in list(self.job_waiters):
                self.wake_job(job_id)
        elif kind == "smessage" and isinstance(data, bytes):
            if channel == self.wake_channel_bytes:
                if not self.has_seen(data[1:]):
                    self.wake_work()
            elif data.startswith(b"j"):
                self.wake_job(to_text(data[1:]))

    def has_seen(self, seq: bytes) -> bool:
        """Whether our one worker's last reservation came after the job a wakeup is for.

        With several workers on this broker (each may take other levels), every
        wakeup counts; so does one that names no seq (handed on: see reserve.lua).
        """
        if not seq or len(self.reserved_at) != 1:
            return False
        (reserved_at,) = self.reserved_at.values()
        return int(seq) <= reserved_at

    def wake_work(self) -> None:
        self.work_gen += 1
        for future in self.work_waiters:
            if not future.done():
                future.set_result(None)

    def wake_job(self, job_id: str) -> None:
        for future in self.job_waiters.get(job_id, ()):
            if not future.done():
                future.set_result(None)

    def forget(self, job_id: str, future: asyncio.Future[None]) -> None:
        waiting = self.job_waiters.get(job_id)
        if waiting is not None:
            waiting.discard(future)
            if not waiting:
                del self.job_waiters[job_id]

    async def close(self) -> None:
        task, self._listener = self._listener, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
