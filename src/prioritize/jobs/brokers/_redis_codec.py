"""Jobs as the Redis broker stores them: a hash per job, and back.

The fields the scripts read or change (state, rank, flow, retries,
attempts, leases, results, ...) are fields of their own; the rest (the
payload, the task, the retry backoff, ...) travel and rest as one field,
``data``: a JSON header line, then the payload. Fewer arguments to send and
fewer fields to store.
"""

from __future__ import annotations

import functools
import json

from ...core.retry import Jitter, RetryPolicy
from ..model import Job, JobState


def job_fields(job: Job, rank: int) -> list[str | bytes]:
    """The job hash's fields, for HSET; None is an absent field.

    What the scripts never read is packed into ``data`` (see above).
    """
    retry = job.retry
    header = [
        job.id, job.task, job.level, job.enqueued_at, job.timeout,
        retry.base, retry.factor, retry.cap, Jitter(retry.jitter).value, job.retry_chosen,
    ]  # fmt: skip
    data = _dumps(header).encode("utf-8") + b"\n" + job.payload
    out: list[str | bytes] = [
        b"data", data, b"rank", b"%d" % rank, b"flow", to_bytes(job.flow),
        b"retries", b"%d" % retry.retries, b"attempts", b"0",
        b"result_ttl", repr(float(job.result_ttl)),
    ]  # fmt: skip
    for name in ("deadline", "started_at", "finished_at"):
        value = getattr(job, name)
        if value is not None:
            out += [name, repr(float(value))]
    if job.result is not None:
        out += [b"result", job.result]
    for name in ("error", "traceback", "idempotency_key", "reason"):
        value = getattr(job, name)
        if value is not None:
            out += [name, to_bytes(value)]
    return out


def job_from_hash(raw: list[bytes]) -> Job:
    """A `Job` from a job hash's HGETALL."""
    pairs = iter(raw)
    h = dict(zip(pairs, pairs, strict=True))
    get = h.get
    header, _, payload = h[b"data"].partition(b"\n")
    job_id, task, level, enqueued_at, timeout, base, factor, cap, jitter, chosen = json.loads(
        header
    )
    return Job(
        id=job_id,
        task=task,
        payload=payload,
        level=level,
        flow=to_text(get(b"flow", b"")),
        state=JobState(h[b"state"].decode()),
        retry=_retry(int(h[b"retries"]), base, factor, cap, jitter),
        timeout=timeout,
        deadline=to_float(get(b"deadline")),
        run_at=to_float(get(b"run_at")),
        enqueued_at=enqueued_at,
        started_at=to_float(get(b"started_at")),
        finished_at=to_float(get(b"finished_at")),
        attempts=int(h[b"attempts"]),
        worker=_maybeto_text(get(b"worker")),
        lease_until=to_float(get(b"lease_until")),
        result=get(b"result"),
        error=_maybeto_text(get(b"error")),
        traceback=_maybeto_text(get(b"traceback")),
        idempotency_key=_maybeto_text(get(b"idempotency_key")),
        result_ttl=float(h[b"result_ttl"]),
        reason=_maybeto_text(get(b"reason")),
        retry_chosen=chosen,
    )


@functools.lru_cache(maxsize=256)
def _retry(retries: int, base: float, factor: float, cap: float, jitter: str) -> RetryPolicy:
    return RetryPolicy(retries, base, factor, cap, jitter)


#: JSON for the data header: floats as repr (exact), text as is (surrogates escaped)
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def to_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def to_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")


def _maybeto_text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "surrogatepass")


def to_float(data: bytes | None) -> float | None:
    return None if data is None else float(data)
