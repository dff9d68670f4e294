"""The broker a test app's URL names; a Redis one in the queue ``PRIORITIZE_TEST_QUEUE``.

Redis tests share one server, so each keeps its jobs under a queue name of
its own, which the test and its worker processes must agree on.
"""

from __future__ import annotations

import os

from prioritize.jobs import Broker, open_broker


def open_test_broker(url: str) -> Broker:
    queue = os.environ.get("PRIORITIZE_TEST_QUEUE")
    if url.startswith("redis") and queue:
        from prioritize.jobs.brokers.redis import RedisBroker

        return RedisBroker.from_url(url, queue=queue)
    return open_broker(url)
