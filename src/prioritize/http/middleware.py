"""`PriorityMiddleware`: a pure ASGI middleware that admits each request by its level.

Every HTTP request is classified by the policy's rules (after the trust
rule has decided how far the caller's own priority header may move it),
then takes a seat of its gate for the whole request — the response body
included, so a streamed download holds its seat until its last chunk — and
gives it back however the request ends. A request the gate sheds gets 503
with ``Retry-After`` and an RFC 9457 problem body (`problem`), never a 500.

Theory of operation
-------------------
* **No framework.** It speaks ASGI 3 only, so it sits in front of
  Starlette, FastAPI, Litestar, Quart or a bare app alike. Lifespan and
  any other scope type pass straight through.
* **The level travels with the request.** It is put in ``scope["state"]``
  (``request.state.priority`` in Starlette and FastAPI) and made the
  current level (`prioritize.current_level`) while the app runs, so a
  database pool or an outbound call deep inside knows it.
* **A client that leaves frees its place.** While a request waits for a
  seat the middleware also listens for ``http.disconnect``; if the client
  goes, the wait is withdrawn and nothing is sent. Body chunks that arrive
  meanwhile are kept and replayed to the app in order. A request granted a
  seat at once never starts that listener: the common case costs one
  scheduler call and no extra task.
* **Websockets are admitted at connect**: the seat is held until the app
  accepts (or refuses) the connection, not for the connection's lifetime.
  A shed connection is refused with an HTTP 503 where the server supports
  the ``websocket.http.response`` extension, else closed with code 1013
  ("try again later").
* **Headers that lie are ignored, and counted** (`ignored_headers`): a
  malformed, forged or expired priority token gives the request its rule
  or default level, never an error page.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from types import MappingProxyType
from typing import Any, final

from ..aio import Gate, Slot
from ..context import enter_level, exit_level
from ..core.classify import LowercaseHeaders, RequestInfo
from ..core.config import Policy
from ..core.levels import Level
from ..errors import ConfigError, Problem, Rejected, did_you_mean
from .problem import shed_response

__all__ = ["PriorityMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: the ``scope["state"]`` key holding the request's `Level`
STATE_KEY = "priority"


class _ClientGone(Exception):
    """The client disconnected while its request waited for a seat."""


@final
class PriorityMiddleware:
    """Admit each HTTP request and websocket connection through the gate its route belongs to.

    ``gate`` names the policy's gate for requests no ``routes`` entry
    claims (optional when the policy has one gate). ``routes`` maps path
    prefixes to other gates, longest prefix first (``{"/admin": "admin"}``).
    ``exempt`` path prefixes (health checks, ``/metrics``) bypass admission.
    ``tenant`` and ``plan``, if given, are called with the ASGI scope; the
    tenant is also the request's flow, so tenants take turns within a level.
    Prefixes match whole segments: ``/health`` covers ``/health/live`` but
    not ``/healthy``.
    """

    def __init__(
        self,
        app: ASGIApp,
        policy: Policy,
        *,
        gate: str | None = None,
        routes: Mapping[str, str] | None = None,
        exempt: Iterable[str] = (),
        tenant: Callable[[Scope], str | None] | None = None,
        plan: Callable[[Scope], str | None] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(policy, Policy):
            raise TypeError(
                f"PriorityMiddleware takes a Policy (load_policy(), parse_policy()), "
                f"not {type(policy).__name__}"
            )
        self.app = app
        self.policy = policy
        routes = dict(routes or {})
        default = _default_gate(policy, gate)
        problems = [
            problem
            for prefix, name in routes.items()
            for problem in _route_problems(policy, prefix, name)
        ]
        exempt = tuple(exempt)
        problems += [
            Problem(f"exempt[{i}]", f"{p!r} is not a path prefix starting with '/'")
            for i, p in enumerate(exempt)
            if not isinstance(p, str) or not p.startswith("/")
        ]
        if problems:
            raise ConfigError(problems, source="PriorityMiddleware")
        names = {default, *routes.values()}
        self._gates = {name: Gate.from_policy(policy, name) for name in sorted(names)}
        self._default = default
        # longest prefix first, so "/api/admin" wins over "/api"
        self._routes = sorted(
            ((_strip(prefix), name) for prefix, name in routes.items()),
            key=lambda item: -len(item[0]),
        )
        self._exempt = tuple(_strip(prefix) for prefix in exempt)
        self._classifier = policy.classifier()
        self._trust = policy.trust
        #: header names (raw lowercase bytes, and as str) that rules or trust read
        wanted = {name for rule in policy.rules for name in rule.headers}
        self._priority_header = policy.trust.priority_header
        self._signed_header = policy.trust.signed_header
        wanted |= {self._priority_header, self._signed_header, "x-forwarded-for"}
        self._wanted = tuple((name.encode("latin-1"), name) for name in sorted(wanted))
        self._tenant = tenant
        self._plan = plan
        self._wall_clock = wall_clock
        #: priority headers ignored, by why ("malformed", "forged", "expired")
        self.ignored_headers: Counter[str] = Counter()
        #: requests whose client disconnected while they waited for a seat
        self.abandoned = 0

    @property
    def gates(self) -> Mapping[str, Gate]:
        """The gates this middleware admits through, by name (to register with metrics)."""
        return MappingProxyType(self._gates)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        disconnect = _DISCONNECT.get(kind)
        if disconnect is None or (self._exempt and self._is_exempt(scope["path"])):
            # lifespan, anything newer, and exempt routes: not ours to admit
            await self.app(scope, receive, send)
            return
        level, gate_name, flow = self.classify(scope)
        _state(scope)[STATE_KEY] = level
        slot = self._gates[gate_name].slot(level, flow)
        try:
            if not slot.request():
                receive = await self._wait(slot, receive, disconnect)
        except Rejected as shed:
            refuse = _refuse_http if kind == "http" else _refuse_websocket
            await refuse(scope, send, shed, gate_name)
            return
        except _ClientGone:
            self.abandoned += 1
            return
        # Websockets are admitted at connect: the seat goes back with the app's answer.
        connect = _FreedOnAnswer(send, slot) if kind == "websocket" else None
        token = enter_level(level)
        try:
            await self.app(scope, receive, send if connect is None else connect.send)
        finally:
            exit_level(token)
            if connect is None:
                slot.release()
            else:
                connect.release()

    # -- admission ----------------------------------------------------------------

    def classify(self, scope: Scope) -> tuple[Level, str, str | None]:
        """The request's level, the name of its gate, and its flow (the tenant)."""
        headers = self._read_headers(scope.get("headers", ()))
        requested: str | None = None
        trusted = False
        if self._priority_header in headers or self._signed_header in headers:
            # Only a request asking for a level needs the trust decision (and its
            # address checks); the rest take the rules' level as it is.
            client = scope.get("client")
            peer = client[0] if client else None
            decision = self._trust.decide(headers, peer, self._wall_clock())
            if decision.ignored is not None:
                self.ignored_headers[decision.ignored] += 1
            requested, trusted = decision.requested, decision.trusted
        tenant = self._tenant(scope) if self._tenant is not None else None
        info = RequestInfo(
            method=scope.get("method", "GET"),
            path=scope["path"],
            headers=headers,
            tenant=tenant,
            plan=self._plan(scope) if self._plan is not None else None,
            requested=requested,
            trusted=trusted,
        )
        return self._classifier.classify(info), self._gate_for(scope["path"]), tenant

    def _read_headers(self, raw: Iterable[tuple[bytes, bytes]]) -> LowercaseHeaders:
        """The headers the rules and the trust decision look at, decoded; the rest left as bytes.

        A browser sends a dozen headers and the policy reads two or three:
        one C-level ``dict()`` of the raw pairs, then a lookup per wanted
        name. A name sent more than once (``X-Forwarded-For`` through several
        proxies may be) is joined with ", " as RFC 9110 §5.3 allows.
        """
        raw = list(raw)
        by_name = dict(raw)
        if len(by_name) != len(raw):  # a repeated name: join its values, in order
            joined: dict[bytes, bytes] = {}
            for raw_name, raw_value in raw:
                previous = joined.get(raw_name)
                joined[raw_name] = raw_value if previous is None else previous + b", " + raw_value
            by_name = joined
        headers = LowercaseHeaders()
        for key, name in self._wanted:
            found = by_name.get(key)
            if found is not None:
                headers[name] = found.decode("latin-1")
        return headers

    def _gate_for(self, path: str) -> str:
        for prefix, name in self._routes:
            if _under(path, prefix):
                return name
        return self._default

    def _is_exempt(self, path: str) -> bool:
        return any(_under(path, prefix) for prefix in self._exempt)

    async def _wait(self, slot: Slot, receive: Receive, disconnect: str) -> Receive:
        """Wait for the slot's grant while watching the client; returns the app's ``receive``.

        Messages read meanwhile (body chunks, a websocket's connect) are
        replayed to the app first. Raises `_ClientGone` if the client left
        (the request is withdrawn), `Rejected` if the gate shed it.
        """
        kept: list[Message] = []
        granted = asyncio.ensure_future(slot.granted())
        listening: asyncio.Future[Message] | None = None
        try:
            while True:
                if listening is None:
                    listening = asyncio.ensure_future(receive())
                await asyncio.wait((granted, listening), return_when=asyncio.FIRST_COMPLETED)
                if listening.done():
                    message = listening.result()
                    listening = None
                    if message["type"] == disconnect:
                        raise _ClientGone
                    kept.append(message)
                if granted.done():
                    granted.result()  # raises Rejected if shed while waiting
                    break
        except BaseException:
            if not granted.done():
                granted.cancel()  # withdraws the request; a racing grant is given back
                await asyncio.gather(granted, return_exceptions=True)
            elif not granted.cancelled() and granted.exception() is None:
                slot.release()  # granted as the client left: give the seat straight back
            raise
        finally:
            if listening is not None:
                listening.cancel()
                await asyncio.gather(listening, return_exceptions=True)
        return _replaying(kept, receive) if kept else receive

    def __repr__(self) -> str:
        return f"<PriorityMiddleware gates={list(self._gates)} default={self._default!r}>"


