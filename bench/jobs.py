"""Durable jobs benchmark: prioritize on Redis and SQLite beside RQ, Celery and raw Redis.

Run it with ``.venv/bin/python bench/jobs.py`` (``make bench`` runs it with
the others; about 8 minutes on 2 cores); ``--quick`` is a smoke run of under
a minute, ``--json PATH`` also writes every figure. It starts its own
``redis-server`` (no persistence) on a free port and puts SQLite files in a
temporary directory. RQ and Celery are installed,
at pinned versions, into a virtual environment of their own,
``build/bench-venv``, on first use; they are never the project's
dependencies.

Every measurement is one run of a driver script of ``baselines/jobs/``
(one per system, the same method for all: ``baselines/jobs/common.py``),
in a process of its own, printing its figures as JSON:

1. **Enqueue**: jobs/s of one client storing no-op jobs, one call per job
   (the normal API), and with the system's bulk call where it has one.
2. **Drain**: the queue filled by (1), then 1 (or 2) worker processes are
   started; from the first poll that sees a job finished to the poll that
   sees all finished (start-up is not counted), every job checked to have
   succeeded.
3. **End to end**: 1 (or 2) worker processes running and warmed up, one
   client enqueues N jobs one call per job; from the first enqueue until all
   have finished.
4. **Priority honesty**: 2 workers draining low jobs that sleep (10,000 of
   1-5 ms, and 2,000 of 20-100 ms); one critical job at a time is
   enqueued, and its task returns the time it started: the wait is that
   time minus the time of the enqueue call. With jobs of a few ms the
   machine's CPU is busy (prioritize's 32 slots drain them 10-20 times
   faster than the others' 2); with longer jobs it is not, and what is
   left is each system's queueing: a slot freeing, or a prefetch buffer.

Systems, all on the same Redis server (or SQLite file), the same five
levels (job i is of level i mod 5) and the same number of worker
processes:

* prioritize/Redis and prioritize/SQLite: ``prioritize worker --concurrency
  16``, a no-op ``async def`` task; the policy has a jobs gate
  (``baselines/jobs/prioritize_tasks.py``); bulk is ``broker.enqueue_many``.
* RQ: one queue per level, every worker listening to all five in order;
  ``SimpleWorker`` (the job runs in the worker process), and RQ's default
  ``Worker`` (a fork per job) on fewer jobs; bulk is ``Queue.enqueue_many``
  in one pipeline per 1,000 jobs.
* Celery: Redis broker with priorities (one list per step, 0 first) and the
  Redis result backend; ``--pool=solo``, one process per worker; with
  Celery's defaults (prefetch multiplier 4, ack on receipt) and with
  ``worker_prefetch_multiplier = 1`` and ``task_acks_late = True``; bulk is
  a ``group`` of 1,000 signatures per ``apply_async``.
* raw Redis: a sorted set, ``ZADD`` to enqueue and ``ZPOPMIN`` 100 at a
  time to take, pipelined, nothing stored about a job: an upper bound.

RQ and Celery run one job at a time per worker process, prioritize up to 16
(asyncio); each system gets the same number of OS processes. N differs by
system (``--n`` and the options below): a run lasts a few seconds on each,
and rates are per second. The cases run interleaved, one run of each per
round; a figure is the median over rounds, a ratio the median of the
per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DRIVERS = HERE / "baselines" / "jobs"
VENV = ROOT / "build" / "bench-venv"
PINS = ("rq==2.12.0", "celery[redis]==5.7.0", "kombu==5.7.0", "redis==8.1.0", "hiredis==3.5.0")
LOGS = ROOT / "build" / "bench-jobs-logs"

sys.path.insert(0, str(ROOT))

from tests.redis_servers import redis_server  # noqa: E402

from harness import metadata, table  # noqa: E402


@dataclass(frozen=True)
class System:
    """One system as the drivers know it: driver name, variant, the python that runs it."""

    label: str
    driver: str
    variant: str
    is_baseline: bool = True
    #: drain cases only (its enqueue is its sibling's)
    drain_only: bool = False


SYSTEMS = {
    "prioritize-redis": System("prioritize/Redis", "prioritize", "redis", is_baseline=False),
    "prioritize-sqlite": System("prioritize/SQLite", "prioritize", "sqlite", is_baseline=False),
    "rq": System("RQ (SimpleWorker)", "rq", "simple"),
    "rq-fork": System("RQ (Worker: fork per job)", "rq", "fork", drain_only=True),
    "celery": System("Celery (defaults: prefetch 4)", "celery", "defaults"),
    "celery-prefetch1": System("Celery (prefetch 1, acks_late)", "celery", "prefetch1"),
    "raw": System("raw Redis (ZADD/ZPOPMIN)", "raw", "pipelined"),
}
#: what prioritize is compared with in the ratio lines, and how they are named there
RATIO_BASES = {"rq": "RQ", "celery": "Celery", "celery-prefetch1": "Celery prefetch 1",
               "raw": "raw Redis"}  # fmt: skip


@dataclass(frozen=True)
class Config:
    """How much work one run does."""

    rounds: int
    #: jobs per run: prioritize/Redis and raw Redis
    n: int
    sqlite_n: int
    #: RQ and Celery
    baseline_n: int
    #: RQ's forking worker
    fork_n: int
    #: priority honesty: (low jobs queued, their sleep in ms "LO,HI") per test
    honesty: tuple[tuple[int, str], ...]
    critical: int
    #: the end-to-end runs: (worker processes, producer processes) each
    e2e: tuple[tuple[int, int], ...]
    #: systems run unless --systems says otherwise
    systems: tuple[str, ...]

    def jobs(self, key: str) -> int:
        if key == "prioritize-sqlite":
            return self.sqlite_n
        if key == "rq-fork":
            return self.fork_n
        return self.baseline_n if SYSTEMS[key].driver in {"rq", "celery"} else self.n


FULL = Config(
    rounds=3, n=5_000, sqlite_n=5_000, baseline_n=1_000, fork_n=150,
    honesty=((10_000, "1,5"), (2_000, "20,100")), critical=5, e2e=((1, 1), (2, 1), (2, 4)),
    systems=tuple(SYSTEMS),
)  # fmt: skip
#: a smoke run: every driver and measurement, the variants of RQ and Celery left out
QUICK = Config(
    rounds=1, n=1_000, sqlite_n=500, baseline_n=150, fork_n=30, honesty=((1_000, "1,5"),),
    critical=2, e2e=((2, 1), (2, 4)),
    systems=("prioritize-redis", "prioritize-sqlite", "rq", "celery", "raw"),
)  # fmt: skip


@dataclass
class Figures:
    """Every run's answer, by figure key (``drain.2.rq``), in round order."""

    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, key: str, value: dict[str, Any]) -> None:
        self.runs.setdefault(key, []).append(value)

    def rates(self, key: str) -> list[float]:
        return [r["rate"] for r in self.runs.get(key, [])]

    def median(self, key: str) -> float | None:
        rates = self.rates(key)
        return statistics.median(rates) if rates else None

    def ratio(self, key: str, base: str) -> float | None:
        """Median over rounds of key / base, each pair from the same round."""
        pairs = list(zip(self.rates(key), self.rates(base), strict=False))
        return statistics.median(a / b for a, b in pairs) if pairs else None


