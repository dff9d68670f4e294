"""Database pools benchmark: the prioritized asyncpg pool beside a plain ``asyncpg.Pool``.

Run it with ``.venv/bin/python bench/db.py`` (``make bench`` runs it with the
others; about 80 s); ``--quick`` is a smoke run of about 15 s, ``--json PATH``
also writes every figure. It needs the PostgreSQL that
``scripts/ensure-services`` starts: it connects as the role ``prioritize``
(or to ``PRIORITIZE_BENCH_POSTGRES``, an admin DSN whose role may create
databases), creates a database of its own for the run and drops it after.
Both sides open all their connections up front (``min_size = max_size``),
to the same database, with the same size.

1. **Checkout overhead.** ``async with pool.acquire() as conn:`` with an
   empty body, and with ``await conn.fetchval("SELECT 1")``: the prioritized
   pool (``prioritize.db.asyncpg.create_pool(dsn, max_size=10)``: a gate of
   10 seats, no reservations) beside ``asyncpg.create_pool(dsn,
   max_size=10)``. Sequential (one task, no level given: the pool's default,
   as in an application that changed only its pool creation) and contended
   (50 tasks sharing the 10 connections, levels uniform over the five). µs
   per checkout; one run of each case per round (the first round
   discarded), a figure is the median over rounds, a ratio the median of
   the per-round ratios. asyncpg's release resets the session (one round
   trip to the server) on both sides; a context row measures both with
   ``reset=`` a no-op, which leaves the wrapper's own cost bare.
2. **Critical latency under a bulk flood.** A pool of 10 connections with
   the source document's reservation (critical, high, normal, low ``min`` =
   40/30/20/10 %); 50 bulk tasks, spread over high, normal and low, each
   looping ``SELECT pg_sleep(0.05)`` (together they want every connection);
   one critical task issuing ``SELECT 1`` with a pause of 10 ms before each
   query, timed from the checkout to the connection given back (and the
   checkout alone: until the connection is in hand). The same with a plain
   ``asyncpg.Pool`` of 10, where the critical checkout queues first come,
   first served behind the bulk tasks. Each pool's latency is measured
   unloaded first (the same loop, no flood) and the loaded figures are given
   as a ratio to it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import secrets
import statistics
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from time import perf_counter_ns
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import metadata, table, verdict
from prioritize import policy_from_toml
from prioritize.db.asyncpg import PriorityPool, create_pool

ADMIN_DSN = os.environ.get(
    "PRIORITIZE_BENCH_POSTGRES", "postgresql://prioritize:prioritize@127.0.0.1:5432/postgres"
)
APP_NAME = "prioritize-bench-db"
LEVELS = ("critical", "high", "normal", "low", "bulk")
#: the source document's pool: 40/30/20/10 % reserved, higher levels borrowing lower ones' seats
RESERVED_TOML = """
levels = ["critical", "high", "normal", "low"]
default_level = "normal"
[gates.db]
capacity = 10
levels.critical.min = "40%"
levels.high.min = "30%"
levels.normal.min = "20%"
levels.low.min = "10%"
"""
FLOOD_LEVELS = ("high", "normal", "low")
CHECKOUT_TARGET = 1.3
FLOOD_TARGET = 2.0


@dataclass(frozen=True)
class Config:
    """How much work one run does."""

    rounds: int
    size: int
    #: checkouts per sequential run
    sequential: int
    #: tasks of a contended run, and checkouts each
    tasks: int
    per_task: int
    flood_tasks: int
    flood_sleep: float
    #: critical queries per latency run, and the pause before each
    samples: int
    pause: float


FULL = Config(rounds=9, size=10, sequential=1_000, tasks=50, per_task=20,
              flood_tasks=50, flood_sleep=0.05, samples=200, pause=0.01)  # fmt: skip
QUICK = Config(rounds=3, size=10, sequential=500, tasks=50, per_task=10,
               flood_tasks=50, flood_sleep=0.05, samples=30, pause=0.01)  # fmt: skip

Checkout = Callable[[str | None], AbstractAsyncContextManager[asyncpg.Connection]]


# -- the database of the run ----------------------------------------------------------------


def with_database(dsn: str, name: str) -> str:
    """The same server and credentials, another database."""
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


async def admin(sql: str) -> None:
    connection = await asyncpg.connect(ADMIN_DSN, timeout=10)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@asynccontextmanager
async def database() -> AsyncIterator[str]:
    """The DSN of a fresh database, created for this run and dropped after it."""
    name = f"prioritize_bench_{os.getpid()}_{secrets.token_hex(4)}"
    await admin(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(ADMIN_DSN, name)
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def open_pools(
    dsn: str, size: int, policy: Any = None, **kwargs: Any
) -> tuple[asyncpg.Pool, PriorityPool]:
    """A plain pool and a prioritized one of ``size`` connections each, all opened."""
    settings = {"application_name": APP_NAME}
    plain = await asyncpg.create_pool(
        dsn, min_size=size, max_size=size, server_settings=settings, **kwargs
    )
    ours = await create_pool(
        dsn, policy=policy, max_size=size, min_size=size, server_settings=settings, **kwargs
    )
    return plain, ours


def checkouts(plain: asyncpg.Pool, ours: PriorityPool) -> dict[str, Checkout]:
    """How each side checks a connection out at a level (the plain pool ignores it)."""
    return {"plain": lambda level: plain.acquire(), "ours": ours.acquire}


async def no_reset(connection: asyncpg.Connection) -> None:
    """A pool's ``reset=``: leave the session as it is (no round trip on release)."""


