"""Classification: which level a request belongs to, and how far a caller may move it.

HTTP middleware, job queues and the CLI describe a request the same way (a
`RequestInfo`) so one list of `Rule` objects classifies all of them. The
first matching rule gives the level; no match gives the default level.

Then the trust rule (docs/concepts.md): a client-sent priority is an escalation
vector, so a ``requested`` level from an untrusted caller may only *lower*
the priority; a trusted caller's request replaces the rule's level. Whether a
caller is trusted (signed header, trusted network) is decided by
`TrustPolicy.decide` (defined in `prioritize.core.trust`, re-exported here),
which the adapter calls before building the `RequestInfo`.
A requested name that is not a level is ignored, never an error: it comes
from clients, and a typo in a header must not fail their request.

Path patterns are translated by hand rather than with `fnmatch`, whose ``*``
crosses ``/``: here ``*`` and ``?`` stay within one path segment and ``**``
crosses segments, as in most routers and gitignore.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import final

from ..errors import ConfigError, Problem, UnknownLevelError, did_you_mean
from .levels import DEFAULT_LEVELS, Level, LevelSet
from .trust import TrustDecision, TrustPolicy

__all__ = [
    "Classification",
    "Classifier",
    "LowercaseHeaders",
    "RequestInfo",
    "Rule",
    "TrustDecision",
    "TrustPolicy",
]

#: RFC 9110 token: what an HTTP method or a header name may be made of.
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


@final
@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What the rules may look at in a request: an HTTP request, a job or a CLI query.

    ``path`` is without the query string. Header names are matched
    case-insensitively (they are stored lowercased); values are compared
    exactly after stripping surrounding whitespace. ``requested`` is the level
    name the caller asked for (e.g. from an ``X-Priority`` header) and
    ``trusted`` says whether the adapter verified the caller may raise it.
    """

    method: str = "GET"
    path: str = "/"
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)
    tenant: str | None = None
    plan: str | None = None
    requested: str | None = None
    trusted: bool = False

    def __post_init__(self) -> None:
        if not self.method.isupper():
            object.__setattr__(self, "method", self.method.upper())
        headers = self.headers
        if type(headers) is not LowercaseHeaders:  # an adapter's own is trusted as it is
            headers = MappingProxyType({name.lower(): value for name, value in headers.items()})
        object.__setattr__(self, "headers", headers)


@final
class LowercaseHeaders(dict[str, str]):
    """Headers whose names an adapter has already lowercased (ASGI servers send them so).

    `RequestInfo` takes these as they are instead of copying and lowercasing
    every name, which is most of its cost on an HTTP request's hot path.
    """

    __slots__ = ()


