"""The raw Redis limit for bench/jobs.py: a sorted set, ZADD to enqueue, ZPOPMIN to take.

An upper bound, not a job queue: a job is a member of one sorted set,
scored by level then arrival; nothing is stored about it, a worker that
dies loses what it popped, there are no results, retries or leases. What
is left is the cost of moving job ids through Redis from Python:

* enqueue ``one``: one ZADD per job, one round trip each;
* enqueue ``bulk``: ZADDs pipelined, BATCH per round trip;
* drain: each worker process pops BATCH at a time (``ZPOPMIN key BATCH``)
  and "runs" each id (counts it);
* end to end: the producer's pipelined ZADDs while the workers pop.
"""

import json
import sys
import time

import common
from redis import Redis

KEY = "raw:jobs"
DONE = "raw:producer-done"
BATCH = 100


def score(i):
    return common.LEVELS.index(common.level_of(i)) * 1e12 + i


def enqueue_one(redis, n):
    started = time.perf_counter()
    for i in range(n):
        redis.zadd(KEY, {f"job-{i}": score(i)})
    return time.perf_counter() - started


def producer(args):
    """In a forked producer process: a connection of its own, and what enqueues."""
    redis = Redis.from_url(args.redis)

    def enqueue(first, count):
        for i in range(first, first + count):
            redis.zadd(KEY, {f"job-{i}": score(i)})

    return enqueue


def enqueue_bulk(redis, n):
    started = time.perf_counter()
    pipe = redis.pipeline(transaction=False)
    for lo in range(0, n, BATCH):
        for i in range(lo, min(n, lo + BATCH)):
            pipe.zadd(KEY, {f"job-{i}": score(i)})
        pipe.execute()
    return time.perf_counter() - started


def worker(url):
    """One worker process: pop until the set is empty and the producer is done."""
    redis = Redis.from_url(url)
    count, first, last = 0, None, None
    while True:
        popped = redis.zpopmin(KEY, BATCH)
        if popped:
            now = time.time()
            first = first or now
            last = now
            for _member, _score in popped:
                count += 1
        elif redis.exists(DONE):
            if not redis.zcard(KEY):
                break
        else:
            time.sleep(0.0005)
    print(json.dumps({"count": count, "first": first, "last": last}), flush=True)


def run_workers(args, workers):
    for _ in range(args.workers):
        workers.start([sys.executable, __file__, "_worker", args.redis])


def collect(args, workers):
    reports = []
    for i, proc in enumerate(workers.procs):
        proc.wait(timeout=common.TIMEOUT)
        log = (args.logs / f"{workers.name}-{i}.log").read_text().strip().splitlines()
        reports.append(json.loads(log[-1]))
    workers.procs.clear()
    firsts = [r["first"] for r in reports if r["first"]]
    return sum(r["count"] for r in reports), min(firsts), max(r["last"] or 0 for r in reports)


def drain(args, redis, workers):
    seconds = enqueue_one(redis, args.n) if args.fill == "one" else enqueue_bulk(redis, args.n)
    enqueue = {"mode": args.fill, "jobs": args.n, "seconds": seconds, "rate": args.n / seconds}
    redis.set(DONE, 1)
    run_workers(args, workers)
    count, first, last = collect(args, workers)
    result = {"jobs": count, "seconds": last - first, "rate": count / (last - first)}
    result.update(workers=args.workers, succeeded=count, failed=args.n - count)
    return {"enqueue": enqueue, "drain": result}


def e2e(args, redis, workers):
    run_workers(args, workers)
    time.sleep(0.5)  # no warm-up job to wait for: the workers only need to be popping
    if args.producers > 1:  # each ZADD one call per job, from several processes
        begun, seconds = common.produce(lambda: producer(args), args.n, args.producers)
        started = time.time() - (time.perf_counter() - begun)
    else:
        started = time.time()
        seconds = enqueue_bulk(redis, args.n)
    redis.set(DONE, 1)
    count, _first, last = collect(args, workers)
    total = last - started
    return {
        "e2e": {
            "jobs": args.n,
            "seconds": total,
            "rate": args.n / total,
            "enqueue_seconds": seconds,
            "workers": args.workers,
            "succeeded": count,
            "failed": args.n - count,
        }
    }


def main():
    if sys.argv[1:2] == ["_worker"]:
        worker(sys.argv[2])
        return
    args = common.parse_args(__doc__.splitlines()[0], ["pipelined"])
    if args.op == "honesty":
        raise SystemExit("the raw Redis limit has no priority-honesty test")
    redis = Redis.from_url(args.redis)
    redis.flushall()
    with common.Workers(args.logs, f"raw-{args.op}") as workers:
        out = {"drain": drain, "e2e": e2e}[args.op](args, redis, workers)
    redis.flushall()
    common.emit({"system": "raw", "variant": args.variant, **out})


if __name__ == "__main__":
    main()