# -- the baselines' environment ---------------------------------------------------------


def bench_python() -> Path:
    """build/bench-venv's python, created and given the pinned packages on first use."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".pins"
    if python.exists() and stamp.exists() and stamp.read_text() == "\n".join(PINS):
        return python
    print(f"creating {VENV.relative_to(ROOT)} with {', '.join(PINS)} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *PINS],
        check=True,
    )
    stamp.write_text("\n".join(PINS))
    return python


def versions(python: Path) -> dict[str, str]:
    code = (
        "import json, importlib.metadata as m;"
        "names = ('rq', 'celery', 'kombu', 'redis', 'hiredis');"
        "print(json.dumps({p: m.version(p) for p in names}))"
    )
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    found: dict[str, str] = json.loads(out.stdout)
    server = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    )
    found["redis-server"] = (
        server.stdout.split("v=")[1].split()[0] if "v=" in server.stdout else "?"
    )
    return found


# -- running the drivers ----------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One driver invocation."""

    system: str
    op: str
    workers: int
    fill: str = "one"
    producers: int = 1


def e2e_key(workers: int, producers: int) -> str:
    """The figure key prefix of an end-to-end shape: ``e2e.2`` (one client), ``e2e.2p4``."""
    return f"e2e.{workers}" if producers == 1 else f"e2e.{workers}p{producers}"


