"""Celery's side of bench/jobs.py: one measurement per run, its figures as JSON on stdout.

Broker and result backend on the run's Redis (celery_app.py has the
configuration and why). Workers: ``celery worker --pool=solo``, one
process each running one task at a time, with ``--without-mingle
--without-gossip --without-heartbeat`` (they only slow start-up and add
broker traffic; many deployments turn them off). Variants ``defaults`` and
``prefetch1`` are celery_app.py's.

Finished jobs are counted as result keys in db 1 (``DBSIZE``), and checked
to be SUCCESS at the end of a drain.
"""

import json
import os
import sys
import time
from pathlib import Path

import common
from redis import Redis

HERE = Path(__file__).resolve().parent
BATCH = 1000


def app_env(args, backend):
    return {
        "BENCH_REDIS_URL": args.redis.rstrip("/"),
        "BENCH_CELERY_VARIANT": args.variant,
        "BENCH_CELERY_BACKEND": "1" if backend else "0",
    }


def load_app(args):
    """The producer's app: no result backend (results are read from db 1 directly)."""
    os.environ.update(app_env(args, backend=False))
    sys.path.insert(0, str(HERE))
    import celery_app

    return celery_app


def start_workers(args, workers):
    celery = str(Path(sys.executable).with_name("celery"))
    env = {**app_env(args, backend=True), "PYTHONPATH": str(HERE)}
    for i in range(args.workers):
        workers.start(
            [celery, "-A", "celery_app", "worker", "--pool=solo", "--loglevel=WARNING",
             "--without-mingle", "--without-gossip", "--without-heartbeat", "-n", f"bench{i}@%h"],
            env,
        )  # fmt: skip


def results(redis):
    return redis.dbsize()


def result_of(redis, task_id):
    raw = redis.get(f"celery-task-meta-{task_id}")
    if raw is None:
        return None
    meta = json.loads(raw)
    if meta["status"] != "SUCCESS":
        raise RuntimeError(f"task {task_id}: {meta['status']} {meta.get('result')}")
    return meta["result"]


def statuses(redis):
    counts = {}
    keys = list(redis.scan_iter("celery-task-meta-*", count=1000))
    for lo in range(0, len(keys), BATCH):
        for raw in redis.mget(keys[lo : lo + BATCH]):
            status = json.loads(raw)["status"]
            counts[status] = counts.get(status, 0) + 1
    return counts


def enqueue_one(app, n):
    noop = app.noop
    started = time.perf_counter()
    for i in range(n):
        noop.apply_async(priority=i % 5)
    return time.perf_counter() - started


def producer(app):
    """In a forked producer process (Celery resets its connection pools after a fork)."""
    noop = app.noop

    def enqueue(first, count):
        for i in range(first, first + count):
            noop.apply_async(priority=i % 5)

    return enqueue


def enqueue_bulk(app, n):
    """celery.group of BATCH signatures, one apply_async per group."""
    from celery import group

    started = time.perf_counter()
    for lo in range(0, n, BATCH):
        group(
            app.noop.si().set(priority=i % 5) for i in range(lo, min(n, lo + BATCH))
        ).apply_async()
    return time.perf_counter() - started


def drain(args, redis, results_db, workers):
    app = load_app(args)
    seconds = enqueue_one(app, args.n) if args.fill == "one" else enqueue_bulk(app, args.n)
    enqueue = {"mode": args.fill, "jobs": args.n, "seconds": seconds, "rate": args.n / seconds}
    start_workers(args, workers)
    first, at_first, end = common.wait_done(lambda: results(results_db), args.n, workers)
    result = common.drain_rate(args.n, first, at_first, end)
    counts = statuses(results_db)
    result.update(
        workers=args.workers, succeeded=counts.pop("SUCCESS", 0), failed=sum(counts.values())
    )
    return {"enqueue": enqueue, "drain": result}


def warm(args, app, results_db, workers):
    common.warm_up(
        lambda: app.warm.apply_async((0.05,), priority=0).id,
        lambda task_id: result_of(results_db, task_id),
        workers,
        args.workers,
        2 * args.workers,
    )
    return results(results_db)


def e2e(args, redis, results_db, workers):
    app = load_app(args)
    start_workers(args, workers)
    before = warm(args, app, results_db, workers)
    if args.producers > 1:
        started, seconds = common.produce(lambda: producer(app), args.n, args.producers)
    else:
        started = time.perf_counter()
        seconds = enqueue_one(app, args.n)
    common.wait_until(lambda: results(results_db) - before >= args.n, "all jobs finished", workers)
    total = time.perf_counter() - started
    counts = statuses(results_db)
    return {
        "e2e": {
            "jobs": args.n,
            "seconds": total,
            "rate": args.n / total,
            "enqueue_seconds": seconds,
            "workers": args.workers,
            "succeeded": counts.pop("SUCCESS", 0) - before,
            "failed": sum(counts.values()),
        }
    }


def honesty(args, redis, results_db, workers):
    app = load_app(args)
    start_workers(args, workers)
    warm(args, app, results_db, workers)
    sleeps = common.low_sleeps(args)
    from celery import group

    for lo in range(0, args.low, BATCH):
        group(app.sleepy.si(s).set(priority=3) for s in sleeps[lo : lo + BATCH]).apply_async()
    time.sleep(0.1)
    # the transport's list for priority 3 of queue "celery" (sep ":")
    result = common.critical_waits(
        lambda: app.started.apply_async(priority=0).id,
        lambda task_id: result_of(results_db, task_id),
        lambda: redis.llen("celery:3"),
        workers,
        args.critical,
    )
    return {"honesty": {**result, "workers": args.workers, "low": args.low}}


def main():
    args = common.parse_args(__doc__.splitlines()[0], ["defaults", "prefetch1"])
    base = args.redis.rstrip("/")
    redis = Redis.from_url(base + "/0")
    results_db = Redis.from_url(base + "/1")
    redis.flushall()
    with common.Workers(args.logs, f"celery-{args.variant}-{args.op}") as workers:
        op = {"drain": drain, "e2e": e2e, "honesty": honesty}[args.op]
        out = op(args, redis, results_db, workers)
    redis.flushall()
    common.emit({"system": "celery", "variant": args.variant, **out})


if __name__ == "__main__":
    main()
