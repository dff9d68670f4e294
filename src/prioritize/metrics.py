"""Prometheus metrics of every gate: seats, queues, waits, service times and sheds, per level.

`GateMetrics` is a custom collector. It reads ``stats()`` of the gates added
to it when Prometheus scrapes, never on the request path: the scheduler
already keeps the counters and histograms, so serving a request costs
nothing more with metrics on. Anything whose ``stats()`` returns a
`GateStats` can be added: `Gate`, `Scheduler`, `PriorityThreadPoolExecutor`,
`PriorityQueue`, `ThreadPriorityQueue`, or an adapter of your own::

    from prioritize.metrics import metrics_app, register

    register(gate)  # into prometheus_client's default registry
    routes = [Route("/metrics", metrics_app())]  # Starlette; any ASGI router will do

`metrics_app` serves a registry over ASGI with prometheus_client's own
exposition. The metric names, the histogram buckets and example queries and
alert rules are in docs/metrics.md.

A scrape calls ``stats()`` on the scraper's thread. The thread executor and
the thread queue take their lock for it; an asyncio `Gate` or `PriorityQueue`
must be scraped from its own event loop, so serve `metrics_app` from the same
ASGI server as the gates, not from ``prometheus_client.start_http_server``'s
thread.

Requires the ``metrics`` extra: ``pip install 'prioritize[metrics]'``.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from typing import Protocol, final

try:
    from prometheus_client import REGISTRY, CollectorRegistry, make_asgi_app
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.utils import floatToGoString
except ImportError as exc:
    raise ImportError(
        "prioritize.metrics needs prometheus-client; install it with "
        "pip install 'prioritize[metrics]'"
    ) from exc

from .core.stats import BUCKET_BOUNDS, GateStats, LevelStats, WaitSummary
from .core.tickets import Reason

__all__ = [
    "GateMetrics",
    "HttpMetrics",
    "StatsSource",
    "metrics_app",
    "register",
    "register_middleware",
    "unregister",
]

Scope = MutableMapping[str, object]
Message = MutableMapping[str, object]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: prometheus_client's float formatting for ``le`` (the library leaves it unannotated)
_go_float: Callable[[float], str] = floatToGoString
#: ``le`` labels of the histogram buckets, +Inf last
_LE = (*(_go_float(bound) for bound in BUCKET_BOUNDS), "+Inf")
#: the reasons a gate sheds for (``throttled`` is a client's own refusal, never a gate's)
_GATE_REASONS = tuple(reason for reason in Reason if reason is not Reason.THROTTLED)

_GATE = ("gate",)
_LEVEL = ("gate", "level")


class StatsSource(Protocol):
    """Anything that reports one gate's `GateStats`: what `GateMetrics` exports."""

    def stats(self) -> GateStats: ...


@final
class _Families:
    """The metric families of one scrape, filled gate by gate."""

    def __init__(self) -> None:
        self.requests = CounterMetricFamily(
            "prioritize_requests",
            "Requests that reached an outcome, by level: granted a seat (for a queue: "
            "handed to a consumer), shed, or cancelled while waiting.",
            labels=(*_LEVEL, "outcome"),
        )
        self.shed = CounterMetricFamily(
            "prioritize_shed",
            "Requests shed, by level and reason: queue_full, evicted, timeout, limit, shutdown.",
            labels=(*_LEVEL, "reason"),
        )
        self.wait = HistogramMetricFamily(
            "prioritize_wait_seconds",
            "Time granted requests waited for their seat, from submit to grant.",
            labels=_LEVEL,
            unit="seconds",
        )
        self.service = HistogramMetricFamily(
            "prioritize_service_seconds",
            "Time seats were held, from grant to release.",
            labels=_LEVEL,
            unit="seconds",
        )
        self.in_use = GaugeMetricFamily(
            "prioritize_seats_in_use", "Seats held now, by level.", labels=_LEVEL
        )
        self.waiting = GaugeMetricFamily(
            "prioritize_waiting", "Requests waiting for a seat now, by level.", labels=_LEVEL
        )
        self.capacity = GaugeMetricFamily(
            "prioritize_capacity", "Seats the gate has now.", labels=_GATE
        )
        self.seats_min = GaugeMetricFamily(
            "prioritize_seats_min",
            "Seats reserved for the level: its min, resolved for the current capacity.",
            labels=_LEVEL,
        )
        self.seats_max = GaugeMetricFamily(
            "prioritize_seats_max",
            "Most seats the level may hold: its max, resolved for the current capacity.",
            labels=_LEVEL,
        )

    def add(self, gate: str, stats: GateStats) -> None:
        self.capacity.add_metric((gate,), stats.capacity)
        for level in stats.levels:
            self._add_level(gate, level)

    def _add_level(self, gate: str, level: LevelStats) -> None:
        labels = (gate, level.level)
        self.requests.add_metric((*labels, "granted"), level.granted)
        self.requests.add_metric((*labels, "shed"), level.shed_total)
        self.requests.add_metric((*labels, "cancelled"), level.cancelled)
        for reason in _GATE_REASONS:  # zeros too: rate() needs the series from the start
            self.shed.add_metric((*labels, reason.value), level.shed.get(reason, 0))
        self.wait.add_metric(labels, _buckets(level.wait), level.wait.total)
        self.service.add_metric(labels, _buckets(level.service), level.service.total)
        self.in_use.add_metric(labels, level.in_use)
        self.waiting.add_metric(labels, level.waiting)
        self.seats_min.add_metric(labels, level.min)
        self.seats_max.add_metric(labels, level.max)

    def __iter__(self) -> Iterator[Metric]:
        yield self.requests
        yield self.shed
        yield self.wait
        yield self.service
        yield self.in_use
        yield self.waiting
        yield self.capacity
        yield self.seats_min
        yield self.seats_max


