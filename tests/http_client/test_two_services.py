"""Propagation end to end: two real services behind `PriorityMiddleware`, on loopback.

Service A classifies its requests by its own rules and, inside each
request, calls service B through `PriorityTransport`. B has no rules: it
would serve everything at its default, ``normal``. With the secret the two
share, B serves each call at A's level, higher or lower; without it, the
plain header may only lower B's level, so A's critical work arrives as
normal.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from prioritize import Policy, TrustPolicy, current_level, policy_from_toml
from prioritize.http.client import PriorityTransport
from prioritize.http.middleware import PriorityMiddleware
from tests.servers import serve_asgi

SECRET = b"the secret services A and B share"

A_POLICY = """
[gates.api]
capacity = 8

[[rules]]
path_prefix = "/payments"
level = "critical"

[[rules]]
path_prefix = "/export"
level = "bulk"
"""

B_POLICY = """
[gates.api]
capacity = 8
"""


def with_trust(toml: str, name: str, trust: TrustPolicy) -> Policy:
    return dataclasses.replace(policy_from_toml(toml, name), trust=trust)


def level_here(request: Request) -> JSONResponse:
    level = current_level()
    return JSONResponse({"level": level.name if level else None})


def service_a(policy: Policy, b_url: str) -> PriorityMiddleware:
    """Answers with its own level and the level B served its call at."""
    clients: list[httpx.AsyncClient] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        transport = PriorityTransport(levels=policy.levels, trust=policy.trust)
        async with httpx.AsyncClient(transport=transport, base_url=b_url) as client:
            clients.append(client)
            yield

    async def work(request: Request) -> JSONResponse:
        mine = current_level()
        answer = await clients[0].get("/anything")
        return JSONResponse({"a": mine.name if mine else None, "b": answer.json()["level"]})

    app = Starlette(routes=[Route("/{path:path}", work)], lifespan=lifespan)
    return PriorityMiddleware(app, policy, gate="api")


@contextlib.contextmanager
def two_services(trust: TrustPolicy) -> Iterator[str]:
    """Serve B, then A calling B; yields A's URL."""
    b_policy = with_trust(B_POLICY, "b.toml", trust)
    b = PriorityMiddleware(Starlette(routes=[Route("/{path:path}", level_here)]), b_policy)
    with serve_asgi(b, lifespan="off") as b_url:
        a = service_a(with_trust(A_POLICY, "a.toml", trust), b_url)
        with serve_asgi(a, lifespan="on") as a_url:
            yield a_url


@pytest.mark.parametrize(
    ("path", "level"), [("/payments/42", "critical"), ("/export", "bulk"), ("/other", "normal")]
)
def test_with_a_shared_secret_b_serves_the_call_at_as_level(path: str, level: str) -> None:
    with two_services(TrustPolicy(secrets=(SECRET,))) as a_url:
        answer = httpx.get(a_url + path).json()
    assert answer == {"a": level, "b": level}


def test_without_a_secret_the_level_can_only_be_lowered_downstream() -> None:
    with two_services(TrustPolicy()) as a_url:
        critical = httpx.get(a_url + "/payments/42").json()
        bulk = httpx.get(a_url + "/export").json()
    assert critical == {"a": "critical", "b": "normal"}
    assert bulk == {"a": "bulk", "b": "bulk"}


def test_a_token_signed_with_another_secret_is_not_believed() -> None:
    b_trust = TrustPolicy(secrets=(b"only B knows this one",))
    b_policy = with_trust(B_POLICY, "b.toml", b_trust)
    b = PriorityMiddleware(Starlette(routes=[Route("/{path:path}", level_here)]), b_policy)
    with serve_asgi(b, lifespan="off") as b_url:
        a = service_a(with_trust(A_POLICY, "a.toml", TrustPolicy(secrets=(SECRET,))), b_url)
        with serve_asgi(a, lifespan="on") as a_url:
            answer = httpx.get(a_url + "/payments/42").json()
    assert answer == {"a": "critical", "b": "normal"}
    assert b.ignored_headers == {"forged": 1}