def e2e_label(workers: int, producers: int) -> str:
    """``2 workers``, or ``2 workers, 4 producers``."""
    text = f"{workers} worker{'s' if workers > 1 else ''}"
    return text if producers == 1 else f"{text}, {producers} producers"


def cases(systems: Sequence[str], e2e: Sequence[tuple[int, int]]) -> list[Run]:
    out = []
    for key in systems:
        system = SYSTEMS[key]
        if system.drain_only:
            out += [Run(key, "drain", 1, "bulk"), Run(key, "drain", 2, "bulk")]
        else:
            out += [Run(key, "drain", 1, "one"), Run(key, "drain", 2, "bulk")]
            out += [Run(key, "e2e", w, producers=p) for w, p in e2e]
    return out


class Drivers:
    """Runs driver scripts against the run's Redis and temporary directory."""

    def __init__(self, redis: str, tmp: Path, baseline_python: Path | None, config: Config) -> None:
        self.redis = redis
        self.tmp = tmp
        self.baseline_python = baseline_python
        self.config = config

    def __call__(self, run: Run, **extra: int) -> dict[str, Any]:
        system = SYSTEMS[run.system]
        python = sys.executable if not system.is_baseline else str(self.baseline_python)
        argv = [
            python, str(DRIVERS / f"{system.driver}_driver.py"), run.op,
            "--redis", self.redis, "--variant", system.variant,
            "--workers", str(run.workers), "--fill", run.fill, "--producers", str(run.producers),
            "--n", str(self.config.jobs(run.system)), "--logs", str(LOGS), "--dir", str(self.tmp),
        ]  # fmt: skip
        for name, value in extra.items():
            argv += [f"--{name.replace('_', '-')}", str(value)]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=900, cwd=DRIVERS, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{system.label} {run.op} (workers {run.workers}) failed:\n{done.stderr[-3000:]}"
            )
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result


def check(run: Run, figure: dict[str, Any], jobs: int) -> None:
    """Every job ran and succeeded, none failed."""
    if figure["succeeded"] != jobs or figure["failed"]:
        raise RuntimeError(
            f"{SYSTEMS[run.system].label} {run.op}: {figure['succeeded']} of {jobs} succeeded, "
            f"{figure['failed']} failed"
        )


def measure(drivers: Drivers, runs: Sequence[Run], rounds: int, figures: Figures) -> None:
    for r in range(rounds):
        for run in runs:
            started = time.monotonic()
            out = drivers(run)
            jobs = drivers.config.jobs(run.system)
            if run.op == "drain":
                check(run, out["drain"], jobs)
                figures.add(f"drain.{run.workers}.{run.system}", out["drain"])
                mode = out["enqueue"]["mode"]
                if not SYSTEMS[run.system].drain_only and mode == run.fill:
                    figures.add(f"enqueue.{mode}.{run.system}", out["enqueue"])
            else:
                check(run, out["e2e"], jobs)
                figures.add(f"{e2e_key(run.workers, run.producers)}.{run.system}", out["e2e"])
            print(
                f"  round {r + 1}/{rounds}: {SYSTEMS[run.system].label} {run.op} "
                f"({e2e_label(run.workers, run.producers)}, {jobs:,} jobs) "
                f"{time.monotonic() - started:.1f} s",
                file=sys.stderr,
                flush=True,
            )


