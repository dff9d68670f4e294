"""RQ's side of bench/jobs.py: one measurement per run, its figures as JSON on stdout.

RQ's priorities are what its users do: one queue per level, every worker
listening to all five in order (``rq worker critical high normal low
bulk``), so a worker always takes from the most important non-empty queue.

Workers: ``rq worker`` from the command line, one job at a time each.
Variant ``simple`` is `SimpleWorker` (runs the job in the worker process);
``fork`` is RQ's default `Worker`, which forks a work horse per job.
Every job's outcome is stored (RQ keeps finished jobs for ``result_ttl``,
500 s by default) and counted in the finished and failed registries.
"""

import sys
import time
from pathlib import Path

import common
import rq_tasks
from redis import Redis
from rq import Queue

HERE = Path(__file__).resolve().parent
CLASSES = {"simple": "rq.worker.SimpleWorker", "fork": "rq.worker.Worker"}
BATCH = 1000


def queues(redis):
    return {level: Queue(level, connection=redis) for level in common.LEVELS}


def count(redis, kind="finished"):
    pipe = redis.pipeline(transaction=False)
    for level in common.LEVELS:
        pipe.zcard(f"rq:{kind}:{level}")
    return sum(pipe.execute())


def start_workers(args, workers):
    rq = str(Path(sys.executable).with_name("rq"))
    for i in range(args.workers):
        workers.start(
            [rq, "worker", "--url", args.redis, "--worker-class", CLASSES[args.variant],
             "--path", str(HERE), "--logging_level", "WARNING",
             "--name", f"bench-{i}-{time.time_ns()}", *common.LEVELS]
        )  # fmt: skip


def enqueue_one(qs, n):
    started = time.perf_counter()
    for i in range(n):
        qs[common.level_of(i)].enqueue(rq_tasks.noop)
    return time.perf_counter() - started


def producer(args):
    """In a forked producer process: a connection of its own, and what enqueues."""
    qs = queues(Redis.from_url(args.redis))

    def enqueue(first, count):
        for i in range(first, first + count):
            qs[common.level_of(i)].enqueue(rq_tasks.noop)

    return enqueue


def enqueue_bulk(redis, qs, n, func=rq_tasks.noop, args_of=None, level=None):
    """Queue.enqueue_many per queue, one pipeline per BATCH jobs."""
    started = time.perf_counter()
    for lo in range(0, n, BATCH):
        by_queue = {}
        for i in range(lo, min(n, lo + BATCH)):
            data = Queue.prepare_data(func, args_of(i) if args_of else ())
            by_queue.setdefault(level or common.level_of(i), []).append(data)
        pipe = redis.pipeline()
        for name, datas in by_queue.items():
            qs[name].enqueue_many(datas, pipeline=pipe)
        pipe.execute()
    return time.perf_counter() - started


def drain(args, redis, workers):
    qs = queues(redis)
    fill = enqueue_one if args.fill == "one" else lambda qs, n: enqueue_bulk(redis, qs, n)
    seconds = fill(qs, args.n)
    enqueue = {"mode": args.fill, "jobs": args.n, "seconds": seconds, "rate": args.n / seconds}
    start_workers(args, workers)
    first, at_first, end = common.wait_done(lambda: count(redis), args.n, workers)
    result = common.drain_rate(args.n, first, at_first, end)
    result.update(workers=args.workers, succeeded=count(redis), failed=count(redis, "failed"))
    return {"enqueue": enqueue, "drain": result}


def warm(args, redis, workers):
    qs = queues(redis)

    def result(job):
        job.refresh()
        return job.return_value()

    common.warm_up(
        lambda: qs["critical"].enqueue(rq_tasks.warm, 0.05),
        result,
        workers,
        args.workers,
        2 * args.workers,
    )
    return count(redis)


def e2e(args, redis, workers):
    start_workers(args, workers)
    before = warm(args, redis, workers)
    qs = queues(redis)
    if args.producers > 1:
        started, seconds = common.produce(lambda: producer(args), args.n, args.producers)
    else:
        started = time.perf_counter()
        seconds = enqueue_one(qs, args.n)
    common.wait_until(lambda: count(redis) - before >= args.n, "all jobs finished", workers)
    total = time.perf_counter() - started
    done = count(redis) - before
    return {
        "e2e": {
            "jobs": args.n,
            "seconds": total,
            "rate": args.n / total,
            "enqueue_seconds": seconds,
            "workers": args.workers,
            "succeeded": done,
            "failed": count(redis, "failed"),
        }
    }


def honesty(args, redis, workers):
    start_workers(args, workers)
    warm(args, redis, workers)
    qs = queues(redis)
    sleeps = common.low_sleeps(args)
    enqueue_bulk(redis, qs, args.low, rq_tasks.sleepy, lambda i: (sleeps[i],), "low")
    time.sleep(0.1)

    def started(job):
        job.refresh()
        return job.return_value()

    result = common.critical_waits(
        lambda: qs["critical"].enqueue(rq_tasks.started),
        started,
        lambda: qs["low"].count,
        workers,
        args.critical,
    )
    return {"honesty": {**result, "workers": args.workers, "low": args.low}}


def main():
    args = common.parse_args(__doc__.splitlines()[0], list(CLASSES))
    redis = Redis.from_url(args.redis)
    redis.flushall()
    with common.Workers(args.logs, f"rq-{args.op}") as workers:
        out = {"drain": drain, "e2e": e2e, "honesty": honesty}[args.op](args, redis, workers)
    redis.flushall()
    common.emit({"system": "rq", "variant": args.variant, **out})


if __name__ == "__main__":
    main()