def _buckets(summary: WaitSummary) -> list[tuple[str, float]]:
    return list(zip(_LE, (*summary.cumulative, summary.count), strict=True))


@final
class GateMetrics:
    """A Prometheus collector of the gates added to it, read at scrape time.

    It registers itself with ``registry`` (prometheus_client's default
    registry unless told otherwise; ``None``: register it yourself), as
    prometheus_client's own metrics do. Each gate is exported under a name,
    the ``gate`` label: its policy's name unless `add` is given another.
    The collector holds the gates it exports until they are removed.
    Thread-safe.
    """

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        self._lock = threading.Lock()
        #: replaced, never changed in place, so a scrape iterates a stable dict unlocked
        self._gates: dict[str, StatsSource] = {}
        if registry is not None:
            try:
                registry.register(self)
            except ValueError as exc:
                raise ValueError(
                    "this registry already has a collector exporting prioritize_* metrics "
                    "(another GateMetrics, or prioritize.metrics.register()'s); add the gates "
                    "to that one, or give this one another registry"
                ) from exc

    @property
    def names(self) -> list[str]:
        """The ``gate`` labels exported, in the order the gates were added."""
        return list(self._gates)

    def add(self, gate: StatsSource, name: str | None = None) -> str:
        """Export ``gate`` under ``name`` (default: its policy's name); returns the name.

        Raises `TypeError` for an object without a ``stats()`` returning
        `GateStats`, and `ValueError` for a name already exported (two
        gates of one name would be one series) or for the same gate twice.
        """
        stats = _check_source(gate)
        if name is None:
            name = stats.name
        if not isinstance(name, str) or not name:
            raise ValueError(f"a gate's name must be a non-empty string, not {name!r}")
        with self._lock:
            taken = self._gates.get(name)
            if taken is not None:
                raise ValueError(
                    f"a gate named {name!r} is exported already ({taken!r}); "
                    f"export {gate!r} under another name: add(gate, name=...)"
                )
            for other_name, other in self._gates.items():
                if other is gate:
                    raise ValueError(f"{gate!r} is exported already, as {other_name!r}")
            self._gates = {**self._gates, name: gate}
        return name

    def remove(self, gate: StatsSource | str) -> None:
        """Stop exporting a gate, given as itself or by its name; `KeyError` if not exported."""
        with self._lock:
            if isinstance(gate, str):
                name: str | None = gate if gate in self._gates else None
            else:
                name = next((n for n, g in self._gates.items() if g is gate), None)
            if name is None:
                raise KeyError(
                    f"{gate!r} is not exported by this GateMetrics; exported: {list(self._gates)}"
                )
            self._gates = {n: g for n, g in self._gates.items() if n != name}

    def describe(self) -> list[Metric]:
        """The metric families, empty: the registry checks their names against others'."""
        return list(_Families())

    def collect(self) -> Iterator[Metric]:
        """Every exported gate's stats, read now (called by the registry at each scrape)."""
        families = _Families()
        for name, gate in self._gates.items():
            families.add(name, gate.stats())
        yield from families

    def __repr__(self) -> str:
        return f"<GateMetrics {len(self._gates)} gates: {', '.join(self._gates) or '-'}>"


def _check_source(gate: object) -> GateStats:
    """The gate's stats now, or `TypeError` saying why it cannot be exported."""
    read = getattr(gate, "stats", None)
    if not callable(read):
        raise TypeError(
            f"cannot export {gate!r}: it has no stats() method; GateMetrics exports a Gate, "
            "Scheduler, PriorityThreadPoolExecutor, PriorityQueue, ThreadPriorityQueue or "
            "anything whose stats() returns a GateStats"
        )
    stats = read()
    if not isinstance(stats, GateStats):
        raise TypeError(
            f"cannot export {gate!r}: its stats() returned {type(stats).__name__}, not a GateStats"
        )
    return stats


