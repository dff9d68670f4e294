"""The Redis broker: jobs shared by many processes and machines, on one server or a cluster.

Theory of operation
-------------------
`MemoryBroker` is the reference: every rule here is its rule, and every
change it makes under its lock, this broker makes inside one Lua script
(``lua/*.lua``, one per operation, each prefixed with ``lua/common.lua``,
which ports MemoryBroker's private methods one by one). So any number of
workers see one consistent queue, and a reservation — apply the finished
outcomes, upkeep, choose and start up to ``limit`` jobs — is one round trip.
The choice is `JobGate`'s, ported to ``lua/gate.lua``: the resolved limits
come from `JobGate` itself as script arguments, so no rule is configured
twice, and only its stride state is stored (tests/jobs/test_redis_jobgate_lua.py
runs both in lockstep).

Time is always the broker's ``clock()``, passed to each script; Redis's own
clock and key expiry are never used, so tests move time by hand.

Key layout
----------
Every key of a queue starts with ``{prefix:queue}:``, one hash tag, so all of
them live in one Redis Cluster slot and a script may touch any of them.
Scripts receive one key, ``meta`` (so a cluster client routes them to the
queue's slot), and name every other key from the same base::

    meta          hash  seq (orders ties FIFO), levels (names, checked on first use)
    counters      hash  running|scheduled|dead|succeeded|failed|cancelled|shed:<rank>
    clocks        hash  <rank> → the level's clock (the tag last started)
    flows         hash  <rank>:<flow> → the flow's last tag, while ahead of the clock
    gate          hash  JobGate's stride state: vtime, p<i> passes, w<i> flags
    ready:<rank>  zset  QUEUED jobs by tag; member '<16-digit seq>:<id>'
    waiting:<rank> zset QUEUED jobs by when they became ready (oldest_wait)
    scheduled     zset  SCHEDULED jobs by run_at; member '<seq>:<id>'
    leases        zset  RUNNING jobs by lease expiry
    deadlines     zset  QUEUED jobs with a deadline, by deadline
    expiries      zset  finished jobs by when they are dropped
    dead          zset  the dead-letter set, in order of failure
    idem          hash  idempotency key → job id
    watched       set   ids someone awaits: finishing one publishes it
    sleepers:<rank> zset brokers whose workers have free slots for that level
    woken         hash  sleeping brokers woken, not yet reserved → when
    memo, memo_times    recent replies by call token (see below)
    job:<id>      hash  the `Job`'s fields the scripts read or change, ``data``
                        (the others, and the payload), _member, _smember,
                        _expires, _nonce

Wakeups
-------
Sharded pub/sub (SPUBLISH from the scripts; SSUBSCRIBE works on a cluster
and on one server alike), one subscriber task per broker that resolves
local futures (``_redis_subscriber.py``), on two channels: the queue's ``{prefix:queue}:events``,
where finishing a watched job publishes its id, and the broker's own
``{prefix:queue}:wake:<broker id>``. `wait` adds the id to ``watched`` in
the same script that reads the job, after subscribing, so a finish is
either seen by the read or published after it.

Workers are woken one at a time, as ``BLPOP`` serves one client per push,
not all at once to race for one job. A broker whose workers have free
slots is in ``sleepers:<rank>`` for each level they take (its reservation
or its sleep puts it there, once subscribed); a job made ready wakes the
latest sleeper of its level by publishing on that broker's channel, unless
it was woken already and has not reserved since (that reservation will see
the job). If nobody received the message (the process died, closed, or
lost its subscription), the next sleeper is tried. A worker that fills up
with jobs still queued, or sees jobs it does not take, hands the wakeup on
to one more sleeper. See ``lua/common.lua``.
A (re)subscription wakes every local waiter to look again, so a message
lost while disconnected costs a spurious wakeup, never a lost one; and a
reservation made before the subscription was up tells the next sleep to
look again if any job came meanwhile.

Faults
------
Clients made by `from_url` retry commands on ConnectionError and
TimeoutError with backoff, and redis-py reloads a script Redis has lost
(NOSCRIPT). A cluster client gives up on a command whose connection broke
while it was rediscovering the nodes, so the broker resends it itself. A
resent call must not act twice: an enqueue carries a nonce stored in the
job, and reserve, finish and requeue_dead a token under which the script
keeps its reply for five minutes (of the broker's clock) and returns it
again. Once the client gives up, the broker raises `StoreError` naming the
server. The subscriber reconnects on its own, with backoff, forever.

Bounds and costs
----------------
Per call, upkeep reaps, promotes and drops at most `UPKEEP_BATCH` jobs of
each kind; missed deadlines are all shed, so no job starts after its
deadline. Redis ≥ 7.0 (sharded pub/sub, SPUBLISH in scripts).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import math
import secrets
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, Final, final

from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...core.levels import LevelSet
from ...core.policy import GatePolicy
from ..broker import Broker
from ..model import Job, JobState, JobStats, LevelJobStats, Outcome, StoreError
from ._redis_client import Client, backoff, clone, decodes, make_client, where
from ._redis_codec import job_fields, job_from_hash, to_bytes, to_text
from ._redis_scripts import SCRIPTS, allowed, gate_args, outcome_args, source, union
from ._redis_subscriber import Subscriber

__all__ = ["RedisBroker"]

#: seconds a dead job stays in the dead-letter set unless requeued
DEFAULT_DEAD_TTL = 7 * 86_400.0
#: leases reaped, jobs promoted and results dropped per call at most
UPKEEP_BATCH: Final = 1000


@final
class RedisBroker(Broker):
    """Jobs in Redis (one server or a cluster); see `Broker` for the rules, and above for how.

    ``client`` is a ``redis.asyncio`` client (made with ``decode_responses``
    off); the broker closes it in `close`. `from_url` makes one with
    retries configured. Use a broker from one event loop; `copy` makes one
    for another.
    """

    def __init__(
        self,
        client: Client,
        *,
        queue: str = "default",
        prefix: str = "prioritize",
        clock: Callable[[], float] = time.time,
        dead_ttl: float = DEFAULT_DEAD_TTL,
    ) -> None:
        _check_name("queue", queue)
        _check_name("prefix", prefix)
        if not _is_number(dead_ttl) or dead_ttl <= 0:
            raise ValueError(f"dead_ttl = {dead_ttl!r}: expected a finite number of seconds > 0")
        if decodes(client):
            raise ValueError(
                f"{type(client).__name__} client has decode_responses=True: RedisBroker "
                "needs it off (the default), since job payloads and results are bytes"
            )
        self._client = client
        self._queue, self._prefix, self._clock = queue, prefix, clock
        self._dead_ttl = float(dead_ttl)
        self._dead_ttl_text = repr(self._dead_ttl).encode()
        self._base = f"{{{prefix}:{queue}}}:"
        self._id = secrets.token_hex(8)
        #: the queue's channel, and this broker's own: a wakeup for its sleeping workers
        self._subscriber = Subscriber(client, self._base + "events", f"{self._base}wake:{self._id}")
        self._base_bytes = to_bytes(self._base)
        self._factory: Callable[[], Client] = functools.partial(clone, client)
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(source(name)) for name in SCRIPTS
        }
        self._policy: GatePolicy | None = None
        self._levels: LevelSet | None = None
        self._keys = [to_bytes(self._base + "meta")]
        self._nlevels = "0"
        self._gate_args: list[bytes] = []
        self._checked = False
        #: the subscriber's count of wakeups when the last reservation began
        self._seen_gen = 0
        #: our workers with free slots: the levels each takes ('1'/'0' per rank)
        self._hungry: dict[str, str] = {}
        #: the queue's seq at the last reservation, if that one could not make us a
        #: sleeper (not subscribed yet): the next sleep looks for changes since
        self._since = ""
        #: what bounds the next sleep, from the last reservation if it made us a sleeper
        self._bounds: list[bytes] | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        queue: str = "default",
        clock: Callable[[], float] = time.time,
        prefix: str = "prioritize",
        dead_ttl: float = DEFAULT_DEAD_TTL,
        **options: object,
    ) -> RedisBroker:
        """A broker on a new client for ``url``: ``redis://``, ``rediss://``, ``unix://``
        or ``redis+cluster://host:port`` (any node of the cluster).

        ``options`` go to the redis-py client (``retry`` replaces the
        default: up to 20 retries of a command, backing off to 1 s, on
        connection errors and timeouts). Raises ValueError naming a bad URL.
        """
        make = functools.partial(make_client, url, options)
        broker = cls(make(), queue=queue, prefix=prefix, clock=clock, dead_ttl=dead_ttl)
        broker._factory = make
        return broker

    # -- setup ---------------------------------------------------------------------

    def configure(self, gate: GatePolicy) -> None:
        if self._levels is not None and self._levels != gate.level_set:
            raise ValueError(
                f"this broker already holds jobs of levels {list(self._levels.names)}; "
                f"it cannot switch to {list(gate.level_set.names)}"
            )
        self._gate_args = [arg.encode() for arg in gate_args(gate)]
        self._policy, self._levels = gate, gate.level_set
        self._nlevels = str(len(gate.level_set))

    def copy(self) -> RedisBroker:
        other = RedisBroker(
            self._factory(),
            queue=self._queue,
            prefix=self._prefix,
            clock=self._clock,
            dead_ttl=self._dead_ttl,
        )
        other._factory = self._factory
        if self._policy is not None:
            other.configure(self._policy)
        return other

    def _configured(self) -> LevelSet:
        if self._levels is None:
            raise RuntimeError(
                "RedisBroker is not configured: create a JobQueue over it, "
                "or call broker.configure(gate_policy)"
            )
        return self._levels

    async def _prepared(self) -> LevelSet:
        """The levels, checked once against those the queue in Redis was made with."""
        levels = self._configured()
        if not self._checked:
            names = ",".join(levels.names)
            stored = (await self._call("setup", [names])).decode()
            if stored != names:
                raise ValueError(
                    f"queue {self._queue!r} (prefix {self._prefix!r}) in Redis holds jobs of "
                    f"levels {stored.split(',')}; this broker is configured for "
                    f"{levels.names}: use the same levels, or another queue name"
                )
            self._checked = True
        return levels

    async def _call(self, name: str, args: Sequence[str | bytes], now: float | None = None) -> Any:
        """Run script ``name`` with the common arguments (see lua/common.lua) before ``args``.

        Raises `StoreError` once the client has given up. A cluster client
        does not resend a command whose connection broke while it was
        rediscovering the nodes, so the broker resends it (as many times as
        the client would): every script is safe to run twice (see above).
        """
        now = self._clock() if now is None else now
        full = [self._base_bytes, repr(float(now)), self._nlevels, self._dead_ttl_text, *args]
        resends = self._client.retry.get_retries() if isinstance(self._client, RedisCluster) else 0
        for attempt in itertools.count(1):
            try:
                return await self._scripts[name](keys=self._keys, args=full)
            except (RedisConnectionError, RedisTimeoutError) as error:
                if attempt > resends:
                    raise self._store_error(error) from error
                await asyncio.sleep(backoff(attempt))
            except RedisError as error:
                raise self._store_error(error) from error
        raise AssertionError("unreachable")  # pragma: no cover

    def _store_error(self, error: RedisError) -> StoreError:
        return StoreError(
            f"the job store {where(self._client)} (queue {self._queue!r}) "
            f"cannot be used: {type(error).__name__}: {error}"
        )

    # -- enqueue -------------------------------------------------------------------

    async def enqueue(self, job: Job) -> Job:
        return (await self.enqueue_many([job]))[0]

    async def enqueue_many(self, jobs: Sequence[Job]) -> list[Job]:
        """`enqueue` for a batch in one round trip (see `Broker.enqueue_many`)."""
        levels = await self._prepared()
        now = self._clock()
        args: list[str | bytes] = [secrets.token_hex(8), str(len(jobs))]
        stored: list[Job] = []
        for given in jobs:
            rank = levels.resolve(given.level).rank
            later = given.run_at is not None and given.run_at > now
            job = given.evolve(
                enqueued_at=now,
                attempts=0,
                worker=None,
                lease_until=None,
                state=JobState.SCHEDULED if later else JobState.QUEUED,
                run_at=given.run_at if later else None,
            )
            fields = job_fields(job, rank)
            key = "" if job.idempotency_key is None else "k" + job.idempotency_key
            run_at = repr(float(job.run_at)) if job.run_at is not None else ""
            args += [job.id, str(rank), job.state.value, run_at, key, str(len(fields) // 2)]
            args += fields
            stored.append(job)
        reply = await self._call("enqueue", args, now)
        if reply[0] == b"dup":
            raise ValueError(f"a job with id {to_text(reply[1])!r} is already stored")
        return [
            job if got == b"n" else job_from_hash(got)
            for job, got in zip(stored, reply[1:], strict=True)
        ]

    # -- reserve and finish --------------------------------------------------------

    async def reserve(
        self,
        worker: str,
        limit: int,
        *,
        lease: float,
        levels: Collection[str] | None = None,
        finished: Sequence[Outcome] = (),
    ) -> list[Job]:
        level_set = await self._prepared()
        mask = allowed(level_set, levels)
        self._seen_gen = self._subscriber.work_gen
        wakeable = self._subscriber.is_subscribed
        others = union(mask for name, mask in self._hungry.items() if name != worker)
        middle = [str(limit), repr(float(lease)), str(UPKEEP_BATCH)]
        middle += [self._id if wakeable else "", mask, others or "0" * len(level_set)]
        reply = await self._run(worker, finished, middle)
        jobs = [job_from_hash(raw) for raw in reply[4:]]
        if len(jobs) < limit:
            self._hungry[worker] = mask
        else:
            self._hungry.pop(worker, None)
        self._since = "" if wakeable else to_text(reply[1])
        self._bounds = reply[2:4] if wakeable and len(jobs) < limit else None
        self._subscriber.reserved_at[worker] = int(reply[1])
        return jobs

    async def finish(self, worker: str, outcomes: Sequence[Outcome]) -> list[bool]:
        levels = await self._prepared()
        reply = await self._run(worker, outcomes, ["0", "0", "0", "", "0" * len(levels), ""])
        return [flag == ord("1") for flag in reply[0]]

    async def _run(self, worker: str, outcomes: Sequence[Outcome], middle: list[str]) -> Any:
        """The reserve script: apply ``outcomes``. ``middle``: limit, lease, batch, sleeper
        id, allowed levels, the levels of our other workers with free slots."""
        args: list[str | bytes] = [secrets.token_hex(8), worker, *middle, *self._gate_args]
        return await self._call("reserve", [*args, *outcome_args(outcomes)])

    async def heartbeat(self, worker: str, job_ids: Sequence[str], lease: float) -> set[str]:
        if not job_ids:
            return set()
        await self._prepared()
        lost = await self._call("heartbeat", [worker, repr(float(lease)), *job_ids])
        return {to_text(i) for i in lost}

    # -- reading and waiting -------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        await self._prepared()
        raw = await self._call("read", [job_id, "0"])
        return job_from_hash(raw) if raw else None

    async def wait(self, job_id: str, timeout: float) -> Job | None:
        await self._prepared()
        loop = asyncio.get_running_loop()
        until = loop.time() + max(0.0, timeout)
        subscriber = self._subscriber
        watch = "1" if await subscriber.listening(until) else "0"
        while True:
            future: asyncio.Future[None] = loop.create_future()
            subscriber.job_waiters.setdefault(job_id, set()).add(future)
            try:
                raw = await self._call("read", [job_id, watch])
                job = job_from_hash(raw) if raw else None
                left = until - loop.time()
                if job is None or job.is_finished or left <= 0 or watch == "0":
                    return job
                await asyncio.wait({future}, timeout=left)
            finally:
                subscriber.forget(job_id, future)

    async def wait_for_work(self, timeout: float) -> None:
        await self._prepared()
        loop = asyncio.get_running_loop()
        until = loop.time() + max(0.0, timeout)
        future: asyncio.Future[None] = loop.create_future()
        subscriber = self._subscriber
        subscriber.work_waiters.add(future)
        try:
            if not await subscriber.listening(until):
                return
            if subscriber.work_gen != self._seen_gen:  # woken since the last reservation began
                self._seen_gen = subscriber.work_gen
                return
            bounds, self._bounds = self._bounds, None
            if bounds is None:  # the last reservation did not make us a sleeper: do it now
                mask = union(self._hungry.values()) or "1" * len(self._configured())
                *bounds, changed = await self._call("sleep", [self._id, mask, self._since])
                self._since = ""
                if changed == b"1":  # work came while we could not be woken: take it
                    return
            now = self._clock()
            left = until - loop.time()
            for bound in bounds:
                if bound:
                    left = min(left, max(0.0, float(bound) - now))
            await asyncio.wait({future}, timeout=max(0.0, left))
            self._seen_gen = subscriber.work_gen
        finally:
            subscriber.work_waiters.discard(future)

    # -- managing ------------------------------------------------------------------

    async def cancel(self, job_id: str) -> Job | None:
        await self._prepared()
        raw = await self._call("cancel", [job_id])
        return job_from_hash(raw) if raw else None

    async def dead(self, limit: int = 100) -> list[Job]:
        await self._prepared()
        if limit <= 0:
            return []
        return [job_from_hash(raw) for raw in await self._call("dead", [str(limit)])]

    async def requeue_dead(self, job_ids: Sequence[str] | None = None) -> int:
        await self._prepared()
        if job_ids is not None:
            total = 0
            for at in range(0, len(job_ids), UPKEEP_BATCH):
                chunk = list(job_ids[at : at + UPKEEP_BATCH])
                requeued, _ = await self._call(
                    "requeue", [secrets.token_hex(8), "ids", "0", *chunk]
                )
                total += requeued
            return total
        total, rounds = 0, None  # all: a batch per call, for as many batches as were dead
        while rounds is None or rounds > 0:
            args = [secrets.token_hex(8), "all", str(UPKEEP_BATCH)]
            requeued, left = await self._call("requeue", args)
            total += requeued
            rounds = math.ceil(left / UPKEEP_BATCH) if rounds is None else rounds - 1
            if left == 0:
                break
        return total

    async def stats(self) -> JobStats:
        levels = await self._prepared()
        reply = await self._call("stats", [str(UPKEEP_BATCH)])
        out: dict[str, LevelJobStats] = {}
        for rank, level in enumerate(levels):
            q, r, sch, dead, ok, failed, cancelled, shed, oldest = reply[rank * 9 : rank * 9 + 9]
            out[level.name] = LevelJobStats(
                queued=q, scheduled=sch, running=r, succeeded=ok, failed=failed, dead=dead,
                cancelled=cancelled, shed=shed, oldest_wait=float(oldest),
            )  # fmt: skip
        return JobStats(out)

    async def close(self) -> None:
        await self._subscriber.close()
        await self._client.aclose()

    def __repr__(self) -> str:
        waiting = self._subscriber.waiting
        kind = "cluster" if isinstance(self._client, RedisCluster) else "server"
        return f"<RedisBroker {self._base[:-1]} on a Redis {kind}, {waiting} waiting>"


# -- checks ------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_name(what: str, value: object) -> None:
    if not isinstance(value, str) or not value or "{" in value or "}" in value:
        raise ValueError(
            f"{what} = {value!r}: expected a non-empty name without '{{' or '}}' "
            "(braces would break the Redis Cluster hash tag that keeps a queue's keys together)"
        )
