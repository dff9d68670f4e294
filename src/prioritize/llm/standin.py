"""A stand-in LLM provider: small, real, and strict about its rate limits.

It speaks the two request shapes the official clients send —
OpenAI's ``POST /v1/chat/completions`` and Anthropic's ``POST /v1/messages``
— and enforces requests and tokens per minute the way providers describe
theirs: token buckets holding a minute's worth and refilling continuously.
A request is charged one request and its prompt tokens plus ``max_tokens``
up front (so a large ``max_tokens`` counts against the limit, as it does
upstream); the unused part is given back when it is answered. Over the
limit it answers ``429`` with ``Retry-After`` (and ``retry-after-ms``) and
each provider's own rate-limit headers; every answer reports ``usage``.
The reply is an echo of the last user message, after ``latency`` seconds,
as JSON or, asked with ``"stream": true``, as each provider's event stream.

Tokens are counted as providers roughly do for English text: a token per
four characters, plus a few per message. ``GET /stats`` reports what was
served and refused. Run it with ``python -m prioritize.llm.standin --rpm 60``;
it needs the ``http`` extra (Starlette, uvicorn).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

try:
    from starlette.applications import Starlette
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "prioritize.llm.standin needs Starlette and uvicorn: pip install 'prioritize[http]'"
    ) from exc

from ._standin_events import events
from .tokens import count_tokens, prompt_tokens, text_of

__all__ = ["StandIn", "count_tokens", "create_app", "main", "prompt_tokens", "serve"]


@dataclass
class _Bucket:
    limit: float
    level: float = 0.0
    at: float = 0.0

    def __post_init__(self) -> None:
        self.level = self.limit

    def refill(self, now: float) -> None:
        self.level = min(self.limit, self.level + (now - self.at) * self.limit / 60)
        self.at = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` fits (0 if it does now)."""
        return max(0.0, (amount - self.level) * 60 / self.limit)

    def reset_in(self) -> float:
        """Seconds until the bucket is full again."""
        return (self.limit - self.level) * 60 / self.limit


@dataclass
class StandIn:
    """The provider's limits and counters; `create_app` serves it."""

    rpm: float = 60
    tpm: float = 100_000
    latency: float = 0.0
    #: tokens in each answer, at most the request's max_tokens
    output_tokens: int = 16
    clock: Callable[[], float] = time.monotonic
    served: int = 0
    refused: int = 0
    tokens: int = 0
    #: the headers of the last request, lower-cased names
    last_headers: dict[str, str] = field(default_factory=dict)
    _requests: _Bucket = field(init=False)
    _tokens: _Bucket = field(init=False)
    _ids: itertools.count[int] = field(init=False, default_factory=itertools.count)

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 < value < math.inf:
                raise ValueError(f"{name} = {value!r}: expected a number > 0")
        if not 0 <= self.latency < math.inf:
            raise ValueError(f"latency = {self.latency!r}: expected seconds ≥ 0")
        now = self.clock()
        self._requests = _Bucket(self.rpm, at=now)
        self._tokens = _Bucket(self.tpm, at=now)

    def admit(self, tokens: int) -> float:
        """Charge a request of ``tokens``: 0.0 if admitted, else the seconds to wait."""
        now = self.clock()
        self._requests.refill(now)
        self._tokens.refill(now)
        if tokens > self.tpm:
            return math.inf
        wait = max(self._requests.wait_for(1), self._tokens.wait_for(tokens))
        if wait > 0:
            self.refused += 1
            return wait
        self._requests.level -= 1
        self._tokens.level -= tokens
        return 0.0

    def give_back(self, tokens: int) -> None:
        self._tokens.level = min(self._tokens.limit, self._tokens.level + tokens)

    def headers(self, kind: str) -> dict[str, str]:
        """The rate-limit headers of an OpenAI (``"openai"``) or Anthropic answer."""
        req, tok = self._requests, self._tokens
        if kind == "openai":
            return {
                "x-ratelimit-limit-requests": f"{req.limit:g}",
                "x-ratelimit-limit-tokens": f"{tok.limit:g}",
                "x-ratelimit-remaining-requests": str(max(0, math.floor(req.level))),
                "x-ratelimit-remaining-tokens": str(max(0, math.floor(tok.level))),
                "x-ratelimit-reset-requests": _duration(req.reset_in()),
                "x-ratelimit-reset-tokens": _duration(tok.reset_in()),
            }
        now = datetime.now(UTC).timestamp()
        out: dict[str, str] = {}
        for name, bucket in (("requests", req), ("tokens", tok)):
            out[f"anthropic-ratelimit-{name}-limit"] = f"{bucket.limit:g}"
            out[f"anthropic-ratelimit-{name}-remaining"] = str(max(0, math.floor(bucket.level)))
            reset = datetime.fromtimestamp(now + bucket.reset_in(), UTC)
            out[f"anthropic-ratelimit-{name}-reset"] = reset.isoformat().replace("+00:00", "Z")
        return out

    def next_id(self) -> int:
        return next(self._ids)


