"""Job queues for worker subprocesses (``prioritize worker tests.jobs.apps.<module>:jobs``).

Each module builds its queue with ``build(url)``, so a test builds the same
queue (tasks, retry policies, gate) in its own process to enqueue and read
results, and at import makes ``jobs`` from ``PRIORITIZE_TEST_BROKER``, the
URL the worker process is given.
"""
