"""The Celery app and tasks bench/jobs.py runs (workers: celery -A celery_app worker).

Configured from the environment, so drivers and workers agree:

* BENCH_REDIS_URL: the run's Redis, ``redis://127.0.0.1:PORT``; messages in
  db 0, results in db 1 (the result backend is on in workers, so every
  job's outcome is stored and can be counted and checked, as RQ and
  prioritize store theirs);
* BENCH_CELERY_BACKEND=0 in producers: no result backend in the client
  (with one, every ``apply_async`` also subscribes to the task's result
  channel: a round trip a producer that never reads results need not pay);
* BENCH_CELERY_VARIANT: ``defaults`` (prefetch multiplier 4, ack before
  running) or ``prefetch1`` (``worker_prefetch_multiplier = 1`` and
  ``task_acks_late = True``, what Celery's documentation recommends for
  priorities and long tasks).

Priorities on the Redis transport, as Celery's documentation sets them up:
one list per priority step (0-9, 0 first), ``queue_order_strategy =
"priority"``. The five levels are priorities 0-4.
"""

import os
import time

from celery import Celery

URL = os.environ["BENCH_REDIS_URL"].rstrip("/")
VARIANT = os.environ.get("BENCH_CELERY_VARIANT", "defaults")
BACKEND = os.environ.get("BENCH_CELERY_BACKEND", "1") == "1"

app = Celery("bench", broker=URL + "/0", backend=URL + "/1" if BACKEND else None)
app.conf.update(
    broker_transport_options={
        "priority_steps": list(range(10)),
        "sep": ":",
        "queue_order_strategy": "priority",
    },
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
if VARIANT == "prefetch1":
    app.conf.update(worker_prefetch_multiplier=1, task_acks_late=True)
elif VARIANT != "defaults":
    raise SystemExit(f"BENCH_CELERY_VARIANT = {VARIANT!r}: expected 'defaults' or 'prefetch1'")


@app.task(name="noop")
def noop():
    """The throughput job: does nothing."""
    return


@app.task(name="warm")
def warm(seconds):
    """A warm-up job: returns the pid of the worker that ran it."""
    time.sleep(seconds)
    return os.getpid()


@app.task(name="sleepy")
def sleepy(seconds):
    """A low job of the priority-honesty test."""
    time.sleep(seconds)


@app.task(name="started")
def started():
    """The critical job of the priority-honesty test: when it started."""
    return time.time()
