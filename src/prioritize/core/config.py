"""The whole policy: levels, gates, classification rules and trust, checked as one.

`parse_policy` takes a mapping already read from TOML (or built in code) and
returns a `Policy`; reading files is `prioritize.config`'s job, so this stays
pure. Validation is the point: the parser walks the entire mapping, collects
a `Problem` for everything wrong (wrong type, unknown key with a did-you-mean,
unknown level name, out-of-range value) and raises a single `ConfigError`, so
a user fixes a file in one pass instead of one error per run.

Each object also checks itself (`GatePolicy`, `Rule`, `Classifier`,
`TrustPolicy`); the parser only checks what the raw TOML can get wrong before
those objects exist — types, keys, names — and lets them own the rest, so a
rule such as "min ≤ max" lives in one place. TOML booleans are never accepted
where a number is expected, although Python treats ``True`` as ``1``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TypeGuard, TypeVar, final

from ..adaptive.spec import AdaptiveSpec, parse_adaptive
from ..errors import ConfigError, Problem, did_you_mean, show, unknown_key
from .budget_policy import BudgetPolicy, parse_budgets
from .classify import (
    Classifier,
    Rule,
    TrustPolicy,
    _level_problems,
    _unknown_name,
    _unreachable,
)
from .levels import DEFAULT_LEVELS, Level, LevelSet
from .policy import DEFAULT_MAX_WAIT, DEFAULT_QUEUE, GatePolicy, LevelPolicy, Order, Percent
from .process_policy import ProcessPolicy, parse_processes

__all__ = ["Policy", "parse_policy"]

_T = TypeVar("_T")


@final
@dataclass(frozen=True, slots=True, repr=False)
class Policy:
    """Everything one service enforces: level set, default level, gates, rules, trust.

    Gates are keyed by name and share the policy's level set (a `GatePolicy`
    given with another name or level set is rebuilt with these). ``simulate``
    is the raw ``[simulate]`` table, passed through for the simulator to check.
    ``source`` says where the policy came from, for messages. ``adaptive``
    holds the limit controller of each gate whose capacity is adaptive (the
    gate's own capacity is then the controller's ``initial`` limit).
    Construction raises one `ConfigError` listing every problem.
    """

    levels: LevelSet = DEFAULT_LEVELS
    default_level: Level = DEFAULT_LEVELS["normal"]
    gates: Mapping[str, GatePolicy] = field(default_factory=dict, hash=False)
    rules: tuple[Rule, ...] = ()
    trust: TrustPolicy = field(default_factory=TrustPolicy)
    simulate: Mapping[str, object] = field(default_factory=dict, hash=False)
    source: str = "<code>"
    adaptive: Mapping[str, AdaptiveSpec] = field(default_factory=dict, hash=False)
    processes: ProcessPolicy = field(default_factory=ProcessPolicy)
    budgets: Mapping[str, BudgetPolicy] = field(default_factory=dict, hash=False)
    _classifier: Classifier = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        problems: list[Problem] = []
        gates: dict[str, GatePolicy] = {}
        for name, gate in self.gates.items():
            try:
                same = gate.name == name and gate.level_set == self.levels
                gates[name] = gate if same else replace(gate, name=name, level_set=self.levels)
            except ConfigError as exc:
                problems.extend(exc.problems)
        for name, spec in self.adaptive.items():
            if name not in gates:
                problems.append(Problem(_join("gates", name), "an adaptive capacity for no gate"))
            elif gates[name].capacity != spec.initial:
                gates[name] = spec.gate(gates[name])
        try:
            classifier = Classifier(self.rules, self.default_level, self.levels)
        except ConfigError as exc:
            problems.extend(exc.problems)
        if problems:
            raise ConfigError(problems)
        object.__setattr__(self, "gates", MappingProxyType(gates))
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "simulate", MappingProxyType(dict(self.simulate)))
        object.__setattr__(self, "adaptive", MappingProxyType(dict(self.adaptive)))
        object.__setattr__(self, "_classifier", classifier)

    def gate(self, name: str) -> GatePolicy:
        """The gate called ``name``; `ConfigError` naming the defined gates if there is none."""
        gate = self.gates.get(name)
        if gate is None:
            defined = ", ".join(repr(g) for g in self.gates) or "none"
            hint = did_you_mean(name, self.gates)
            message = f"no such gate in {self.source}; {hint}gates defined: {defined}"
            raise ConfigError([Problem(_join("gates", name), message)])
        return gate

    def classifier(self) -> Classifier:
        """The `Classifier` for these rules and default level (built once, at construction)."""
        return self._classifier

    def __repr__(self) -> str:
        return (
            f"<Policy from {self.source}: {len(self.levels)} levels, "
            f"gates {list(self.gates)}, {len(self.rules)} rules>"
        )


def parse_policy(data: Mapping[str, object], source: str = "<dict>") -> Policy:
    """Check a policy table, as read from TOML, and build the `Policy`.

    Raises one `ConfigError` whose ``problems`` name every key path at fault.
    The schema; every key is optional unless marked::

        levels = ["critical", "high", "normal", "low", "bulk"]  # most important first
        default_level = "normal"        # default: the middle level
        [gates.api]
        capacity = 64                   # required: seats, a whole number ≥ 1
        order = "strict"                # or "weighted"
        queue = 1000                    # most requests waiting, all levels together
        [gates.api.levels.critical]     # knobs of one level; see docs/concepts.md
        min = "40%"                     # min and max: a whole number or "N%" of capacity
        max = 10
        weight = 4                      # > 0
        queue = 100                     # most requests of this level waiting
        max_wait = 5.0                  # seconds, 0 = never wait, inf allowed
        [[rules]]                       # tried in order, first match wins
        level = "critical"              # required
        path_prefix = "/payments"       # whole segments
        path = "/api/*/export"          # * within a segment, ** across
        method = ["POST", "PUT"]        # method, tenant, plan: a string or a list
        headers = { x-kind = "export" } # a value, a list of values, or "*" (present)
        tenant = "acme"
        plan = "free"
        [trust]
        priority_header = "x-priority"
        trusted_networks = ["10.0.0.0/8"]
        signed_header = "x-priority-token"
        secret_env = ["PRIORITY_SECRET", "PRIORITY_SECRET_OLD"]  # names only; first signs
        token_ttl = 30                  # seconds, > 0: tokens this service signs
        max_token_ttl = 300             # seconds, ≥ token_ttl: longer-lived tokens are refused
        trusted_proxies = ["10.1.0.0/16"]  # whose X-Forwarded-For is believed
        [simulate]                      # passed through; the simulator checks it
        [processes]                     # child processes per level; see docs/processes.md
        cgroup = "/sys/fs/cgroup/app"   # delegated cgroup v2 dir (default: own, if writable)
        strict = false                  # true: a priority not applied raises, not warns
        defaults = true                 # false: unlisted levels run as the service does
        [processes.levels.bulk]         # nice -20..19, ionice "idle"/"best-effort:N"/
        nice = 19                       #   "realtime:N" (N 0..7), cpu_weight 1..10000
        ionice = "idle"
        [budgets.openai]                # a rate shared between levels; see docs/llm.md
        rpm = 500                       # rpm, tpm or both; burst, order, queue, backoff, recovery
        tpm = 200000
        [budgets.openai.levels.critical] # min and max: "N%" of the rate; weight, queue, max_wait
        min = "40%"
    """
    report = _Report()
    top = report.table(data, "", _TOP_KEYS)
    if top is None:
        raise ConfigError(report.problems)
    levels = _parse_levels(top.get("levels"), report)
    default = _parse_default(top.get("default_level"), levels, report)
    adaptive: dict[str, AdaptiveSpec] = {}
    gates = {
        name: gate
        for name, raw in (report.table(top.get("gates", {}), "gates", None) or {}).items()
        if (gate := _parse_gate(name, raw, levels, report, adaptive)) is not None
    }
    rules = _parse_rules(top.get("rules"), levels, report)
    trust = _parse_trust(top.get("trust"), report)
    simulate = report.table(top.get("simulate", {}), "simulate", None)
    processes = parse_processes(top.get("processes"), levels, report)
    budgets = parse_budgets(top.get("budgets"), levels, report)
    if report.problems or levels is None or default is None or trust is None or simulate is None:
        raise ConfigError(report.problems)
    return Policy(
        levels, default, gates, tuple(rules), trust, simulate, source, adaptive, processes, budgets
    )


_TOP_KEYS = (
    "budgets",
    "default_level",
    "gates",
    "levels",
    "processes",
    "rules",
    "simulate",
    "trust",
)
_GATE_KEYS = ("capacity", "levels", "order", "queue")
_LEVEL_KEYS = ("max", "max_wait", "min", "queue", "weight")
_RULE_KEYS = ("headers", "level", "method", "path", "path_prefix", "plan", "tenant")
_TRUST_KEYS = (
    "max_token_ttl",
    "priority_header",
    "secret_env",
    "signed_header",
    "token_ttl",
    "trusted_networks",
    "trusted_proxies",
)
#: Keys a user might try for the secret itself, which never belongs in the file.
_SECRET_KEYS = ("key", "secret", "secret_key", "secrets")
_NO_SECRETS_IN_FILE = (
    "secrets never go in the policy file; put each in an environment variable "
    "and list the variables' names in secret_env, e.g. secret_env = ['PRIORITY_SECRET']"
)
#: `Rule` field name -> the TOML key it comes from, to report problems where the user wrote them
_RULE_FIELD_KEYS = {"methods": "method", "tenants": "tenant", "plans": "plan"}
_ORDERS = frozenset(o.value for o in Order)
_COUNT = "a whole number ≥ 0"
_SECONDS = "a number of seconds ≥ 0 (or inf)"
_POSITIVE_SECONDS = "a number of seconds > 0"
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _parse_levels(raw: object, report: _Report) -> LevelSet | None:
    if raw is None:
        return DEFAULT_LEVELS
    if not isinstance(raw, list) or not all(isinstance(name, str) for name in raw):
        report.bad("levels", raw, "a list of level names like ['critical', 'normal', 'bulk']")
        return None
    try:
        return LevelSet(raw)
    except ConfigError as exc:
        report.problems.extend(Problem("levels", p.message) for p in exc.problems)
        return None


def _parse_default(raw: object, levels: LevelSet | None, report: _Report) -> Level | None:
    if levels is None:
        return None
    if raw is None:
        return levels[len(levels) // 2]
    if isinstance(raw, str) and raw in levels:
        return levels[raw]
    report.add("default_level", _unknown_name("level", raw, levels.names))
    return None


def _parse_gate(
    name: str,
    raw: object,
    levels: LevelSet | None,
    report: _Report,
    adaptive: dict[str, AdaptiveSpec],
) -> GatePolicy | None:
    path = _join("gates", name)
    table = report.table(raw, path, _GATE_KEYS)
    if table is None:
        return None
    if "capacity" not in table:
        report.add(f"{path}.capacity", "missing; every gate needs a capacity: a whole number ≥ 1")
    capacity: int | None
    if isinstance(table.get("capacity"), Mapping):  # capacity = { adaptive = "gradient", ... }
        try:
            spec = adaptive[name] = parse_adaptive(table["capacity"], f"{path}.capacity")
            capacity = spec.initial
        except ConfigError as exc:
            report.problems.extend(exc.problems)
            capacity = None
    else:
        capacity = report.get(table, "capacity", path, "a whole number ≥ 1", _is_seats)
    order = report.get(table, "order", path, "one of 'strict', 'weighted'", _is_order)
    queue = report.get(table, "queue", path, _COUNT, _is_count)
    knobs = _parse_gate_levels(table.get("levels"), f"{path}.levels", levels, report)
    if capacity is None or levels is None:
        return None
    try:
        # Knobs that failed their own checks were left out, so any problem found
        # here (min > max, the mins exceed capacity) is real, not a consequence.
        return GatePolicy(
            capacity=capacity,
            levels=knobs,
            order=Order(order or Order.STRICT),
            queue=DEFAULT_QUEUE if queue is None else queue,
            level_set=levels,
            name=name,
        )
    except ConfigError as exc:
        report.problems.extend(exc.problems)
        return None


def _parse_gate_levels(
    raw: object, path: str, levels: LevelSet | None, report: _Report
) -> dict[str, LevelPolicy]:
    table = report.table({} if raw is None else raw, path, None)
    out: dict[str, LevelPolicy] = {}
    for name, value in (table or {}).items():
        level_path = _join(path, name)
        if levels is not None and name not in levels:
            report.add(level_path, _unknown_name("level", name, levels.names))
            continue
        knobs = report.table(value, level_path, _LEVEL_KEYS)
        if knobs is None:
            continue
        low = report.quantity(knobs, "min", level_path)
        high = report.quantity(knobs, "max", level_path)
        weight = report.get(knobs, "weight", level_path, "a number > 0", _is_weight)
        queue = report.get(knobs, "queue", level_path, _COUNT, _is_count)
        max_wait = report.get(knobs, "max_wait", level_path, _SECONDS, _is_seconds)
        out[name] = LevelPolicy(
            min=0 if low is None else low,
            max=high,
            weight=1.0 if weight is None else weight,
            queue=queue,
            max_wait=DEFAULT_MAX_WAIT if max_wait is None else max_wait,
        )
    return out


def _parse_rules(raw: object, levels: LevelSet | None, report: _Report) -> list[Rule]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        report.bad("rules", raw, "an array of tables, written [[rules]]")
        return []
    rules = [(i, _parse_rule(item, i, levels, report)) for i, item in enumerate(raw)]
    built = [(i, rule) for i, rule in rules if rule is not None]
    report.problems.extend(_unreachable(built))
    return [rule for _, rule in built]


def _parse_rule(raw: object, index: int, levels: LevelSet | None, report: _Report) -> Rule | None:
    """The rule, or None if anything in it is wrong.

    Even then the rule is built from the parts that passed, so that its own
    checks (paths, methods, header names) report everything at once.
    """
    path = f"rules[{index}]"
    table = report.table(raw, path, _RULE_KEYS)
    if table is None:
        return None
    before = len(report.problems)
    if "level" not in table:
        report.add(f"{path}.level", "missing; every rule needs a level name")
    level = report.get(table, "level", path, "a level name", _is_str)
    if level is not None and levels is not None:
        report.problems.extend(_level_problems(index, level, levels))
    prefix = report.get(table, "path_prefix", path, "a path like '/payments'", _is_str)
    glob = report.get(table, "path", path, "a path pattern like '/api/*/export'", _is_str)
    methods = frozenset(report.strings(table, "method", path))
    headers = _parse_headers(table.get("headers"), f"{path}.headers", report)
    tenants = frozenset(report.strings(table, "tenant", path))
    plans = frozenset(report.strings(table, "plan", path))
    try:
        rule = Rule(level or "-", prefix, glob, methods, headers, tenants, plans)
    except ConfigError as exc:
        for problem in exc.problems:
            field_name, dot, rest = problem.path.removeprefix("rule.").partition(".")
            key = _RULE_FIELD_KEYS.get(field_name, field_name)
            report.add(f"{path}.{key}{dot}{rest}", problem.message)
        return None
    return rule if len(report.problems) == before else None


def _parse_headers(raw: object, path: str, report: _Report) -> dict[str, str | tuple[str, ...]]:
    table = report.table({} if raw is None else raw, path, None)
    out: dict[str, str | tuple[str, ...]] = {}
    for name, value in (table or {}).items():
        if isinstance(value, str):
            out[name] = value
        elif _is_strings(value) and value:
            out[name] = tuple(value)
        else:
            accepted = "a header value, a list of values, or '*' for any value"
            report.bad(_join(path, name), value, accepted)
    return out


def _parse_trust(raw: object, report: _Report) -> TrustPolicy | None:
    table = report.table({} if raw is None else raw, "trust", None)
    if table is None:
        return None
    before = len(report.problems)
    for key in table:
        if key in _SECRET_KEYS:
            report.add(_join("trust", key), _NO_SECRETS_IN_FILE)
        elif key not in _TRUST_KEYS:
            report.add(_join("trust", key), unknown_key(key, _TRUST_KEYS))
    header = report.get(table, "priority_header", "trust", "a header name", _is_str)
    signed = report.get(table, "signed_header", "trust", "a header name", _is_str)
    networks = report.strings(table, "trusted_networks", "trust", allow_empty=True)
    proxies = report.strings(table, "trusted_proxies", "trust", allow_empty=True)
    secret_env = report.strings(table, "secret_env", "trust", allow_empty=True)
    ttl = report.get(table, "token_ttl", "trust", _POSITIVE_SECONDS, _is_positive_seconds)
    max_ttl = report.get(table, "max_token_ttl", "trust", _POSITIVE_SECONDS, _is_positive_seconds)
    ttl, max_ttl = _stand_in_ttls(table, ttl, max_ttl)
    default = TrustPolicy()
    try:
        trust = TrustPolicy(
            priority_header=default.priority_header if header is None else header,
            trusted_networks=networks,
            signed_header=default.signed_header if signed is None else signed,
            secret_env=secret_env,
            token_ttl=ttl,
            max_token_ttl=max_ttl,
            trusted_proxies=proxies,
        )
    except ConfigError as exc:
        report.problems.extend(exc.problems)
        return None
    return trust if len(report.problems) == before else None


def _stand_in_ttls(
    table: Mapping[str, object], ttl: float | None, max_ttl: float | None
) -> tuple[float, float]:
    """The two ttls, with defaults for those absent or wrong (already reported).

    What stands in for a wrong value must not clash with the other ttl: that
    would report a consequence of the mistake as a second mistake. An absent
    value gets the plain default, so a real clash is still reported.
    """
    default = TrustPolicy()
    if ttl is None:
        ttl = default.token_ttl
        if "token_ttl" in table and max_ttl is not None:
            ttl = min(ttl, max_ttl)
    if max_ttl is None:
        max_ttl = default.max_token_ttl
        if "max_token_ttl" in table:
            max_ttl = max(max_ttl, ttl)
    return ttl, max_ttl


class _Report:
    """Collects problems while walking the raw policy, so that all are reported at once.

    Each getter returns the typed value, or None if it is absent or wrong (and
    then records why), so the walk carries on past every mistake.
    """

    __slots__ = ("problems",)

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def bad(self, path: str, value: object, accepted: str) -> None:
        self.add(path, f"{show(value)} is not {accepted}")

    def table(
        self, value: object, path: str, keys: tuple[str, ...] | None
    ) -> Mapping[str, object] | None:
        """``value`` as a table; with ``keys``, report every key not among them."""
        if not isinstance(value, Mapping):
            self.bad(path, value, "a table")
            return None
        for key in value:
            if keys is not None and key not in keys:
                self.add(_join(path, key), unknown_key(key, keys))
        return value

    def get(
        self,
        table: Mapping[str, object],
        key: str,
        path: str,
        accepted: str,
        is_valid: Callable[[object], TypeGuard[_T]],
    ) -> _T | None:
        value = table.get(key)
        if value is None or is_valid(value):
            return value
        self.bad(f"{path}.{key}", value, accepted)
        return None

    def quantity(self, table: Mapping[str, object], key: str, path: str) -> int | str | None:
        value = table.get(key)
        if value is None or _is_count(value):
            return value
        percent = _percent(value)
        if isinstance(value, str) and percent is not None and percent <= 100:
            return value
        accepted = "a whole number ≥ 0 or a percentage like '40%'"
        if percent is not None:
            accepted = "a percentage from 0% to 100%"
        self.bad(f"{path}.{key}", value, accepted)
        return None

    def strings(
        self, table: Mapping[str, object], key: str, path: str, *, allow_empty: bool = False
    ) -> tuple[str, ...]:
        """A string or a list of strings; an empty list is refused unless ``allow_empty``.

        Refused because an empty list of methods would read as "none of these"
        while an absent matcher means "any".
        """
        value = table.get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if _is_strings(value) and (value or allow_empty):
            return tuple(value)
        empty = "" if allow_empty else "non-empty "
        self.bad(f"{path}.{key}", value, f"a string or a {empty}list of strings")
        return ()


def _join(path: str, key: str) -> str:
    """Append ``key`` to a dotted path, quoted as TOML would if it is not a bare key."""
    text = key if _BARE_KEY.match(str(key)) else json.dumps(key)
    return f"{path}.{text}" if path else text


def _is_whole(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_strings(value: object) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _percent(value: object) -> float | None:
    try:
        return Percent.parse(value).value if isinstance(value, str) else None
    except ValueError:
        return None


def _is_str(value: object) -> TypeGuard[str]:
    return isinstance(value, str)


def _is_seats(value: object) -> TypeGuard[int]:
    return _is_whole(value) and value >= 1


def _is_count(value: object) -> TypeGuard[int]:
    return _is_whole(value) and value >= 0


def _is_order(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and value in _ORDERS


def _is_weight(value: object) -> TypeGuard[float]:
    return _is_number(value) and math.isfinite(value) and value > 0


def _is_positive_seconds(value: object) -> TypeGuard[float]:
    return _is_number(value) and math.isfinite(value) and value > 0


def _is_seconds(value: object) -> TypeGuard[float]:
    return _is_number(value) and value >= 0  # False for NaN; inf: wait as long as it takes