# -- 1. checkout overhead -----------------------------------------------------------------------


async def checkout_loop(checkout: Checkout, tasks: int, each: int, query: bool) -> int:
    """ns for ``tasks`` tasks doing ``each`` checkouts at once (levels uniform over five).

    One task checks out at no level given (the pool's default), as an
    application that changed only its pool creation does.
    """

    async def one(level: str | None) -> None:
        for _ in range(each):
            async with checkout(level) as connection:
                if query:
                    await connection.fetchval("SELECT 1")

    levels = [None] if tasks == 1 else [LEVELS[i % len(LEVELS)] for i in range(tasks)]
    gc.collect()
    gc.disable()
    try:
        start = perf_counter_ns()
        await asyncio.gather(*(one(level) for level in levels))
        return perf_counter_ns() - start
    finally:
        gc.enable()


@dataclass(frozen=True)
class Case:
    label: str
    contended: bool
    query: bool
    #: a target row (else context: the wrapper's cost with asyncpg's session reset off)
    target: bool = True


CASES = {
    "sequential.none": Case("acquire + release, 1 task", contended=False, query=False),
    "sequential.select1": Case("acquire + SELECT 1 + release, 1 task", False, True),
    "contended.none": Case("acquire + release, {tasks} tasks for {size}", True, False),
    "contended.select1": Case("acquire + SELECT 1 + release, {tasks} tasks for {size}", True, True),
    "noreset.none": Case("acquire + release, 1 task, reset= a no-op", False, False, target=False),
}


async def overhead(dsn: str, config: Config) -> dict[str, list[float]]:
    """µs per checkout of every case and side, one run of each per round (the first discarded)."""
    plain, ours = await open_pools(dsn, config.size)
    bare_plain, bare_ours = await open_pools(dsn, config.size, reset=no_reset)
    pools = {"": checkouts(plain, ours), "noreset": checkouts(bare_plain, bare_ours)}
    runs: dict[str, list[float]] = {f"{key}.{side}": [] for key in CASES for side in pools[""]}

    try:
        for r in range(config.rounds + 1):
            for key, case in CASES.items():
                tasks, each = (
                    (config.tasks, config.per_task) if case.contended else (1, config.sequential)
                )
                for side in ("plain", "ours"):
                    checkout = pools["noreset" if key.startswith("noreset") else ""][side]
                    elapsed = await checkout_loop(checkout, tasks, each, case.query)
                    if r:
                        runs[f"{key}.{side}"].append(elapsed / (tasks * each) / 1000)
            check_idle(ours)
            check_idle(bare_ours)
    finally:
        for pool in (ours, plain, bare_ours, bare_plain):
            await pool.close()
    return runs


