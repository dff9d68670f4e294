"""HTTP benchmark: what `PriorityMiddleware` adds to a request, on an in-process ASGI loop.

Run it with ``.venv/bin/python bench/http.py`` (``make bench`` runs it with
the others); ``--quick`` is a smoke run, ``--json PATH`` also writes every
figure.

**Overhead per request.** The same minimal ASGI app (reads the body, sends
a 200 with a short body) is called directly, ``await app(scope, receive,
send)``, N times in a loop on one event loop: bare, and behind the
middleware. No server and no client, so the difference is the middleware's
own work: decoding the headers, the trust decision, classification by the
policy's rules, the gate's seat (granted at once: nothing else runs), the
current-level context variable and the scope's state. The scope is what
uvicorn builds for a browser-like request (12 headers). Cases:

* plain: a request no rule matches, no priority header;
* lowered: ``X-Priority: low`` (the trust rule lets it lower);
* signed: a signed priority token, verified with HMAC-SHA256 (only when
  the trust module provides `TrustPolicy.sign`).

Target: at most 15 µs per request over the bare app (aim 8 µs). Figures are
medians of interleaved rounds; the overhead is the median over rounds of
(middleware - bare) timed in the same round.

**Overload, per level.** The scenario of ``prioritize demo`` (a real
uvicorn server in a child process, `PriorityMiddleware` in front of an
endpoint of 16 seats and ~100 ms of work, an open-loop load at 4× what the
seats serve): per level, offered, served, shed and p50/p99 latency with
the policy's priorities and with plain FIFO admission of the same requests,
and each level's p99 against its unloaded p99. ``--skip-overload`` leaves it
out (it takes about 40 s; ``--quick`` runs a short version).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from time import perf_counter_ns
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import metadata, ns, parse_args, table
from prioritize import policy_from_toml
from prioritize.http.middleware import PriorityMiddleware

POLICY = """
[gates.api]
capacity = 64

[[rules]]
path_prefix = "/payments"
level = "critical"

[[rules]]
path_prefix = "/search"
method = ["GET"]
level = "high"

[[rules]]
path_prefix = "/export"
level = "bulk"

[[rules]]
headers = { x-client = "batch" }
level = "low"