def honesty(drivers: Drivers, systems: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each priority-honesty test on each system: {"10000x1,5": {system: result}}."""
    out: dict[str, dict[str, Any]] = {}
    for low, low_ms in drivers.config.honesty:
        test = out[f"{low}x{low_ms}"] = {}
        for key in systems:
            if SYSTEMS[key].driver == "raw" or SYSTEMS[key].drain_only:
                continue
            started = time.monotonic()
            result = drivers(
                Run(key, "honesty", 2), low=low, critical=drivers.config.critical, low_ms=low_ms
            )
            test[key] = result["honesty"]
            print(
                f"  honesty ({low:,} low jobs of {low_ms.replace(',', '-')} ms): "
                f"{SYSTEMS[key].label} {time.monotonic() - started:.1f} s",
                file=sys.stderr,
                flush=True,
            )
    return out


# -- report ------------------------------------------------------------------------------

BULK_API = {
    "prioritize": "broker.enqueue_many, 1,000 jobs a call",
    "rq": "Queue.enqueue_many, one pipeline per 1,000",
    "celery": "group of 1,000 signatures, one apply_async",
    "raw": "ZADD, pipelined 100 a round trip",
}


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def times(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}×" if value < 10 else f"{value:.1f}×"


def ratio_line(figures: Figures, key: str, label: str, systems: Sequence[str]) -> str | None:
    """One figure of prioritize and its ratio to each baseline in the same rounds.

    ``prioritize/Redis drain, 2 workers: 31,000 jobs/s = 9.8× RQ, 3.1× Celery, ...``
    """
    system = key.rsplit(".", 1)[1]
    value = figures.median(key)
    if value is None:
        return None
    prefix = key.rsplit(".", 1)[0]
    parts = []
    for base, name in RATIO_BASES.items():
        if base in systems:
            r = figures.ratio(key, f"{prefix}.{base}")
            if r is not None:
                parts.append(f"{times(r)} {name}")
    return f"  {SYSTEMS[system].label} {label}: {rate(value)} jobs/s = {', '.join(parts)}"


def report_enqueue(figures: Figures, systems: Sequence[str]) -> None:
    print("\n1. Enqueue: one client storing no-op jobs; jobs/s, median of rounds")
    rows = []
    for key in systems:
        system = SYSTEMS[key]
        if system.drain_only:
            continue
        bulk = figures.median(f"enqueue.bulk.{key}")
        rows.append(
            [system.label, rate(figures.median(f"enqueue.one.{key}")), rate(bulk),
             BULK_API[system.driver] if bulk is not None else "(none)"]
        )  # fmt: skip
    table(["system", "one call per job", "bulk", "bulk API"], rows)
    for key in ("prioritize-redis", "prioritize-sqlite"):
        if key in systems:
            for mode, label in (("one", "enqueue, one call per job"), ("bulk", "enqueue, bulk")):
                line = ratio_line(figures, f"enqueue.{mode}.{key}", label, systems)
                if line:
                    print(line)


def report_drain(figures: Figures, systems: Sequence[str], config: Config) -> None:
    print("\n2. Drain: N jobs queued, W worker processes started; jobs/s, median of rounds")
    rows = []
    for key in systems:
        rows.append(
            [SYSTEMS[key].label, f"{config.jobs(key):,}", rate(figures.median(f"drain.1.{key}")),
             rate(figures.median(f"drain.2.{key}")), ""]
        )  # fmt: skip
    table(["system", "N", "1 worker", "2 workers", ""], rows)
    for key in ("prioritize-redis", "prioritize-sqlite"):
        if key in systems:
            for w in (1, 2):
                label = f"drain, {w} worker{'s' if w > 1 else ''}"
                line = ratio_line(figures, f"drain.{w}.{key}", label, systems)
                if line:
                    print(line)


def report_e2e(figures: Figures, systems: Sequence[str], shapes: Sequence[tuple[int, int]]) -> None:
    print(
        "\n3. End to end: W workers running; one client (or P producer processes at once) "
        "enqueues N jobs one call per job; jobs/s until all finished, median of rounds"
    )
    rows = []
    for key in systems:
        if SYSTEMS[key].drain_only:
            continue
        row = [SYSTEMS[key].label]
        for w, p in shapes:
            runs = figures.runs.get(f"{e2e_key(w, p)}.{key}", [])
            enqueue = (
                statistics.median(r["jobs"] / r["enqueue_seconds"] for r in runs) if runs else None
            )
            row += [rate(figures.median(f"{e2e_key(w, p)}.{key}")), rate(enqueue)]
        rows.append([*row, ""])
    header = ["system"]
    for w, p in shapes:
        header += [e2e_label(w, p), "its enqueue alone"]
    table([*header, ""], rows)
    for key in ("prioritize-redis", "prioritize-sqlite"):
        for w, p in shapes:
            if key in systems:
                line = ratio_line(
                    figures, f"{e2e_key(w, p)}.{key}", f"end to end, {e2e_label(w, p)}", systems
                )
                if line:
                    print(line)


def ratios(figures: Figures) -> dict[str, float | None]:
    """Every prioritize figure over each baseline's of the same measurement, for the JSON."""
    out = {}
    for key in figures.runs:
        prefix, system = key.rsplit(".", 1)
        if not SYSTEMS[system].is_baseline:
            for base in RATIO_BASES:
                if f"{prefix}.{base}" in figures.runs:
                    out[f"{key}/{base}"] = figures.ratio(key, f"{prefix}.{base}")
    return out


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def report_honesty(results: dict[str, dict[str, Any]]) -> None:
    for i, (test, by_system) in enumerate(results.items()):
        if not by_system:
            continue
        low, low_ms = test.split("x")
        print(
            f"\n4{'abcd'[i]}. Priority honesty: 2 workers draining {int(low):,} low jobs of "
            f"{low_ms.replace(',', '-')} ms; a critical job enqueued: ms until a worker starts it"
        )
        rows = []
        for key, result in by_system.items():
            waits = result["waits"]
            rows.append(
                [SYSTEMS[key].label, str(len(waits)),
                 ms(statistics.median(waits)) if waits else "-", ms(max(waits)) if waits else "-",
                 f"{min(result['backlog']):,}-{max(result['backlog']):,}" if waits else "-", ""]
            )  # fmt: skip
        table(
            ["system", "critical jobs", "median wait", "max wait", "low jobs queued then", ""],
            rows,
        )


def verdict(value: float | None, target: float, aim: float) -> str:
    if value is None:
        return "not measured"
    met = "met" if value >= target else "MISSED"
    aimed = "met" if value >= aim else "missed"
    return f"{met} (aim {aimed})"


def targets(
    figures: Figures, systems: Sequence[str], shapes: Sequence[tuple[int, int]]
) -> dict[str, Any]:
    """The issue's targets, met or missed, printed and returned for the JSON."""
    print("\nTargets")
    out: dict[str, Any] = {}
    for w, p in shapes:
        shape = e2e_key(w, p)
        e2e = f"{shape}.prioritize-redis"
        for base, name, target, aim in (
            ("rq", "RQ", 3.0, 10.0),
            ("celery", "Celery (defaults)", 2.0, 3.0),
            ("celery-prefetch1", "Celery (prefetch 1, acks_late)", 2.0, 3.0),
        ):
            if base in systems and "prioritize-redis" in systems:
                r = figures.ratio(e2e, f"{shape}.{base}")
                out[f"redis_{shape.replace('.', '_')}_vs_{base}"] = {
                    "ratio": r, "target": target, "aim": aim
                }  # fmt: skip
                print(
                    f"  prioritize/Redis end to end, {e2e_label(w, p)}, "
                    f"≥ {target:g}× {name} (aim {aim:g}×): {times(r)}: {verdict(r, target, aim)}"
                )
    if "prioritize-sqlite" in systems:
        keys = [("drain.1", "drain, 1 worker"), ("drain.2", "drain, 2 workers")]
        keys += [(e2e_key(w, p), f"end to end, {e2e_label(w, p)}") for w, p in shapes]
        for key, label in keys:
            value = figures.median(f"{key}.prioritize-sqlite")
            out[f"sqlite_{key}"] = {"rate": value, "target": 2000, "aim": 5000}
            print(
                f"  prioritize/SQLite ≥ 2,000 durable jobs/s (aim 5,000), {label}: "
                f"{rate(value)}: {verdict(value, 2000, 5000)}"
            )
    return out


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, under a minute")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write figures as JSON")
    parser.add_argument("--rounds", type=int, help="runs of each case (default 3, quick 1)")
    parser.add_argument("--n", type=int, help="jobs per run, prioritize/Redis and raw Redis")
    parser.add_argument("--sqlite-n", type=int, help="jobs per run, prioritize/SQLite")
    parser.add_argument("--baseline-n", type=int, help="jobs per run, RQ and Celery")
    parser.add_argument(
        "--systems",
        help=f"comma-separated, from {', '.join(SYSTEMS)} (default: all; quick: the main five)",
    )
    parser.add_argument("--skip-honesty", action="store_true", help="leave out measurement 4")
    args = parser.parse_args(argv)
    unknown = set((args.systems or "").split(",")) - set(SYSTEMS) - {""}
    if unknown:
        parser.error(f"--systems: unknown {', '.join(sorted(unknown))}")
    return args