def _duration(seconds: float) -> str:
    """OpenAI's reset format: ``"1s"``, ``"6m0s"``, ``"120ms"``."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.0f}s" if minutes else f"{rest:.3g}s"


async def _call(standin: StandIn, request: Request, kind: str) -> Response:
    standin.last_headers = dict(request.headers)
    try:
        body = await request.json()
    except ValueError:
        return _error(kind, 400, "invalid_request_error", "the body is not JSON")
    except ClientDisconnect:  # the caller gave up before sending its body: nothing to answer
        return JSONResponse(None, status_code=499)
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return _error(kind, 400, "invalid_request_error", "'messages' must be an array")
    asked = body.get(
        "max_completion_tokens", body.get("max_tokens", 256 if kind == "openai" else None)
    )
    if not isinstance(asked, int) or isinstance(asked, bool) or asked < 1:
        return _error(kind, 400, "invalid_request_error", "'max_tokens' must be an integer ≥ 1")
    prompt = prompt_tokens(body)
    wait = standin.admit(prompt + asked)
    if wait == math.inf:
        message = f"{prompt + asked} tokens is more than the limit of {standin.tpm:g} per minute"
        return _error(kind, 400, "invalid_request_error", message)
    if wait > 0:
        headers = standin.headers(kind)
        headers["retry-after"] = str(math.ceil(wait))
        headers["retry-after-ms"] = str(math.ceil(wait * 1000))
        message = f"Rate limit reached; try again in {wait:.3g}s"
        return _error(kind, 429, "rate_limit_error", message, headers)
    if standin.latency:
        await asyncio.sleep(standin.latency)
    output = min(asked, standin.output_tokens)
    standin.give_back(asked - output)
    standin.served += 1
    standin.tokens += prompt + output
    text = _reply(body, output)
    n = standin.next_id()
    model = str(body.get("model", "stand-in"))
    if kind == "openai":
        payload: dict[str, object] = {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": output,
                "total_tokens": prompt + output,
            },
        }
    else:
        payload = {
            "id": f"msg_{n}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": prompt, "output_tokens": output},
        }
    if body.get("stream") is True:
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        content = events(kind, payload, include_usage)
        return Response(content, media_type="text/event-stream", headers=standin.headers(kind))
    return JSONResponse(payload, headers=standin.headers(kind))


def _reply(body: dict[str, object], tokens: int) -> str:
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else {}
    said = text_of(last.get("content") if isinstance(last, dict) else "")
    return f"echo: {said}"[: tokens * 4]


def _error(
    kind: str, status: int, error: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    if kind == "openai":
        code = "rate_limit_exceeded" if status == 429 else None
        content: dict[str, object] = {
            "error": {"message": message, "type": error, "param": None, "code": code}
        }
    else:
        content = {"type": "error", "error": {"type": error, "message": message}}
    return JSONResponse(content, status_code=status, headers=headers)


def create_app(standin: StandIn | None = None, **limits: float) -> Starlette:
    """The ASGI app of a stand-in provider (``create_app(rpm=60, tpm=10000)``)."""
    provider = standin if standin is not None else StandIn(**limits)  # type: ignore[arg-type]

    async def openai(request: Request) -> Response:
        return await _call(provider, request, "openai")

    async def anthropic(request: Request) -> Response:
        return await _call(provider, request, "anthropic")

    async def stats(request: Request) -> JSONResponse:
        counts = {"served": provider.served, "refused": provider.refused, "tokens": provider.tokens}
        return JSONResponse(counts)

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", openai, methods=["POST"]),
            Route("/v1/messages", anthropic, methods=["POST"]),
            Route("/stats", stats, methods=["GET"]),
        ]
    )
    app.state.standin = provider
    return app


@contextmanager
def serve(standin: StandIn, *, startup_timeout: float = 30.0) -> Iterator[str]:
    """Serve ``standin`` on a free loopback port from a thread; yields its base URL.

    For tests, examples and benchmarks that want a real server in-process:
    ``with serve(StandIn(rpm=60)) as url: ... OpenAI(base_url=url + "/v1")``.
    """
    import uvicorn

    config = uvicorn.Config(create_app(standin), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    started = threading.Event()
    original = server.startup

    async def startup(*args: object, **kwargs: object) -> None:
        await original(*args, **kwargs)  # type: ignore[arg-type]
        started.set()

    server.startup = startup  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, name="llm-stand-in", daemon=True)
    thread.start()
    if not started.wait(startup_timeout) or not server.started:
        server.should_exit = True
        raise RuntimeError("the stand-in provider did not start")
    host, port = next(s for srv in server.servers for s in srv.sockets).getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(startup_timeout)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m prioritize.llm.standin``: serve a stand-in provider until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m prioritize.llm.standin", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rpm", type=float, default=60, help="requests per minute (60)")
    parser.add_argument("--tpm", type=float, default=100_000, help="tokens per minute (100000)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer (0)")
    parser.add_argument("--output-tokens", type=int, default=16, help="tokens per answer (16)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    import uvicorn

    standin = StandIn(args.rpm, args.tpm, args.latency, args.output_tokens)
    uvicorn.run(create_app(standin), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