@final
class _Default:
    """The module's own `GateMetrics` in the default registry, made on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.metrics: GateMetrics | None = None

    def get(self) -> GateMetrics:
        with self._lock:
            if self.metrics is None:
                self.metrics = GateMetrics(REGISTRY)
            return self.metrics


_default = _Default()


def register(gate: StatsSource, name: str | None = None) -> str:
    """Export ``gate`` in prometheus_client's default registry; returns its ``gate`` label.

    The module keeps one `GateMetrics` there, made on first use. Arguments
    and errors are those of `GateMetrics.add`.
    """
    return _default.get().add(gate, name)


def unregister(gate: StatsSource | str) -> None:
    """Stop exporting a gate that `register` exported; `KeyError` if it did not."""
    metrics = _default.metrics
    if metrics is None:
        raise KeyError(f"{gate!r} is not exported: prioritize.metrics.register() was never called")
    metrics.remove(gate)


class MiddlewareSource(Protocol):
    """What `HttpMetrics` reads of a `PriorityMiddleware`."""

    @property
    def gates(self) -> Mapping[str, StatsSource]: ...

    ignored_headers: Mapping[str, int]
    abandoned: int


#: why a priority header is ignored (`TrustDecision.ignored`), each exported from zero
_IGNORED_REASONS = ("malformed", "forged", "expired")


@final
class HttpMetrics:
    """A collector of what the HTTP middleware counts besides its gates' stats.

    ``prioritize_http_priority_headers_ignored_total{reason}``: priority
    tokens that were malformed, forged or expired — a rising ``forged`` is
    someone trying to jump the queue, a rising ``expired`` a clock or
    token-lifetime problem between services. ``prioritize_http_abandoned_total``:
    requests whose client disconnected while they waited for a seat (the
    client gave up before the service could answer: waits too long for it).
    """

    def __init__(self, middleware: MiddlewareSource, registry: CollectorRegistry | None = REGISTRY):
        self.middleware = middleware
        if registry is not None:
            registry.register(self)

    def describe(self) -> list[Metric]:
        return list(self.collect())

    def collect(self) -> Iterator[Metric]:
        ignored = CounterMetricFamily(
            "prioritize_http_priority_headers_ignored",
            "Priority tokens ignored because they were malformed, forged or expired.",
            labels=["reason"],
        )
        counts = self.middleware.ignored_headers
        for reason in _IGNORED_REASONS:
            ignored.add_metric([reason], counts.get(reason, 0))
        yield ignored
        abandoned = CounterMetricFamily(
            "prioritize_http_abandoned",
            "Requests whose client disconnected while they waited for a seat.",
        )
        abandoned.add_metric([], self.middleware.abandoned)
        yield abandoned

    def __repr__(self) -> str:
        return f"<HttpMetrics of {self.middleware!r}>"


def register_middleware(middleware: MiddlewareSource) -> HttpMetrics:
    """Export a `PriorityMiddleware` in the default registry: its gates, then its own counters.

    Each gate is exported under its name in the policy (as `register`);
    returns the collector of the middleware's counters. For another
    registry, add the gates to a `GateMetrics` of that registry and make an
    `HttpMetrics` there.
    """
    for name, gate in middleware.gates.items():
        register(gate, name)
    return HttpMetrics(middleware, REGISTRY)


def metrics_app(registry: CollectorRegistry = REGISTRY) -> ASGIApp:
    """An ASGI app answering each HTTP request with ``registry``'s metrics.

    prometheus_client's exposition: the text format, OpenMetrics when the
    scraper asks for it, gzip when accepted, ``name[]`` filters. Route it at
    ``/metrics`` (it answers on any path it is given): an object, not a
    function, so routers such as Starlette's ``Route`` take it as an ASGI app
    rather than a request handler. It also completes the ASGI lifespan
    handshake, so it runs on its own under any server.
    """
    return _MetricsApp(registry)


@final
class _MetricsApp:
    __slots__ = ("_exposition", "registry")

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._exposition = make_asgi_app(registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "http":
            await self._exposition(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)
        else:
            raise TypeError(f"metrics_app serves HTTP, not {kind!r} connections")

    def __repr__(self) -> str:
        return f"<metrics_app of {self.registry!r}>"


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop: acknowledge both."""
    while True:
        message = await receive()
        if message.get("type") == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message.get("type") == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