def check_idle(pool: PriorityPool) -> None:
    """Every seat given back, nobody waiting, nothing shed."""
    stats = pool.stats()
    for level in stats.levels:
        if level.in_use or level.waiting or level.shed_total or level.cancelled:
            raise RuntimeError(f"{pool!r}: level {level.level} left {level} after a run")


def ratio(runs: dict[str, list[float]], case: str, base: str) -> float:
    return statistics.median(a / b for a, b in zip(runs[case], runs[base], strict=True))


# -- 2. critical latency under a bulk flood -------------------------------------------------------


async def critical(checkout: Checkout, samples: int, pause: float) -> dict[str, list[float]]:
    """ms of each critical ``SELECT 1``, from the checkout to the connection given back.

    Also the checkout alone: from the call to the connection in hand.
    """
    total, acquired = [], []
    for _ in range(samples):
        await asyncio.sleep(pause)
        start = perf_counter_ns()
        async with checkout("critical") as connection:
            acquired.append((perf_counter_ns() - start) / 1e6)
            await connection.fetchval("SELECT 1")
        total.append((perf_counter_ns() - start) / 1e6)
    return {"total": total, "checkout": acquired}


async def flooded(checkout: Checkout, config: Config) -> dict[str, Any]:
    """`critical` while ``flood_tasks`` bulk tasks loop ``pg_sleep`` queries on the same pool."""
    state = {"stop": False, "running": 0, "peak": 0, "done": 0}
    sleep = f"SELECT pg_sleep({config.flood_sleep})"

    async def bulk(level: str) -> None:
        while not state["stop"]:
            async with checkout(level) as connection:
                state["running"] += 1
                state["peak"] = max(state["peak"], state["running"])
                try:
                    await connection.execute(sleep)
                finally:
                    state["running"] -= 1
            state["done"] += 1

    tasks = [
        asyncio.create_task(bulk(FLOOD_LEVELS[i % len(FLOOD_LEVELS)]))
        for i in range(config.flood_tasks)
    ]
    # steady state: every connection the bulk tasks may have is busy, several times over
    await asyncio.sleep(5 * config.flood_sleep)
    held, done, start = state["running"], state["done"], perf_counter_ns()
    latencies = await critical(checkout, config.samples, config.pause)
    seconds = (perf_counter_ns() - start) / 1e9
    bulk_rate = (state["done"] - done) / seconds
    state["stop"] = True
    await asyncio.gather(*tasks)
    return {
        "latencies_ms": latencies["total"],
        "checkout_ms": latencies["checkout"],
        "bulk_connections": held,
        "bulk_peak": state["peak"],
        "bulk_queries_per_s": bulk_rate,
        "seconds": seconds,
    }


async def flood(dsn: str, config: Config) -> dict[str, dict[str, Any]]:
    """Unloaded and flooded critical latency of both pools, and the gate's own account."""
    policy = policy_from_toml(RESERVED_TOML, "reserved.toml")
    plain, ours = await open_pools(dsn, config.size, policy)
    sides = checkouts(plain, ours)
    out: dict[str, dict[str, Any]] = {side: {} for side in sides}
    try:
        for side, checkout in sides.items():
            await critical(checkout, 10, 0)  # warm-up: statements prepared on every path
            unloaded = await critical(checkout, config.samples, config.pause)
            out[side]["unloaded_ms"] = unloaded["total"]
            out[side]["unloaded_checkout_ms"] = unloaded["checkout"]
            out[side].update(await flooded(checkout, config))
        check_idle(ours)
        seat_wait = ours.stats().level("critical").wait.max
        out["ours"]["critical_seat_wait_max_ms"] = seat_wait * 1000
    finally:
        await ours.close()
        await plain.close()
    return out