def choose(args: argparse.Namespace) -> Config:
    config = QUICK if args.quick else FULL
    changes = {
        name: getattr(args, name)
        for name in ("rounds", "n", "sqlite_n", "baseline_n")
        if getattr(args, name) is not None
    }
    return replace(config, **changes)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = choose(args)
    chosen = args.systems.split(",") if args.systems else config.systems
    systems = [key for key in SYSTEMS if key in chosen]
    if not all(shutil.which(name) for name in ("redis-server", "redis-cli")):
        print(
            "bench/jobs.py needs redis-server and redis-cli: scripts/ensure-services installs them"
        )
        return 2
    python = bench_python() if any(SYSTEMS[k].is_baseline for k in systems) else None
    found = versions(python) if python is not None else {}
    meta = metadata()
    print(f"prioritize durable jobs benchmark, {meta['date']}")
    print(f"{meta['python']} on {meta['platform']}, {meta['cpus']} CPUs, load {meta['load']}")
    print(f"prioritize from {meta['source']}")
    if found:
        print(
            f"baselines in {VENV.relative_to(ROOT)}: RQ {found['rq']}, Celery {found['celery']} "
            f"(kombu {found['kombu']}), redis-py {found['redis']} with hiredis {found['hiredis']}; "
            f"redis-server {found['redis-server']}"
        )
    print(
        f"{config.rounds} interleaved round(s); jobs per run: prioritize/Redis and raw Redis "
        f"{config.n:,}, prioritize/SQLite {config.sqlite_n:,}, RQ and Celery "
        f"{config.baseline_n:,}, RQ forking {config.fork_n:,}",
    )
    figures = Figures()
    with redis_server() as url, tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
        drivers = Drivers(url.rsplit("/", 1)[0], Path(tmp), python, config)
        measure(drivers, cases(systems, config.e2e), config.rounds, figures)
        fair = {} if args.skip_honesty else honesty(drivers, systems)
    report_enqueue(figures, systems)
    report_drain(figures, systems, config)
    report_e2e(figures, systems, config.e2e)
    report_honesty(fair)
    met = targets(figures, systems, config.e2e)
    if args.json is not None:
        doc = {
            "meta": {**meta, "quick": args.quick, "versions": found},
            "config": asdict(config),
            "systems": {key: SYSTEMS[key].label for key in systems},
            "medians": {key: figures.median(key) for key in figures.runs},
            "ratios": ratios(figures),
            "runs": figures.runs,
            "honesty": fair,
            "targets": met,
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
