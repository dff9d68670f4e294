"""LLM budget benchmark: how long a live critical call waits behind a queued nightly batch.

Run it with ``.venv/bin/python bench/llm.py`` (``make bench`` runs it with the
others); ``--quick`` is a smoke run, ``--json PATH`` also writes every figure.

The provider is the stand-in (`prioritize.llm.standin`) at **60 requests per
minute** (one request slot a second, a minute's burst), served by a real
uvicorn in this process; the client is the official ``openai`` client. A
batch of **1,000 low requests** is started at once; once the provider's
burst is spent (the batch has sent its first minute's worth), a critical
request is made, a few times in a row, and its wait is timed from the call
to its answer.

* **prioritize**: the client's ``http_client`` has a `BudgetTransport` over a
  `Budget` of 60 rpm; the batch waits in the budget, the critical call is
  sent at the next request slot. Target: within one slot (1 s) plus the
  round trip.
* **plain FIFO**: the same client, no budget, eight workers taking the
  requests from one FIFO queue (the critical one behind the batch), the
  client's own retries answering the provider's 429s. Its critical call
  would wait for the whole batch (about 1,000 s at 60 rpm): the run stops
  after ``--fifo-cap`` seconds and, if the call has not been answered,
  reports the wait estimated from the requests still ahead of it and the
  rate the batch was being served at (marked "est.").
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/http.py would shadow the standard library's http package, which httpx imports
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
import openai  # noqa: E402

from prioritize.llm import Budget, BudgetLevelPolicy, BudgetPolicy  # noqa: E402
from prioritize.llm.standin import StandIn, serve  # noqa: E402
from prioritize.llm.transport import BudgetTransport  # noqa: E402

RPM = 60
ASK = [{"role": "user", "content": "summarise this"}]


def _client(
    url: str, transport: httpx.AsyncBaseTransport | None, retries: int
) -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=transport, timeout=None) if transport else None
    return openai.AsyncOpenAI(
        base_url=f"{url}/v1", api_key="-", http_client=http, max_retries=retries
    )


async def _call(client: openai.AsyncOpenAI, level: str) -> None:
    await client.chat.completions.create(
        model="m", messages=ASK, max_tokens=8, extra_headers={"x-priority": level}
    )


async def run_prioritize(url: str, batch: int, samples: int, gap: float) -> dict[str, Any]:
    forever = BudgetLevelPolicy(max_wait=math.inf, queue=batch + 10)
    policy = BudgetPolicy(rpm=RPM, queue=batch + 10, levels={"low": forever, "critical": forever})
    budget = Budget(policy)
    client = _client(url, BudgetTransport(budget), retries=2)
    lows = [asyncio.create_task(_call(client, "low")) for _ in range(batch)]
    while budget.scheduler.in_flight or budget.scheduler.waiting < batch - RPM:
        await asyncio.sleep(0.05)  # the first minute's burst is sent and answered
    waits = []
    for _ in range(samples):
        await asyncio.sleep(gap)
        started = time.monotonic()
        await _call(client, "critical")
        waits.append(time.monotonic() - started)
    for task in lows:
        task.cancel()
    await asyncio.gather(*lows, return_exceptions=True)
    await client.close()
    return {
        "waits_s": waits,
        "low_waiting": budget.scheduler.waiting,
        "factor": budget.stats().factor,
    }


async def run_fifo(url: str, batch: int, cap: float, after: float) -> dict[str, Any]:
    client = _client(url, None, retries=2)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for _ in range(batch):
        queue.put_nowait("low")
    done: list[float] = []
    lost: list[float] = []
    critical: list[float] = []
    begun = time.monotonic()

    async def worker() -> None:
        while True:
            level = await queue.get()
            try:
                await _call(client, level)
            except openai.RateLimitError:  # the client's retries gave up on the provider's 429s
                lost.append(time.monotonic())
                if level != "critical":
                    continue
            (critical if level == "critical" else done).append(time.monotonic())

    workers = [asyncio.create_task(worker()) for _ in range(8)]
    await asyncio.sleep(after)
    started = time.monotonic()
    queue.put_nowait("critical")
    while not critical and time.monotonic() - started < cap:
        await asyncio.sleep(0.1)
    waited = critical[0] - started if critical else None
    elapsed = time.monotonic() - begun
    # the rate the queue moves at: answered requests and those lost to 429s alike
    moved = [t for t in done + lost if t >= started]
    rate = len(moved) / (time.monotonic() - started) if moved else len(done) / elapsed
    ahead = queue.qsize() - (0 if critical else 1)
    for task in workers:
        task.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    await client.close()
    estimate = None if critical else cap + (ahead + 1) / max(rate, 1e-9)
    return {
        "wait_s": waited,
        "estimated_s": estimate,
        "ahead": ahead,
        "rate_per_s": rate,
        "answered": len(done),
        "lost_to_429": len(lost),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (200 requests)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--fifo-cap", type=float, default=None, help="seconds (default 20)")
    args = parser.parse_args(argv)
    batch, samples, cap = (200, 2, 5.0) if args.quick else (1000, 5, 20.0)
    cap = args.fifo_cap or cap
    provider = StandIn(rpm=RPM, tpm=10**8)
    with serve(provider) as url:
        ours = asyncio.run(run_prioritize(url, batch, samples, gap=1.5))
    ours["provider_429s"] = provider.refused
    provider = StandIn(rpm=RPM, tpm=10**8)
    with serve(provider) as url:
        fifo = asyncio.run(run_fifo(url, batch, cap, after=2.0))
    fifo["provider_429s"] = provider.refused
    slot = 60 / RPM
    median = statistics.median(ours["waits_s"])
    fifo_wait = fifo["wait_s"] if fifo["wait_s"] is not None else fifo["estimated_s"]
    marker = "" if fifo["wait_s"] is not None else " est."
    print(
        f"critical wait behind {batch} queued low requests, provider at {RPM} rpm (slot {slot:g} s)"
    )
    print(f"{'':28}{'prioritize':>14}{'plain FIFO':>18}{'ratio':>10}")
    print(
        f"{'critical wait, median (s)':28}{median:>14.2f}{fifo_wait:>14.0f}{marker:<4}"
        f"{fifo_wait / median:>9.0f}×"
    )
    print(f"{'critical wait, max (s)':28}{max(ours['waits_s']):>14.2f}")
    within = f"{sum(w <= slot + 0.25 for w in ours['waits_s'])}/{len(ours['waits_s'])}"
    print(f"{'within one slot (+0.25 s)':28}{within:>14}")
    print(f"{'provider 429s':28}{ours['provider_429s']:>14}{fifo['provider_429s']:>14}")
    lost = f"{fifo['answered']} / {fifo['lost_to_429']}"
    print(f"{'low answered / lost to 429s':28}{'-':>14}{lost:>14}")
    if fifo["wait_s"] is None:
        print(
            f"plain FIFO: critical not answered after {cap:g} s, {fifo['ahead']} requests "
            f"still ahead of it, the queue moving at {fifo['rate_per_s']:.2f}/s"
        )
    figures = {"batch": batch, "rpm": RPM, "prioritize": ours, "fifo": fifo,
               "ratio": fifo_wait / median}  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