@final
@dataclass(frozen=True, slots=True, repr=False)
class Rule:
    """Requests matching every given matcher (AND) belong to ``level``.

    ``path_prefix`` matches whole segments: ``/payments`` matches
    ``/payments`` and ``/payments/42`` but not ``/payments-admin``. ``path``
    is a glob: ``*`` and ``?`` within one segment, ``**`` across segments
    (``/api/**`` also matches ``/api``; ``/a/**/b`` also matches ``/a/b``).
    Paths match case-sensitively. ``methods`` are compared uppercase. A
    ``headers`` value is one accepted value, a tuple of them, or ``"*"`` for
    "present with any value". Empty ``methods``, ``tenants`` or ``plans``
    accept anything; a rule with no matcher at all matches every request,
    which makes it a catch-all (it must then be the last rule).

    Raises `ConfigError` naming every malformed matcher.
    """

    level: str
    path_prefix: str | None = None
    path: str | None = None
    methods: frozenset[str] = frozenset()
    headers: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict, hash=False)
    tenants: frozenset[str] = frozenset()
    plans: frozenset[str] = frozenset()
    _glob: re.Pattern[str] | None = field(init=False, default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "methods", frozenset(m.upper() for m in _as_set(self.methods)))
        set_(self, "tenants", _as_set(self.tenants))
        set_(self, "plans", _as_set(self.plans))
        headers = {
            name.lower(): tuple(value) if isinstance(value, list) else value
            for name, value in self.headers.items()
        }
        set_(self, "headers", MappingProxyType(headers))
        problems = self.problems()
        if problems:
            raise ConfigError(problems)
        if self.path is not None:
            set_(self, "_glob", re.compile(_glob_to_regex(self.path)))

    @property
    def is_catch_all(self) -> bool:
        """True if the rule has no matcher, so it matches every request."""
        matchers = (
            self.path_prefix,
            self.path,
            self.methods,
            self.headers,
            self.tenants,
            self.plans,
        )
        return not any(matchers)

    def matches(self, req: RequestInfo) -> bool:
        if self.path_prefix is not None and not _has_prefix(req.path, self.path_prefix):
            return False
        if self._glob is not None and self._glob.fullmatch(req.path) is None:
            return False
        if self.methods and req.method not in self.methods:
            return False
        if self.tenants and req.tenant not in self.tenants:
            return False
        if self.plans and req.plan not in self.plans:
            return False
        if not self.headers:  # most rules: no generator built per request
            return True
        return all(_header_matches(req, name, want) for name, want in self.headers.items())

    def problems(self, prefix: str = "rule") -> list[Problem]:
        """Every malformed matcher, each with its key path under ``prefix``."""
        out: list[Problem] = []
        if not isinstance(self.level, str) or not self.level:
            out.append(Problem(f"{prefix}.level", f"{self.level!r} is not a level name"))
        for key in ("path_prefix", "path"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value.startswith("/")):
                out.append(Problem(f"{prefix}.{key}", f"{value!r} is not a path starting with '/'"))
        out.extend(
            Problem(f"{prefix}.methods", f"{m!r} is not an HTTP method name like 'GET' or 'POST'")
            for m in sorted(self.methods)
            if not _TOKEN.match(m)
        )
        for name, want in self.headers.items():
            if not _TOKEN.match(name):
                out.append(Problem(f"{prefix}.headers", f"{name!r} is not a header name"))
            values = want if isinstance(want, tuple) else (want,)
            if not values or not all(isinstance(v, str) and v for v in values):
                out.append(
                    Problem(
                        f"{prefix}.headers.{name}",
                        f"{want!r} is not a header value, a list of them, or '*' for any value",
                    )
                )
        for key in ("tenants", "plans"):
            out.extend(
                Problem(f"{prefix}.{key}", f"{v!r} is not a non-empty string")
                for v in getattr(self, key)
                if not isinstance(v, str) or not v
            )
        return out

    def __repr__(self) -> str:
        parts = [repr(self.level)]
        for key in ("path_prefix", "path", "methods", "headers", "tenants", "plans"):
            value = getattr(self, key)
            if isinstance(value, frozenset) and value:
                parts.append(f"{key}={sorted(value)!r}")
            elif isinstance(value, Mapping) and value:
                parts.append(f"{key}={dict(value)!r}")
            elif isinstance(value, str):
                parts.append(f"{key}={value!r}")
        return f"Rule({', '.join(parts)})"


def _as_set(values: Iterable[str]) -> frozenset[str]:
    # A bare string would otherwise become a set of its characters.
    return frozenset({values}) if isinstance(values, str) else frozenset(values)


def _has_prefix(path: str, prefix: str) -> bool:
    if not path.startswith(prefix):
        return False
    return len(path) == len(prefix) or prefix.endswith("/") or path[len(prefix)] == "/"


def _header_matches(req: RequestInfo, name: str, want: str | tuple[str, ...]) -> bool:
    value = req.headers.get(name)
    if value is None:
        return False
    if want == "*":
        return True
    value = value.strip()
    return value == want if isinstance(want, str) else value in want