[trust]
trusted_networks = ["10.0.0.0/8"]
"""

HEADERS = [
    (b"host", b"api.example.com"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"),
    (b"accept", b"application/json"),
    (b"accept-encoding", b"gzip, deflate, br"),
    (b"accept-language", b"en-GB,en;q=0.9"),
    (b"connection", b"keep-alive"),
    (b"cookie", b"session=0123456789abcdef; theme=dark"),
    (b"referer", b"https://app.example.com/orders"),
    (b"sec-fetch-mode", b"cors"),
    (b"x-request-id", b"5f0c6a2e-4b7d-4f7b-9a37-1c0e2f6d8b11"),
    (b"x-forwarded-proto", b"https"),
    (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
]

BODY = {"type": "http.response.body", "body": b'{"ok":true}'}
START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"x")]}
REQUEST = {"type": "http.request", "body": b"", "more_body": False}


async def app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send(START)
    await send(BODY)


async def receive() -> dict[str, Any]:
    return REQUEST


async def send(message: Any) -> None:
    return None


def scope(extra: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/orders/42",
        "raw_path": b"/orders/42",
        "query_string": b"",
        "root_path": "",
        "headers": HEADERS + extra,
        "client": ("192.0.2.7", 51234),
        "server": ("127.0.0.1", 8000),
    }


def timed(target: Any, extra: list[tuple[bytes, bytes]], n: int) -> Callable[[], float]:
    async def loop() -> float:
        scopes = [scope(extra) for _ in range(n)]  # a fresh scope per request, as a server does
        gc.collect()
        gc.disable()
        try:
            start = perf_counter_ns()
            for s in scopes:
                await target(s, receive, send)
            return (perf_counter_ns() - start) / n
        finally:
            gc.enable()

    return lambda: asyncio.run(loop())


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.0f}"


def _ratio(value: float | None, base: float | None) -> str:
    return "-" if value is None or not base else f"{value / base:.1f}×"


def overload(quick: bool, seed: int = 1) -> dict[str, Any]:
    """Run the demo's three runs and print the per-level figures; returns them for the JSON."""
    from prioritize.demo.run import DemoOptions, run_demo
    from prioritize.demo.setup import Setup

    options = DemoOptions(duration=4.0 if quick else 15.0, warmup=1.0 if quick else 2.0, seed=seed)
    result = asyncio.run(run_demo(Setup(), options))
    print(
        f"\n2. Overload: {result.setup.capacity} seats, "
        f"~{result.setup.work * 1000:.0f} ms of work, "
        f"offered {result.priorities.load:.1f}× capacity for {options.duration:g} s "
        f"(after {options.warmup:g} s of warm-up); latency in ms"
    )
    rows = []
    doc: dict[str, Any] = {}
    for level in (route.level for route in result.setup.routes):
        calm = result.unloaded.level(level)
        ours = result.priorities.level(level)
        fifo = result.fifo.level(level)

        rows.append(
            [
                level,
                _ms(calm.p99),
                f"{ours.served:,}/{ours.offered:,}",
                _ms(ours.p50),
                _ms(ours.p99),
                _ratio(ours.p99, calm.p99),
                f"{fifo.served:,}/{fifo.offered:,}",
                _ms(fifo.p50),
                _ms(fifo.p99),
                _ratio(fifo.p99, calm.p99),
                "",
            ]
        )
        doc[level] = {
            "unloaded_p99_s": calm.p99,
            "priorities": {
                "offered": ours.offered,
                "served": ours.served,
                "shed": ours.shed,
                "p50_s": ours.p50,
                "p99_s": ours.p99,
            },
            "fifo": {
                "offered": fifo.offered,
                "served": fifo.served,
                "shed": fifo.shed,
                "p50_s": fifo.p50,
                "p99_s": fifo.p99,
            },
        }
    table(
        [
            "level",
            "unloaded p99",
            "prio served",
            "p50",
            "p99",
            "p99/unloaded",
            "FIFO served",
            "p50",
            "p99",
            "p99/unloaded",
            "",
        ],
        rows,
    )
    top = result.comparison()
    verdict = "met" if top.is_within_target else "MISSED"
    aim = "met" if top.is_within_aim else "missed"
    print(f"  {top.level} p99 with priorities / unloaded: target ≤ 2×: {verdict}, aim 1.5×: {aim}")
    return {"load": result.priorities.load, "levels": doc}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(
        "PriorityMiddleware overhead per request, and the overload scenario per level",
        argv,
        {"--skip-overload": "leave out the overload scenario (about 40 s)"},
    )
    n = 2_000 if args.quick else 20_000
    rounds = args.repeat or (3 if args.quick else 9)
    policy = policy_from_toml(POLICY, "bench-http.toml")
    middleware = PriorityMiddleware(app, policy, gate="api")
    cases: dict[str, tuple[Any, list[tuple[bytes, bytes]]]] = {
        "bare app": (app, []),
        "middleware, plain": (middleware, []),
        "middleware, X-Priority: low": (middleware, [(b"x-priority", b"low")]),
    }
    sign = getattr(policy.trust, "sign", None)
    if sign is not None and getattr(policy.trust, "secrets", ()):
        headers = sign("high", time.time())
        cases["middleware, signed token"] = (
            middleware,
            [(k.encode(), v.encode()) for k, v in headers.items()],
        )
    runs: dict[str, list[float]] = {name: [] for name in cases}
    for target, extra in cases.values():  # warm-up
        timed(target, extra, n // 10)()
    for _ in range(rounds):
        for name, (target, extra) in cases.items():
            runs[name].append(timed(target, extra, n)())
    meta = metadata()
    print(f"prioritize HTTP middleware benchmark, {meta['date']}")
    print(f"{meta['python']} on {meta['platform']}, {meta['cpus']} CPUs, load {meta['load']}")
    print(f"prioritize from {meta['source']}")
    print(f"1. Overhead: {rounds} interleaved rounds of {n:,} requests; ns per request\n")
    bare = runs["bare app"]
    rows = []
    for name, values in runs.items():
        extra = [m - b for m, b in zip(values, bare, strict=True)]
        over = statistics.median(extra)
        target_met = "met" if over <= 15_000 else "MISSED"
        aim_met = "met" if over <= 8_000 else "missed"
        verdict = (
            ""
            if name == "bare app"
            else f"{over / 1000:.1f} µs over bare: target ≤ 15 µs {target_met}, aim 8 µs {aim_met}"
        )
        rows.append([name, ns(statistics.median(values)), ns(min(values)), verdict])
    table(["case", "median", "min", "overhead"], rows)
    overload_figures = None if args.skip_overload else overload(args.quick)
    if args.json is not None:
        import json

        doc = {
            "meta": {**meta, "quick": args.quick, "rounds": rounds, "requests_per_run": n},
            "ns_per_request": {k: [round(v, 1) for v in vs] for k, vs in runs.items()},
            "overload": overload_figures,
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