def percentile(values: Sequence[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


# -- report --------------------------------------------------------------------------------


def ms(value: float) -> str:
    return f"{value:,.2f}" if value >= 1 else f"{value:.3f}"


def times(value: float) -> str:
    return f"{value:.2f}×" if value < 10 else f"{value:,.0f}×"


def report_overhead(runs: dict[str, list[float]], config: Config) -> dict[str, float]:
    print(
        f"\n1. Checkout overhead: µs per checkout, median of {config.rounds} interleaved "
        "rounds; ratio = median of the rounds' PriorityPool / asyncpg.Pool"
    )
    rows = []
    ratios = {}
    for key, case in CASES.items():
        plain = statistics.median(runs[f"{key}.plain"])
        ours = statistics.median(runs[f"{key}.ours"])
        r = ratios[key] = ratio(runs, f"{key}.ours", f"{key}.plain")
        rows.append(
            [case.label.format(tasks=config.tasks, size=config.size), f"{plain:.1f}",
             f"{ours:.1f}", f"{ours - plain:+.1f}", times(r),
             verdict(r, CHECKOUT_TARGET) if case.target else "(context)"]
        )  # fmt: skip
    table(["case", "asyncpg.Pool", "PriorityPool", "difference", "ratio", "target"], rows)
    return ratios


def report_flood(results: dict[str, dict[str, Any]], config: Config) -> dict[str, Any]:
    print(
        f"\n2. Critical SELECT 1 under a flood: {config.flood_tasks} bulk tasks (high, normal, "
        f"low) looping pg_sleep({config.flood_sleep:g}) on a pool of {config.size}; "
        f"{config.samples} critical queries, {config.pause * 1000:g} ms apart; ms"
    )
    names = {"plain": "asyncpg.Pool (FIFO)", "ours": "PriorityPool (40/30/20/10 %)"}
    rows = []
    figures: dict[str, Any] = {}
    for part, idle_key, loaded_key in (
        ("checkout to release", "unloaded_ms", "latencies_ms"),
        ("checkout alone", "unloaded_checkout_ms", "checkout_ms"),
    ):
        for side in ("plain", "ours"):
            idle, loaded = summary(results[side][idle_key]), summary(results[side][loaded_key])
            figure = {
                "unloaded": idle,
                "flood": loaded,
                "p50_vs_unloaded": loaded["p50"] / idle["p50"],
                "p99_vs_unloaded": loaded["p99"] / idle["p99"],
            }
            if part == "checkout alone":
                figures[side]["checkout"] = figure
            else:
                figures[side] = {
                    **figure,
                    "bulk_connections": results[side]["bulk_connections"],
                    "bulk_queries_per_s": results[side]["bulk_queries_per_s"],
                }
            rows.append(
                [names[side], part, ms(idle["p50"]), ms(idle["p99"]), ms(loaded["p50"]),
                 ms(loaded["p99"]), ms(loaded["max"]), times(figure["p50_vs_unloaded"]),
                 times(figure["p99_vs_unloaded"]), ""]
            )  # fmt: skip
    table(
        ["pool", "", "unloaded p50", "p99", "flood p50", "p99", "max", "p50 / unloaded",
         "p99 / unloaded", ""],
        rows,
    )  # fmt: skip
    for side in ("plain", "ours"):
        print(
            f"  {names[side]}: bulk held {results[side]['bulk_connections']} of {config.size} "
            f"connections (peak {results[side]['bulk_peak']}), "
            f"{results[side]['bulk_queries_per_s']:,.0f} bulk queries/s"
        )
    print(
        f"  PriorityPool: longest wait of a critical checkout for its seat "
        f"{results['ours']['critical_seat_wait_max_ms']:.3f} ms"
    )
    ours, plain = figures["ours"], figures["plain"]
    figures["flood_p99_plain_vs_ours"] = plain["flood"]["p99"] / ours["flood"]["p99"]
    slower = times(figures["flood_p99_plain_vs_ours"])
    print(f"  critical p99 under the flood: asyncpg.Pool's is {slower} PriorityPool's")
    return figures


def targets(ratios: dict[str, float], flood: dict[str, Any]) -> dict[str, Any]:
    print("\nTargets")
    out: dict[str, Any] = {}
    for key, case in CASES.items():
        if case.target:
            out[key] = {"ratio": ratios[key], "target": CHECKOUT_TARGET}
            label = case.label.format(tasks="N", size="10").replace("N tasks", "contended")
            print(
                f"  checkout overhead, {label}: {times(ratios[key])} asyncpg.Pool, "
                f"{verdict(ratios[key], CHECKOUT_TARGET)}"
            )
    if not flood:
        return out
    p99 = flood["ours"]["p99_vs_unloaded"]
    out["flood_p99"] = {"ratio": p99, "target": FLOOD_TARGET}
    print(
        f"  critical p99 under the flood, PriorityPool: {times(p99)} its unloaded p99, "
        f"{verdict(p99, FLOOD_TARGET)} (asyncpg.Pool: {times(flood['plain']['p99_vs_unloaded'])})"
    )
    return out


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of about 15 s")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write figures as JSON")
    parser.add_argument("--rounds", type=int, help="rounds of the checkout cases (default 9)")
    parser.add_argument("--samples", type=int, help="critical queries per run (default 200)")
    parser.add_argument(
        "--skip-flood", action="store_true", help="checkout overhead only (measurement 1)"
    )
    return parser.parse_args(argv)


async def run(config: Config, skip_flood: bool) -> tuple[dict[str, list[float]], dict[str, Any]]:
    async with database() as dsn:
        runs = await overhead(dsn, config)
        results = {} if skip_flood else await flood(dsn, config)
    return runs, results


async def server_version() -> str:
    connection = await asyncpg.connect(ADMIN_DSN, timeout=10)
    try:
        version: str = await connection.fetchval("SHOW server_version")
        return version
    finally:
        await connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = QUICK if args.quick else FULL
    if args.rounds is not None:
        config = replace(config, rounds=max(1, args.rounds))
    if args.samples is not None:
        config = replace(config, samples=max(2, args.samples))
    meta = metadata()
    try:
        version = asyncio.run(server_version())
    except (OSError, asyncpg.PostgresError) as exc:
        where = urlsplit(ADMIN_DSN)
        print(
            f"bench/db.py needs PostgreSQL at {where.hostname}:{where.port or 5432} as "
            f"{where.username!r} ({type(exc).__name__}: {exc}): run scripts/ensure-services "
            "as root, or set PRIORITIZE_BENCH_POSTGRES to an admin DSN that may create databases"
        )
        return 2
    print(f"prioritize database pools benchmark, {meta['date']}")
    print(f"{meta['python']} on {meta['platform']}, {meta['cpus']} CPUs, load {meta['load']}")
    print(f"prioritize from {meta['source']}")
    print(f"asyncpg {asyncpg.__version__}, PostgreSQL {version} on the same machine")
    runs, results = asyncio.run(run(config, args.skip_flood))
    ratios = report_overhead(runs, config)
    flood = report_flood(results, config) if results else {}
    met = targets(ratios, flood)
    if args.json is not None:
        doc = {
            "meta": {**meta, "quick": args.quick, "asyncpg": asyncpg.__version__,
                     "postgresql": version},
            "config": asdict(config),
            "checkout_us": {
                key: {"median": statistics.median(v), "min": min(v), "runs": v}
                for key, v in runs.items()
            },
            "checkout_ratios": ratios,
            "flood": flood,
            "flood_samples_ms": results,
            "targets": met,
        }  # fmt: skip
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