#: the message that says the client left, by the scope types this middleware admits
_DISCONNECT = {"http": "http.disconnect", "websocket": "websocket.disconnect"}

_WEBSOCKET_ANSWERS = frozenset(
    {"websocket.accept", "websocket.close", "websocket.http.response.start"}
)


def _replaying(kept: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that hands out ``kept`` messages first, then reads from the server."""
    pending = list(reversed(kept))

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay


@final
class _FreedOnAnswer:
    """A websocket's ``send``: the seat is given back with the app's answer to the connect."""

    __slots__ = ("_send", "_slot")

    def __init__(self, send: Send, slot: Slot) -> None:
        self._send = send
        self._slot: Slot | None = slot

    async def send(self, message: Message) -> None:
        if self._slot is not None and message["type"] in _WEBSOCKET_ANSWERS:
            # admitted at connect: the seat is not kept for the session, and is back
            # before the client can see the answer
            self.release()
        await self._send(message)

    def release(self) -> None:
        """Give the seat back, once (the app may end without answering)."""
        if self._slot is not None:
            slot, self._slot = self._slot, None
            slot.release()


async def _refuse_http(scope: Scope, send: Send, shed: Rejected, gate: str) -> None:
    status, headers, body = shed_response(shed, gate=gate, instance=scope["path"])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _refuse_websocket(scope: Scope, send: Send, shed: Rejected, gate: str) -> None:
    if "websocket.http.response" in scope.get("extensions", {}):
        status, headers, body = shed_response(shed, gate=gate, instance=scope["path"])
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        reason = f"{shed.level} shed: {shed.reason.value}"
        await send({"type": "websocket.close", "code": 1013, "reason": reason})


def _state(scope: Scope) -> MutableMapping[str, Any]:
    state = scope.get("state")
    if state is None:
        state = scope["state"] = {}
    return state


def _strip(prefix: str) -> str:
    return prefix.rstrip("/") or "/"


def _under(path: str, prefix: str) -> bool:
    """``path`` is ``prefix`` or below it, by whole segments."""
    if prefix == "/":
        return True
    return path == prefix or (path.startswith(prefix) and path[len(prefix)] == "/")


def _default_gate(policy: Policy, gate: str | None) -> str:
    if gate is not None:
        policy.gate(gate)  # raises ConfigError naming the defined gates
        return gate
    if len(policy.gates) == 1:
        return next(iter(policy.gates))
    defined = ", ".join(repr(name) for name in policy.gates) or "none"
    raise ConfigError(
        [
            Problem(
                "gate",
                f"the policy has {len(policy.gates)} gates ({defined}); "
                "name the one requests go through with gate=NAME",
            )
        ],
        source="PriorityMiddleware",
    )


def _route_problems(policy: Policy, prefix: object, name: object) -> list[Problem]:
    out: list[Problem] = []
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        out.append(Problem(f"routes[{prefix!r}]", "a route is a path prefix starting with '/'"))
    if not isinstance(name, str) or name not in policy.gates:
        defined = ", ".join(repr(g) for g in policy.gates) or "none"
        hint = did_you_mean(name, policy.gates) if isinstance(name, str) else ""
        out.append(
            Problem(f"routes[{prefix!r}]", f"no gate {name!r}; {hint}gates defined: {defined}")
        )
    return out
