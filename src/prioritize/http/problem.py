"""RFC 9457 problem details for a shed request: 503, ``Retry-After``, and why.

A shed request is overload, not a server error: it gets 503 Service
Unavailable (never 500), a ``Retry-After`` in whole seconds (RFC 9110
§10.2.3 allows no fractions; rounded up, at least 1, so a client never
retries at once) and an ``application/problem+json`` body naming the level
and the reason, so clients and logs can tell a shed ``bulk`` export from a
shed payment.
"""

from __future__ import annotations

import json
import math

from ..core.tickets import Reason
from ..errors import Rejected

__all__ = ["PROBLEM_TYPE", "retry_after_header", "shed_response"]

#: The problem ``type`` of every shed response (RFC 9457 §3.1.1: a URI
#: identifying the problem type; a URN needs no web page behind it).
PROBLEM_TYPE = "urn:prioritize:problem:shed"

_DETAIL = {
    Reason.QUEUE_FULL: "every place to wait for this level is taken",
    Reason.EVICTED: "a more important request took this one's place in the queue",
    Reason.TIMEOUT: "it waited the longest this level may wait",
    Reason.LIMIT: "no seat was free and this level may not wait",
    Reason.SHUTDOWN: "the service is shutting down",
}


def retry_after_header(seconds: float | None) -> str:
    """``Retry-After`` value: whole seconds, rounded up, at least 1."""
    if seconds is None or not math.isfinite(seconds):
        return "1"
    return str(max(1, math.ceil(seconds)))


def shed_response(
    rejected: Rejected, *, gate: str, instance: str | None = None
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body of the 503 answer to a shed request."""
    reason = Reason(rejected.reason)
    detail = _DETAIL.get(reason, reason.value)
    problem: dict[str, object] = {
        "type": PROBLEM_TYPE,
        "title": "Service Unavailable",
        "status": 503,
        "detail": f"{rejected.level} request shed: {detail}",
        "level": rejected.level,
        "reason": reason.value,
        "gate": gate,
        "retry_after": int(retry_after_header(rejected.retry_after)),
    }
    if instance is not None:
        problem["instance"] = instance
    body = json.dumps(problem, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", retry_after_header(rejected.retry_after).encode()),
        (b"cache-control", b"no-store"),
    ]
    return 503, headers, body
