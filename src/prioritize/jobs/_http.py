"""The job service's HTTP plumbing: RFC 9457 problem answers, and the checks on a body.

Kept apart from the handlers (`prioritize.jobs.service`) so each reads as
what it decides; every answer here is a problem with a ``type`` of
`PROBLEM_TYPES`.
"""

from __future__ import annotations

from http import HTTPStatus

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._openapi import PROBLEM_TYPES
from ._submission import FieldError

__all__ = [
    "NO_STORE",
    "check_media_type",
    "http_problem",
    "internal_problem",
    "invalid",
    "not_found",
    "problem",
    "read_limited",
    "refuse_size",
    "too_large",
]

#: answers about jobs change from one moment to the next: never cached
NO_STORE = {"Cache-Control": "no-store"}
#: RFC 9110's reason phrases, where Python's differ by version ("Unprocessable Entity")
_TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}


def check_media_type(request: Request) -> Response | None:
    """415 unless the body is declared JSON and not content-coded."""
    declared = request.headers.get("content-type")
    media = (declared or "").split(";", 1)[0].strip().lower()
    coding = request.headers.get("content-encoding", "identity").strip().lower()
    headers = {"Accept-Post": "application/json"}
    if coding != "identity":
        detail = f"Content-Encoding {coding!r} is not accepted: send the JSON body uncompressed"
        return problem(request, 415, "unsupported-media-type", detail, headers=headers)
    if media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    ):
        return None
    got = f"Content-Type {declared!r}" if declared else "no Content-Type"
    detail = f"a job is submitted as JSON: got {got}; send Content-Type: application/json"
    return problem(request, 415, "unsupported-media-type", detail, headers=headers)


def refuse_size(request: Request, max_body: int) -> Response | None:
    """413 at once when ``Content-Length`` already says the body is too large."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_body:
        return too_large(request, max_body)
    return None


async def read_limited(request: Request, max_body: int) -> bytes | None:
    """The body, or None as soon as it grows past ``max_body`` (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(request: Request, max_body: int) -> Response:
    detail = f"the body is over {max_body} bytes, the most this service accepts"
    return problem(request, 413, "body-too-large", detail, max_bytes=max_body)


def problem(
    request: Request,
    status: int,
    kind: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extensions: object,
) -> Response:
    """An RFC 9457 problem response; ``kind`` is a key of `PROBLEM_TYPES`, or "" for about:blank."""
    body: dict[str, object] = {
        "type": PROBLEM_TYPES[kind] if kind else "about:blank",
        "title": _TITLES.get(status) or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        **extensions,
    }
    return JSONResponse(
        body,
        status,
        headers={**NO_STORE, **(headers or {})},
        media_type="application/problem+json",
    )


def invalid(request: Request, errors: list[FieldError]) -> Response:
    fields = ", ".join(dict.fromkeys(e.field for e in errors))
    detail = f"{len(errors)} problem{'s' if len(errors) != 1 else ''} with the request: {fields}"
    return problem(request, 422, "invalid-request", detail, errors=[e.as_dict() for e in errors])


def not_found(request: Request, job_id: str) -> Response:
    detail = f"no job {job_id}: never submitted, or dropped after its result TTL"
    return problem(request, 404, "job-not-found", detail)


async def http_problem(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such route, method not allowed) as problems."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        detail = f"no route {request.url.path}; the routes are listed at /openapi.json"
    elif exc.status_code == 405:
        allowed = headers.get("Allow", "")
        detail = f"{request.method} is not allowed on {request.url.path}; allowed: {allowed}"
    else:
        detail = str(exc.detail)
    return problem(request, exc.status_code, "", detail, headers=headers)


async def internal_problem(request: Request, exc: Exception) -> Response:
    """An unexpected error: a problem body, the error itself only in the log."""
    detail = "the service failed on this request; the error is in its log"
    return problem(request, 500, "internal-error", detail)
