"""LLM requests as durable jobs: enqueue at a level, a worker calls the provider, await the result.

A nightly batch of low requests sits in the job queue; a live critical request
enqueued behind it is answered within a few request slots, not after the
batch. Two things make that so, each doing one job:

* the job queue hands the next free worker slot to the most important job
  (the batch cannot hold every slot for long: each job takes one budget slot);
* every call goes through a `Budget` (requests per minute) via
  `BudgetTransport`, so the worker's calls wait for the provider's rate in
  priority order. The worker runs each job at its level
  (`prioritize.current_level()`), which is where the transport reads it.

The provider here is the stand-in (`prioritize.llm.standin`), served in-process
with the same 600 rpm limit as the budget. Run it::

    python examples/llm_jobs.py
"""

from __future__ import annotations

import asyncio
import time

import httpx
import openai

from prioritize.jobs import JobQueue, JobState, Worker
from prioritize.llm import Budget, BudgetPolicy
from prioritize.llm.standin import StandIn, serve
from prioritize.llm.transport import BudgetTransport

jobs = JobQueue("memory://")
_clients: dict[str, openai.AsyncOpenAI] = {}


@jobs.task(name="llm.ask", retries=0)
async def ask(prompt: str) -> str:
    """One chat completion; the budget and the level come with the worker's client."""
    answer = await _clients["llm"].chat.completions.create(
        model="stand-in", messages=[{"role": "user", "content": prompt}], max_tokens=32
    )
    return answer.choices[0].message.content or ""


async def run(url: str, *, nightly: int, rpm: float) -> dict[str, float]:
    """The nightly batch, then one live request; what the live request waited, and how much
    of the batch was done before it."""
    budget = Budget(BudgetPolicy(rpm=rpm, burst=1))
    http = httpx.AsyncClient(transport=BudgetTransport(budget))
    _clients["llm"] = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="-", http_client=http)
    batch = [await ask.enqueue(f"summarise report {i}", level="low") for i in range(nightly)]
    worker = Worker(jobs, concurrency=4, stats_interval=None)
    working = asyncio.create_task(worker.run())
    while budget.scheduler.in_flight + budget.scheduler.waiting < 4:
        await asyncio.sleep(0.01)  # the worker has taken its first slots of the batch
    started = time.monotonic()
    live = await ask.enqueue("a customer is waiting: where is my order?", level="critical")
    answer = await live.result(timeout=60)
    waited = time.monotonic() - started
    done = sum([1 for handle in batch if await handle.status() is JobState.SUCCEEDED])
    worker.stop(immediate=True)
    await working
    await _clients.pop("llm").close()
    assert answer == "echo: a customer is waiting: where is my order?"
    return {"critical_wait_s": waited, "slot_s": 60 / rpm, "batch_done_before": done}


def main(nightly: int = 200, rpm: float = 600) -> dict[str, float]:
    with serve(StandIn(rpm=rpm, tpm=1_000_000)) as url:
        return asyncio.run(run(url, nightly=nightly, rpm=rpm))


if __name__ == "__main__":
    figures = main()
    print(
        f"critical answered in {figures['critical_wait_s']:.2f} s (one request slot is "
        f"{figures['slot_s']:.2f} s); {figures['batch_done_before']:.0f} of the nightly batch "
        "were done before it"
    )
