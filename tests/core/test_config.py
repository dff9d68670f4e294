"""parse_policy: the policy schema, and every way a policy can be wrong, reported at once."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest

from prioritize.core.classify import RequestInfo, Rule, TrustPolicy
from prioritize.core.config import Policy, parse_policy
from prioritize.core.levels import DEFAULT_LEVELS, LevelSet
from prioritize.core.policy import DEFAULT_QUEUE, GatePolicy, LevelPolicy, Order, Percent
from prioritize.errors import ConfigError

LEVEL_NAMES = "['critical', 'high', 'normal', 'low', 'bulk']"


def problems(data: Mapping[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_policy(data)
    return [str(p) for p in info.value.problems]


def gate(**knobs: object) -> dict[str, object]:
    return {"gates": {"api": {"capacity": 10, **knobs}}}


def level(name: str, **knobs: object) -> dict[str, object]:
    return gate(levels={name: knobs})


# --- what a valid policy becomes --------------------------------------------------


def test_empty_policy_has_the_defaults() -> None:
    policy = parse_policy({})
    assert policy.levels == DEFAULT_LEVELS
    assert policy.default_level == DEFAULT_LEVELS["normal"]
    assert dict(policy.gates) == {}
    assert policy.rules == ()
    assert policy.trust == TrustPolicy()
    assert dict(policy.simulate) == {}
    assert policy.source == "<dict>"


def test_full_policy_is_parsed_into_gates_rules_and_trust() -> None:
    policy = parse_policy(
        {
            "levels": ["gold", "silver", "bronze"],
            "default_level": "bronze",
            "gates": {
                "api": {
                    "capacity": 64,
                    "order": "weighted",
                    "queue": 500,
                    "levels": {
                        "gold": {"min": "40%", "max": 40, "weight": 4, "queue": 100},
                        "bronze": {"max": "25%", "max_wait": math.inf},
                    },
                }
            },
            "rules": [
                {"level": "gold", "path_prefix": "/payments", "method": ["post", "PUT"]},
                {"level": "silver", "headers": {"X-Kind": ["a", "b"]}, "tenant": "acme"},
            ],
            "trust": {"priority_header": "X-Prio", "trusted_networks": ["10.0.0.0/8"]},
        },
        source="test",
    )
    api = policy.gate("api")
    assert api == GatePolicy(
        capacity=64,
        levels={
            "gold": LevelPolicy(min=Percent(40), max=40, weight=4, queue=100),
            "bronze": LevelPolicy(max=Percent(25), max_wait=math.inf),
        },
        order=Order.WEIGHTED,
        queue=500,
        level_set=LevelSet(["gold", "silver", "bronze"]),
        name="api",
    )
    assert [limits.min for limits in api.resolve(64)] == [25, 0, 0]
    assert policy.default_level.name == "bronze"
    assert policy.rules == (
        Rule("gold", path_prefix="/payments", methods=frozenset({"POST", "PUT"})),
        Rule("silver", headers={"x-kind": ("a", "b")}, tenants=frozenset({"acme"})),
    )
    assert policy.trust == TrustPolicy("x-prio", ("10.0.0.0/8",))
    assert repr(policy) == "<Policy from test: 3 levels, gates ['api'], 2 rules>"


def test_gate_defaults_for_order_and_queue() -> None:
    api = parse_policy(gate()).gate("api")
    assert (api.order, api.queue, dict(api.levels)) == (Order.STRICT, DEFAULT_QUEUE, {})


def test_default_level_defaults_to_the_middle_of_a_custom_set() -> None:
    assert parse_policy({"levels": ["a", "b", "c"]}).default_level.name == "b"


def test_classifier_applies_the_parsed_rules_and_default() -> None:
    policy = parse_policy(
        {"default_level": "low", "rules": [{"level": "critical", "path": "/pay/**"}]}
    )
    classify = policy.classifier().classify
    assert classify(RequestInfo(path="/pay/a/b")).name == "critical"
    assert classify(RequestInfo(path="/other")).name == "low"


def test_max_wait_may_be_zero_or_infinite() -> None:
    limits = parse_policy(level("low", max_wait=0)).gate("api").policy_for("low")
    assert limits.max_wait == 0
    limits = parse_policy(level("low", max_wait=math.inf)).gate("api").policy_for("low")
    assert limits.max_wait == math.inf


def test_simulate_table_is_passed_through_untouched_and_read_only() -> None:
    table = {"gate": "api", "load": {"x": {"rate": "not checked here"}}}
    policy = parse_policy({"simulate": table})
    assert policy.simulate == table
    with pytest.raises(TypeError):
        policy.simulate["gate"] = "db"  # type: ignore[index]


# --- one problem each, by its exact message -----------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"levls": []},
            "levls: unknown key; did you mean 'levels'? accepted keys: 'budgets', "
            "'default_level', 'gates', 'levels', 'processes', 'rules', 'simulate', 'trust'",
        ),
        (
            {"zzz": 1},
            "zzz: unknown key; accepted keys: 'budgets', 'default_level', 'gates', 'levels', "
            "'processes', 'rules', 'simulate', 'trust'",
        ),
        (
            {"levels": "critical"},
            "levels: 'critical' is not a list of level names like ['critical', 'normal', 'bulk']",
        ),
        ({"levels": ["a", "a"]}, "levels: level name 'a' appears twice"),
        (
            {"default_level": "norml"},
            f"default_level: unknown level 'norml'; did you mean 'normal'? valid levels are "
            f"{LEVEL_NAMES}",
        ),
        ({"default_level": 2}, f"default_level: unknown level 2; valid levels are {LEVEL_NAMES}"),
        ({"gates": []}, "gates: [] is not a table"),
        ({"gates": {"api": 64}}, "gates.api: 64 is not a table"),
        (
            {"gates": {"api": {}}},
            "gates.api.capacity: missing; every gate needs a capacity: a whole number ≥ 1",
        ),
        (
            {"gates": {"api": {"capacity": 10, "capacty": 5}}},
            "gates.api.capacty: unknown key; did you mean 'capacity'? accepted keys: "
            "'capacity', 'levels', 'order', 'queue'",
        ),
        (
            {"gates": {"my api": {"capacity": 10, "capacty": 5}}},
            "gates.\"my api\".capacty: unknown key; did you mean 'capacity'? accepted keys: "
            "'capacity', 'levels', 'order', 'queue'",
        ),
        (
            {"gates": {"api": {"capacity": "64"}}},
            "gates.api.capacity: '64' is not a whole number ≥ 1",
        ),
        ({"gates": {"api": {"capacity": 0}}}, "gates.api.capacity: 0 is not a whole number ≥ 1"),
        (
            {"gates": {"api": {"capacity": 6.5}}},
            "gates.api.capacity: 6.5 is not a whole number ≥ 1",
        ),
        (
            {"gates": {"api": {"capacity": True}}},
            "gates.api.capacity: true is not a whole number ≥ 1",
        ),
        (gate(order="fifo"), "gates.api.order: 'fifo' is not one of 'strict', 'weighted'"),
        (gate(queue=-1), "gates.api.queue: -1 is not a whole number ≥ 0"),
        (gate(queue=False), "gates.api.queue: false is not a whole number ≥ 0"),
        (gate(levels=[]), "gates.api.levels: [] is not a table"),
        (
            gate(levels={"critcal": {}}),
            f"gates.api.levels.critcal: unknown level 'critcal'; did you mean 'critical'? "
            f"valid levels are {LEVEL_NAMES}",
        ),
        (
            level("low", mix=1),
            "gates.api.levels.low.mix: unknown key; did you mean 'min'? accepted keys: "
            "'max', 'max_wait', 'min', 'queue', 'weight'",
        ),
        (
            level("low", min=5.5),
            "gates.api.levels.low.min: 5.5 is not a whole number ≥ 0 or a percentage like '40%'",
        ),
        (
            level("low", max=-1),
            "gates.api.levels.low.max: -1 is not a whole number ≥ 0 or a percentage like '40%'",
        ),
        (
            level("low", max=True),
            "gates.api.levels.low.max: true is not a whole number ≥ 0 or a percentage like '40%'",
        ),
        (
            level("low", min="abc%"),
            "gates.api.levels.low.min: 'abc%' is not a whole number ≥ 0 or a percentage like '40%'",
        ),
        (
            level("low", min="40"),
            "gates.api.levels.low.min: '40' is not a whole number ≥ 0 or a percentage like '40%'",
        ),
        (
            level("low", min="-5%"),
            "gates.api.levels.low.min: '-5%' is not a whole number ≥ 0 or a percentage like '40%'",
        ),
        (
            level("low", max="140%"),
            "gates.api.levels.low.max: '140%' is not a percentage from 0% to 100%",
        ),
        (level("low", weight=0), "gates.api.levels.low.weight: 0 is not a number > 0"),
        (level("low", weight="4"), "gates.api.levels.low.weight: '4' is not a number > 0"),
        (level("low", weight=math.inf), "gates.api.levels.low.weight: inf is not a number > 0"),
        (level("low", weight=True), "gates.api.levels.low.weight: true is not a number > 0"),
        (level("low", queue=1.5), "gates.api.levels.low.queue: 1.5 is not a whole number ≥ 0"),
        (
            level("low", max_wait=-1),
            "gates.api.levels.low.max_wait: -1 is not a number of seconds ≥ 0 (or inf)",
        ),
        (
            level("low", max_wait=math.nan),
            "gates.api.levels.low.max_wait: nan is not a number of seconds ≥ 0 (or inf)",
        ),
        (
            level("low", max_wait="5s"),
            "gates.api.levels.low.max_wait: '5s' is not a number of seconds ≥ 0 (or inf)",
        ),
        (
            level("high", min=6, max=4),
            "gates.api.levels.high: min (6) is more than max (4); min must be ≤ max",
        ),
        (
            gate(levels={"critical": {"min": "60%"}, "high": {"min": 5}}),
            "gates.api.levels: the mins add up to 11 seats, more than capacity (10); "
            "the sum of min must be ≤ capacity",
        ),
        (
            {"rules": {"level": "high"}},
            "rules: {'level': 'high'} is not an array of tables, written [[rules]]",
        ),
        ({"rules": ["high"]}, "rules[0]: 'high' is not a table"),
        ({"rules": [{"path": "/x"}]}, "rules[0].level: missing; every rule needs a level name"),
        ({"rules": [{"level": 1}]}, "rules[0].level: 1 is not a level name"),
        (
            {"rules": [{"level": "hihg"}]},
            f"rules[0].level: unknown level 'hihg'; did you mean 'high'? valid levels are "
            f"{LEVEL_NAMES}",
        ),
        (
            {"rules": [{"level": "high", "methods": "GET"}]},
            "rules[0].methods: unknown key; did you mean 'method'? accepted keys: 'headers', "
            "'level', 'method', 'path', 'path_prefix', 'plan', 'tenant'",
        ),
        (
            {"rules": [{"level": "high", "path_prefix": "payments"}]},
            "rules[0].path_prefix: 'payments' is not a path starting with '/'",
        ),
        (
            {"rules": [{"level": "high", "path": 5}]},
            "rules[0].path: 5 is not a path pattern like '/api/*/export'",
        ),
        (
            {"rules": [{"level": "high", "method": "G T"}]},
            "rules[0].method: 'G T' is not an HTTP method name like 'GET' or 'POST'",
        ),
        (
            {"rules": [{"level": "high", "method": []}]},
            "rules[0].method: [] is not a string or a non-empty list of strings",
        ),
        (
            {"rules": [{"level": "high", "tenant": 7}]},
            "rules[0].tenant: 7 is not a string or a non-empty list of strings",
        ),
        (
            {"rules": [{"level": "high", "plan": ["free", 1]}]},
            "rules[0].plan: ['free', 1] is not a string or a non-empty list of strings",
        ),
        (
            {"rules": [{"level": "high", "tenant": ""}]},
            "rules[0].tenant: '' is not a non-empty string",
        ),
        (
            {"rules": [{"level": "high", "headers": "x-kind"}]},
            "rules[0].headers: 'x-kind' is not a table",
        ),
        (
            {"rules": [{"level": "high", "headers": {"x-kind": 5}}]},
            "rules[0].headers.x-kind: 5 is not a header value, a list of values, "
            "or '*' for any value",
        ),
        (
            {"rules": [{"level": "low"}, {"level": "high", "path": "/x"}]},
            "rules[1]: never matches: rules[0] has no matcher and matches every request; "
            "put a catch-all rule last",
        ),
        ({"trust": []}, "trust: [] is not a table"),
        (
            {"trust": {"trusted_network": []}},
            "trust.trusted_network: unknown key; did you mean 'trusted_networks'? accepted "
            "keys: 'max_token_ttl', 'priority_header', 'secret_env', 'signed_header', "
            "'token_ttl', 'trusted_networks', 'trusted_proxies'",
        ),
        ({"trust": {"priority_header": 1}}, "trust.priority_header: 1 is not a header name"),
        (
            {"trust": {"priority_header": "x priority"}},
            "trust.priority_header: 'x priority' is not a header name like 'x-priority'",
        ),
        (
            {"trust": {"trusted_networks": [10]}},
            "trust.trusted_networks: [10] is not a string or a list of strings",
        ),
        (
            {"trust": {"trusted_networks": ["10.0.0.0/33"]}},
            "trust.trusted_networks[0]: '10.0.0.0/33' is not a network like '10.0.0.0/8' or "
            "'fd00::/8' ('10.0.0.0/33' does not appear to be an IPv4 or IPv6 network)",
        ),
        ({"simulate": 5}, "simulate: 5 is not a table"),
    ],
)
def test_each_mistake_is_reported_with_its_key_path_value_and_what_is_accepted(
    data: Mapping[str, object], message: str
) -> None:
    assert problems(data) == [message]


def test_a_policy_that_is_not_a_table_is_refused() -> None:
    assert problems(["gates"]) == ["['gates'] is not a table"]  # type: ignore[arg-type]


# --- all at once ---------------------------------------------------------------------------


def test_every_problem_is_reported_at_once() -> None:
    data = {
        "default_level": "urgent",
        "gates": {"api": {"capacity": 10, "levels": {"low": {"max": -1}}}, "db": {"capacty": 4}},
        "rules": [{"level": "high", "path_prefix": "api"}],
    }
    assert [p.split(":")[0] for p in problems(data)] == [
        "default_level",
        "gates.api.levels.low.max",
        "gates.db.capacty",
        "gates.db.capacity",
        "rules[0].path_prefix",
    ]


def test_problems_of_one_level_are_all_reported() -> None:
    assert len(problems(level("low", min=-1, max="200%", weight=0, queue=-1, max_wait=-1))) == 5


def test_all_problems_of_one_rule_are_reported() -> None:
    data = {"rules": [{"level": "urgent", "path_prefix": "x", "method": [], "tenant": 3}]}
    assert [p.split(":")[0] for p in problems(data)] == [
        "rules[0].level",
        "rules[0].method",
        "rules[0].tenant",
        "rules[0].path_prefix",
    ]


def test_cross_checks_still_run_when_another_knob_is_wrong() -> None:
    data = gate(queue=-1, levels={"critical": {"min": 8, "weight": 0}, "high": {"min": 5}})
    assert problems(data) == [
        "gates.api.queue: -1 is not a whole number ≥ 0",
        "gates.api.levels.critical.weight: 0 is not a number > 0",
        "gates.api.levels: the mins add up to 13 seats, more than capacity (10); "
        "the sum of min must be ≤ capacity",
    ]


def test_unknown_level_in_a_gate_does_not_hide_the_others_problems() -> None:
    data = gate(levels={"urgent": {}, "low": {"max": -1}})
    assert [p.split(":")[0] for p in problems(data)] == [
        "gates.api.levels.urgent",
        "gates.api.levels.low.max",
    ]


def test_level_names_are_not_checked_against_an_invalid_level_set() -> None:
    data = {"levels": ["Gold"], "default_level": "x", "rules": [{"level": "y"}]}
    assert problems(data) == [
        "levels: level name 'Gold' is not accepted: use 1-32 lowercase letters, digits, "
        "'_' or '-', starting with a letter"
    ]


def test_gate_levels_are_checked_against_a_custom_level_set() -> None:
    data = {"levels": ["gold", "silver"], **level("critical")}
    assert problems(data) == [
        "gates.api.levels.critical: unknown level 'critical'; valid levels are ['gold', 'silver']"
    ]


def test_empty_gates_table_is_accepted() -> None:
    assert dict(parse_policy({"gates": {}}).gates) == {}


# --- Policy --------------------------------------------------------------------------------


def test_unknown_gate_is_refused_with_a_suggestion_and_the_gates_defined() -> None:
    policy = parse_policy({"gates": {"api": {"capacity": 4}, "db": {"capacity": 2}}}, "p.toml")
    with pytest.raises(ConfigError) as info:
        policy.gate("apii")
    assert str(info.value) == (
        "gates.apii: no such gate in p.toml; did you mean 'api'? gates defined: 'api', 'db'"
    )


def test_unknown_gate_in_a_policy_without_gates() -> None:
    with pytest.raises(ConfigError) as info:
        Policy().gate("api")
    assert str(info.value) == "gates.api: no such gate in <code>; gates defined: none"


def test_gates_built_in_code_take_their_key_as_name_and_the_policy_levels() -> None:
    levels = LevelSet(["gold", "silver"])
    policy = Policy(levels, levels["silver"], gates={"db": GatePolicy(capacity=4)})
    assert policy.gate("db").name == "db"
    assert policy.gate("db").level_set == levels


def test_policy_built_in_code_is_checked() -> None:
    levels = LevelSet(["gold", "silver"])
    with pytest.raises(ConfigError) as info:
        Policy(levels, DEFAULT_LEVELS["normal"], rules=(Rule("critical"),))
    assert [str(p) for p in info.value.problems] == [
        "rules[0].level: unknown level 'critical'; valid levels are ['gold', 'silver']",
        "default_level: level 'normal' is not in this level set ['gold', 'silver']",
    ]


def test_policy_gates_cannot_be_changed() -> None:
    policy = parse_policy(gate())
    with pytest.raises(TypeError):
        policy.gates["db"] = policy.gate("api")  # type: ignore[index]


def test_trust_problems_are_all_reported_even_with_a_wrong_type() -> None:
    data = {"trust": {"priority_header": 1, "trusted_networks": ["lan"]}}
    assert [p.split(":")[0] for p in problems(data)] == [
        "trust.priority_header",
        "trust.trusted_networks[0]",
    ]


def test_a_gate_capacity_may_be_adaptive() -> None:
    policy = parse_policy(
        {"gates": {"api": {"capacity": {"adaptive": "gradient", "min": 4, "max": 200}}}}
    )
    spec = policy.adaptive["api"]
    assert (spec.kind.value, spec.min, spec.max) == ("gradient", 4, 200)
    assert policy.gate("api").capacity == spec.initial == 20


def test_a_bad_adaptive_capacity_is_reported_with_its_key_path() -> None:
    with pytest.raises(ConfigError) as info:
        parse_policy({"gates": {"api": {"capacity": {"adaptive": "gradiant"}}}})
    assert [str(p) for p in info.value.problems] == [
        "gates.api.capacity.adaptive: 'gradiant' is not one of 'aimd', 'gradient'; "
        "did you mean 'gradient'?"
    ]
