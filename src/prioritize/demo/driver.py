"""Send a schedule of requests at their times and record how each one ended.

Each request is sent at its scheduled time whether or not earlier ones have
been answered (open loop), and its latency is measured from that scheduled
time, not from when it was actually sent. If the load generator falls
behind — the machine is busy — the delay counts against the service rather
than vanishing from the figures (the "coordinated omission" of closed-loop
benchmarks); how late requests were sent is recorded too (``lag``), so a
report can say when the machine, not the service, was the bottleneck.

A 503 counts as *shed* only if it carries the middleware's problem details
(``application/problem+json`` with a ``reason``); any other answer than 200
or such a 503, and any transport failure, is an *error*.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import final

from .client import HttpClient, ProtocolError, Response
from .load import Arrival

__all__ = ["Kind", "Outcome", "ProgressFn", "classify_response", "drive"]

#: Called now and then with (requests answered, requests in the schedule).
ProgressFn = Callable[[int, int], None]


class Kind(StrEnum):
    """How a request ended."""

    #: answered 200 by the endpoint
    SERVED = "served"
    #: answered 503 with problem details: the gate shed it
    SHED = "shed"
    #: anything else: another status, a malformed 503, a transport failure
    ERROR = "error"


@final
@dataclass(frozen=True, slots=True)
class Outcome:
    """How one request of the schedule ended."""

    level: str
    #: its scheduled send time, seconds after the run's start
    scheduled: float
    #: seconds from the scheduled send time to the whole response
    latency: float
    #: seconds it was sent after its scheduled time
    lag: float
    kind: Kind
    #: HTTP status, 0 when there was no response
    status: int
    #: the shed reason for a shed request, what went wrong for an error, else ""
    detail: str


def classify_response(response: Response) -> tuple[Kind, str]:
    """How a response ended its request, and the shed reason or what went wrong."""
    if response.status == 200:
        return Kind.SERVED, ""
    if response.status == 503:
        content_type = response.headers.get("content-type", "")
        if content_type != "application/problem+json":
            return Kind.ERROR, f"503 with content-type {content_type!r}, not problem+json"
        try:
            problem = json.loads(response.body)
        except ValueError:
            return Kind.ERROR, "503 whose problem+json body is not JSON"
        reason = problem.get("reason") if isinstance(problem, dict) else None
        if not isinstance(reason, str) or problem.get("status") != 503:
            return Kind.ERROR, "503 whose problem details lack a reason or status 503"
        return Kind.SHED, reason
    return Kind.ERROR, f"status {response.status}"


async def drive(
    client: HttpClient, arrivals: Sequence[Arrival], progress: ProgressFn | None = None
) -> list[Outcome]:
    """Send every arrival at its time; returns once every one has ended, in schedule order."""
    loop = asyncio.get_running_loop()
    outcomes: list[Outcome | None] = [None] * len(arrivals)
    answered = 0
    every = max(1, len(arrivals) // 100)  # about once per percent
    start = loop.time()

    async def fire(index: int, arrival: Arrival) -> None:
        nonlocal answered
        due = start + arrival.time
        sent = loop.time()
        try:
            response = await client.get(arrival.target)
        except (OSError, TimeoutError, ProtocolError, asyncio.IncompleteReadError) as error:
            kind, status, detail = Kind.ERROR, 0, _describe(error)
        else:
            status = response.status
            kind, detail = classify_response(response)
        outcomes[index] = Outcome(
            arrival.level,
            arrival.time,
            loop.time() - due,
            sent - due,
            kind,
            status,
            detail,
        )
        answered += 1
        if progress is not None and answered % every == 0:
            progress(answered, len(arrivals))

    tasks = []
    try:
        for index, arrival in enumerate(arrivals):
            delay = start + arrival.time - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(fire(index, arrival)))
        await asyncio.gather(*tasks)
    except BaseException:  # interrupted: leave no request behind
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    if progress is not None:
        progress(answered, len(arrivals))
    return [outcome for outcome in outcomes if outcome is not None]


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError):
        return "no answer within the client's timeout"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