def _glob_to_regex(pattern: str) -> str:
    """``**`` crosses ``/``; ``*`` and ``?`` do not; everything else is literal."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        if pattern.startswith("/**/", i):
            out.append("(?:/|/.*/)")  # zero or more whole segments
            i += 4
        elif pattern.startswith("/**", i) and i + 3 == n:
            out.append("(?:/.*)?")  # trailing: the prefix itself or anything below it
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


@final
@dataclass(frozen=True, slots=True)
class Classification:
    """Why a request got its level, for tools and logs (`Classifier.explain`)."""

    level: Level
    #: index of the first matching rule, or None when the default level applied
    rule_index: int | None
    #: the final level is the one the caller requested (a valid name, allowed by trust)
    requested_applied: bool
    #: one line for humans, e.g. "rules[2] matched: level 'critical'"
    reason: str


@final
class Classifier:
    """Maps a `RequestInfo` to a `Level`: first matching rule, else ``default``, then trust.

    Construction checks every rule against ``levels`` and raises one
    `ConfigError` naming each rule (``rules[i]``) with an unknown level and
    each rule made unreachable by an earlier catch-all. ``default`` defaults
    to the middle level of the set.
    """

    __slots__ = ("_by_name", "_default", "_levels", "_rules")

    def __init__(
        self,
        rules: Iterable[Rule] = (),
        default: Level | str | None = None,
        levels: LevelSet = DEFAULT_LEVELS,
    ) -> None:
        self._levels = levels
        self._by_name = {level.name: level for level in levels}
        rules = tuple(rules)
        problems = [
            p for i, rule in enumerate(rules) for p in _level_problems(i, rule.level, levels)
        ]
        problems.extend(_unreachable(enumerate(rules)))
        try:
            self._default = levels[len(levels) // 2] if default is None else levels.resolve(default)
        except UnknownLevelError as exc:
            problems.append(Problem("default_level", str(exc)))
        if problems:
            raise ConfigError(problems)
        self._rules = tuple((rule, levels[rule.level]) for rule in rules)

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(rule for rule, _ in self._rules)

    @property
    def default(self) -> Level:
        return self._default

    @property
    def levels(self) -> LevelSet:
        return self._levels

    def classify(self, req: RequestInfo) -> Level:
        """The level of ``req``. Never raises on anything the client sent."""
        _, level = self._match(req)
        if req.requested is None:
            return level
        asked = self._requested(req.requested)
        if asked is None or not (req.trusted or asked.rank > level.rank):
            return level
        return asked

    def explain(self, req: RequestInfo) -> Classification:
        """Like `classify`, with the rule that matched and the reason, for tools and logs."""
        index, level = self._match(req)
        what = f"rules[{index}] matched" if index is not None else "no rule matched, default"
        reason = f"{what}: level {level.name!r}"
        if req.requested is None:
            return Classification(level, index, False, reason)
        asked = self._requested(req.requested)
        if asked is None:
            note = f"requested {req.requested!r} ignored: not one of {self._levels.names}"
        elif req.trusted:
            note = f"trusted caller requested {asked.name!r}"
        elif asked.rank > level.rank:
            note = f"caller requested {asked.name!r}, which lowers it"
        elif asked == level:
            note = f"caller requested {asked.name!r}, the same level"
        else:
            note = f"requested {asked.name!r} ignored: an untrusted caller may only lower priority"
        final = asked if asked is not None and (req.trusted or asked.rank >= level.rank) else level
        return Classification(final, index, asked == final, f"{reason}; {note}")

    def _match(self, req: RequestInfo) -> tuple[int | None, Level]:
        for index, (rule, level) in enumerate(self._rules):
            if rule.matches(req):
                return index, level
        return None, self._default

    def _requested(self, name: str) -> Level | None:
        return self._by_name.get(name.strip().lower())

    def __repr__(self) -> str:
        return f"<Classifier {len(self._rules)} rules, default {self._default.name}>"


def _level_problems(index: int, name: str, levels: LevelSet) -> list[Problem]:
    if name in levels:
        return []
    return [Problem(f"rules[{index}].level", _unknown_name("level", name, levels.names))]


def _unreachable(rules: Iterable[tuple[int, Rule]]) -> list[Problem]:
    """Rules after a catch-all never match: a mistake in the order, so it is reported.

    Takes ``(index, rule)`` pairs so the parser can leave out rules that failed to build.
    """
    out: list[Problem] = []
    catch_all: int | None = None
    for index, rule in rules:
        if catch_all is not None:
            message = (
                f"never matches: rules[{catch_all}] has no matcher and matches every "
                "request; put a catch-all rule last"
            )
            out.append(Problem(f"rules[{index}]", message))
        elif rule.is_catch_all:
            catch_all = index
    return out


def _unknown_name(kind: str, name: object, valid: Sequence[str]) -> str:
    """``unknown level 'critcal'; did you mean 'critical'? valid levels are [...]``."""
    return f"unknown {kind} {name!r}; {did_you_mean(name, valid)}valid {kind}s are {list(valid)}"
