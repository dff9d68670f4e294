"""Classification: rules, first match, default level, the trust rule and explain()."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prioritize.core.classify import (
    Classification,
    Classifier,
    LowercaseHeaders,
    RequestInfo,
    Rule,
    TrustPolicy,
)
from prioritize.core.levels import DEFAULT_LEVELS, LevelSet
from prioritize.errors import ConfigError

L = DEFAULT_LEVELS


def level_of(rules: list[Rule], **request: object) -> str:
    return Classifier(rules).classify(RequestInfo(**request)).name  # type: ignore[arg-type]


# --- RequestInfo ---------------------------------------------------------------


def test_request_header_names_are_lowercased_and_method_uppercased() -> None:
    req = RequestInfo(method="post", headers={"X-Kind": "export"})
    assert req.method == "POST"
    assert dict(req.headers) == {"x-kind": "export"}


def test_request_headers_cannot_be_changed_after_construction() -> None:
    headers = {"x-kind": "export"}
    req = RequestInfo(headers=headers)
    headers["x-kind"] = "other"
    assert req.headers["x-kind"] == "export"
    with pytest.raises(TypeError):
        req.headers["x-kind"] = "other"  # type: ignore[index]


# --- matchers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "matches"),
    [
        ("/payments", True),
        ("/payments/", True),
        ("/payments/42/refund", True),
        ("/payments-admin", False),
        ("/paymentsx", False),
        ("/api/payments", False),
        ("/", False),
    ],
)
def test_path_prefix_matches_whole_segments(path: str, matches: bool) -> None:
    assert Rule("critical", path_prefix="/payments").matches(RequestInfo(path=path)) is matches


def test_path_prefix_ending_in_slash_matches_only_below_it() -> None:
    rule = Rule("critical", path_prefix="/api/")
    assert rule.matches(RequestInfo(path="/api/x"))
    assert not rule.matches(RequestInfo(path="/api"))


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("/api/*/export", "/api/v1/export", True),
        ("/api/*/export", "/api//export", True),
        ("/api/*/export", "/api/v1/x/export", False),
        ("/api/*/export", "/api/v1/export/more", False),
        ("/api/**/export", "/api/v1/x/export", True),
        ("/api/**/export", "/api/export", True),
        ("/api/**", "/api", True),
        ("/api/**", "/api/a/b/c", True),
        ("/api/**", "/apix", False),
        ("/files/**.csv", "/files/a/b.csv", True),
        ("/files/*.csv", "/files/a/b.csv", False),
        ("/v?/items", "/v2/items", True),
        ("/v?/items", "/v/items", False),
        ("/v?/items", "/v//items", False),
        ("/v1.0/*", "/v1x0/a", False),
        ("/v1.0/*", "/v1.0/a", True),
        ("/Users/*", "/users/a", False),
    ],
)
def test_path_glob_star_stays_in_a_segment_and_double_star_crosses(
    pattern: str, path: str, matches: bool
) -> None:
    assert Rule("low", path=pattern).matches(RequestInfo(path=path)) is matches


def test_methods_match_in_any_case() -> None:
    rule = Rule("high", methods=frozenset({"post", "PUT"}))
    assert rule.methods == frozenset({"POST", "PUT"})
    assert rule.matches(RequestInfo(method="POST"))
    assert rule.matches(RequestInfo(method="put"))
    assert not rule.matches(RequestInfo(method="GET"))


def test_a_single_string_is_one_method_not_its_letters() -> None:
    rule = Rule("high", methods="POST")  # type: ignore[arg-type]
    assert rule.methods == frozenset({"POST"})


def test_header_names_match_case_insensitively() -> None:
    rule = Rule("bulk", headers={"X-Kind": "export"})
    assert rule.matches(RequestInfo(headers={"x-kind": "export"}))
    assert rule.matches(RequestInfo(headers={"X-KIND": " export "}))
    assert not rule.matches(RequestInfo(headers={"x-kind": "Export"}))
    assert not rule.matches(RequestInfo())


def test_header_star_means_present_with_any_value() -> None:
    rule = Rule("bulk", headers={"x-batch": "*"})
    assert rule.matches(RequestInfo(headers={"x-batch": ""}))
    assert rule.matches(RequestInfo(headers={"x-batch": "anything"}))
    assert not rule.matches(RequestInfo(headers={"x-other": "1"}))


def test_header_tuple_accepts_any_of_its_values() -> None:
    rule = Rule("bulk", headers={"x-kind": ("export", "report")})
    assert rule.matches(RequestInfo(headers={"x-kind": "report"}))
    assert not rule.matches(RequestInfo(headers={"x-kind": "query"}))


def test_tenant_and_plan_must_be_among_the_listed() -> None:
    rule = Rule("low", tenants=frozenset({"acme", "globex"}), plans=frozenset({"free"}))
    assert rule.matches(RequestInfo(tenant="acme", plan="free"))
    assert not rule.matches(RequestInfo(tenant="acme", plan="pro"))
    assert not rule.matches(RequestInfo(tenant="initech", plan="free"))
    assert not rule.matches(RequestInfo(plan="free"))


def test_every_given_matcher_must_match() -> None:
    rule = Rule("high", path_prefix="/api", methods=frozenset({"POST"}), headers={"x-a": "1"})
    assert rule.matches(RequestInfo("POST", "/api/x", {"x-a": "1"}))
    assert not rule.matches(RequestInfo("GET", "/api/x", {"x-a": "1"}))
    assert not rule.matches(RequestInfo("POST", "/other", {"x-a": "1"}))
    assert not rule.matches(RequestInfo("POST", "/api/x"))


def test_a_rule_without_matchers_matches_everything() -> None:
    rule = Rule("low")
    assert rule.is_catch_all
    assert rule.matches(RequestInfo("DELETE", "/anything", {"x": "y"}, tenant="t"))


def test_rule_repr_shows_only_given_matchers() -> None:
    rule = Rule("high", path="/api/*", methods=frozenset({"PUT", "POST"}), headers={"X-A": "1"})
    assert (
        repr(rule) == "Rule('high', path='/api/*', methods=['POST', 'PUT'], headers={'x-a': '1'})"
    )


# --- malformed rules ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule_args", "message"),
    [
        (
            {"path_prefix": "payments"},
            "rule.path_prefix: 'payments' is not a path starting with '/'",
        ),
        ({"path": "api/*"}, "rule.path: 'api/*' is not a path starting with '/'"),
        (
            {"methods": frozenset({"GE T"})},
            "rule.methods: 'GE T' is not an HTTP method name like 'GET' or 'POST'",
        ),
        ({"headers": {"x kind": "a"}}, "rule.headers: 'x kind' is not a header name"),
        (
            {"headers": {"x-kind": ""}},
            "rule.headers.x-kind: '' is not a header value, a list of them, or '*' for any value",
        ),
        ({"tenants": frozenset({""})}, "rule.tenants: '' is not a non-empty string"),
    ],
)
def test_malformed_rule_is_refused_naming_the_matcher(
    rule_args: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Rule("high", **rule_args)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_every_malformed_matcher_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        Rule("high", path_prefix="x", path="y", methods=frozenset({"A B"}))
    assert [p.path for p in info.value.problems] == [
        "rule.path_prefix",
        "rule.path",
        "rule.methods",
    ]


# --- the classifier -------------------------------------------------------------------


def test_first_matching_rule_wins() -> None:
    rules = [
        Rule("critical", path_prefix="/payments"),
        Rule("bulk", path_prefix="/payments/export"),
    ]
    assert level_of(rules, path="/payments/export") == "critical"


def test_no_match_gives_the_default_level() -> None:
    classifier = Classifier([Rule("critical", path_prefix="/payments")], default="low")
    assert classifier.classify(RequestInfo(path="/other")) == L["low"]


def test_default_level_defaults_to_the_middle_of_the_set() -> None:
    assert Classifier().default == L["normal"]
    assert Classifier(levels=LevelSet(["gold", "silver", "bronze"])).default.name == "silver"
    assert Classifier(levels=LevelSet(["a", "b", "c", "d"])).default.name == "c"


def test_rule_with_unknown_level_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError) as info:
        Classifier([Rule("high", path="/a"), Rule("critcal", path="/x")])
    assert str(info.value) == (
        "rules[1].level: unknown level 'critcal'; did you mean 'critical'? "
        "valid levels are ['critical', 'high', 'normal', 'low', 'bulk']"
    )


def test_rule_after_a_catch_all_is_refused_as_unreachable() -> None:
    with pytest.raises(ConfigError) as info:
        Classifier([Rule("high", path="/a"), Rule("low"), Rule("bulk", path="/b")])
    assert str(info.value) == (
        "rules[2]: never matches: rules[1] has no matcher and matches every request; "
        "put a catch-all rule last"
    )


def test_catch_all_as_last_rule_is_accepted() -> None:
    assert level_of([Rule("high", path="/a"), Rule("low")], path="/z") == "low"


def test_unknown_default_level_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        Classifier(default="urgent")
    assert str(info.value) == (
        "default_level: unknown level 'urgent'; valid levels are "
        "['critical', 'high', 'normal', 'low', 'bulk']"
    )


def test_level_of_another_level_set_is_refused_as_default() -> None:
    other = LevelSet(["gold", "silver"])
    with pytest.raises(ConfigError, match="not in this level set"):
        Classifier(default=other["gold"])


def test_classifier_repr() -> None:
    assert repr(Classifier([Rule("high")])) == "<Classifier 1 rules, default normal>"


# --- the trust rule ---------------------------------------------------------------------

PAYMENTS = [Rule("high", path_prefix="/payments")]


def test_untrusted_caller_may_lower_priority() -> None:
    assert level_of(PAYMENTS, path="/payments", requested="bulk") == "bulk"


def test_untrusted_caller_may_not_raise_priority() -> None:
    assert level_of(PAYMENTS, path="/payments", requested="critical") == "high"
    assert level_of(PAYMENTS, path="/other", requested="high") == "normal"


def test_trusted_caller_may_raise_priority() -> None:
    assert level_of(PAYMENTS, path="/payments", requested="critical", trusted=True) == "critical"


def test_trusted_caller_may_lower_priority() -> None:
    assert level_of(PAYMENTS, path="/payments", requested="low", trusted=True) == "low"


@pytest.mark.parametrize("garbage", ["urgent", "", "0", "critical;drop", "\x00"])
def test_requested_name_that_is_not_a_level_is_ignored(garbage: str) -> None:
    assert level_of(PAYMENTS, path="/payments", requested=garbage) == "high"
    assert level_of(PAYMENTS, path="/payments", requested=garbage, trusted=True) == "high"


def test_requested_name_is_read_ignoring_case_and_spaces() -> None:
    assert level_of(PAYMENTS, path="/payments", requested=" Bulk ") == "bulk"


# --- explain() ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_args", "expected"),
    [
        (
            {"path": "/payments"},
            Classification(L["high"], 0, False, "rules[0] matched: level 'high'"),
        ),
        (
            {"path": "/x"},
            Classification(L["normal"], None, False, "no rule matched, default: level 'normal'"),
        ),
        (
            {"path": "/payments", "requested": "low"},
            Classification(
                L["low"],
                0,
                True,
                "rules[0] matched: level 'high'; caller requested 'low', which lowers it",
            ),
        ),
        (
            {"path": "/payments", "requested": "high"},
            Classification(
                L["high"],
                0,
                True,
                "rules[0] matched: level 'high'; caller requested 'high', the same level",
            ),
        ),
        (
            {"path": "/payments", "requested": "critical"},
            Classification(
                L["high"],
                0,
                False,
                "rules[0] matched: level 'high'; requested 'critical' ignored: "
                "an untrusted caller may only lower priority",
            ),
        ),
        (
            {"path": "/payments", "requested": "critical", "trusted": True},
            Classification(
                L["critical"],
                0,
                True,
                "rules[0] matched: level 'high'; trusted caller requested 'critical'",
            ),
        ),
        (
            {"path": "/x", "requested": "urgent"},
            Classification(
                L["normal"],
                None,
                False,
                "no rule matched, default: level 'normal'; requested 'urgent' ignored: "
                "not one of ['critical', 'high', 'normal', 'low', 'bulk']",
            ),
        ),
    ],
)
def test_explain_names_the_rule_and_what_the_request_changed(
    request_args: dict[str, object], expected: Classification
) -> None:
    assert Classifier(PAYMENTS).explain(RequestInfo(**request_args)) == expected  # type: ignore[arg-type]


# --- TrustPolicy -------------------------------------------------------------------------


def test_trusted_networks_decide_trusted_addresses() -> None:
    trust = TrustPolicy(trusted_networks=("10.0.0.0/8", "fd00::/8"))
    assert trust.is_trusted_address("10.1.2.3")
    assert trust.is_trusted_address("::ffff:10.1.2.3")
    assert trust.is_trusted_address("fd00::1")
    assert not trust.is_trusted_address("192.168.1.1")
    assert not trust.is_trusted_address("not an address")
    assert not TrustPolicy().is_trusted_address("127.0.0.1")


def test_priority_header_name_is_lowercased() -> None:
    assert TrustPolicy(priority_header="X-Priority").priority_header == "x-priority"


def test_malformed_trust_settings_are_all_refused() -> None:
    with pytest.raises(ConfigError) as info:
        TrustPolicy(priority_header="x priority", trusted_networks=("10.0.0.1/8", "lan"))
    assert [str(p) for p in info.value.problems] == [
        "trust.priority_header: 'x priority' is not a header name like 'x-priority'",
        "trust.trusted_networks[0]: '10.0.0.1/8' is not a network like '10.0.0.0/8' or "
        "'fd00::/8' (10.0.0.1/8 has host bits set)",
        "trust.trusted_networks[1]: 'lan' is not a network like '10.0.0.0/8' or "
        "'fd00::/8' ('lan' does not appear to be an IPv4 or IPv6 network)",
    ]


# --- properties ------------------------------------------------------------------------

NAMES = L.names
SEGMENTS = st.sampled_from(["api", "v1", "payments", "export", "x"])
PATHS = st.lists(SEGMENTS, max_size=4).map(lambda parts: "/" + "/".join(parts))
PATTERNS = st.lists(st.sampled_from(["api", "v1", "payments", "*", "**", "x?"]), max_size=4).map(
    lambda parts: "/" + "/".join(parts)
)
RULES = st.builds(
    Rule,
    level=st.sampled_from(NAMES),
    path_prefix=st.none() | PATHS,
    path=st.none() | PATTERNS,
    methods=st.frozensets(st.sampled_from(["GET", "POST", "PUT"]), max_size=2),
    headers=st.dictionaries(
        st.sampled_from(["x-kind", "x-b"]), st.sampled_from(["a", "*"]), max_size=1
    ),
    tenants=st.frozensets(st.sampled_from(["acme", "globex"]), max_size=1),
)
REQUESTS = st.builds(
    RequestInfo,
    method=st.sampled_from(["GET", "POST", "PUT"]),
    path=PATHS,
    headers=st.dictionaries(st.sampled_from(["X-Kind", "x-b"]), st.sampled_from(["a", "b"])),
    tenant=st.none() | st.sampled_from(["acme", "globex"]),
    requested=st.sampled_from(NAMES) | st.text(max_size=10),
)


def catch_all_last(rules: list[Rule]) -> list[Rule]:
    """Keep rules up to the first catch-all (later ones would be refused as unreachable)."""
    for i, rule in enumerate(rules):
        if rule.is_catch_all:
            return rules[: i + 1]
    return rules


@given(st.lists(RULES, max_size=5).map(catch_all_last), REQUESTS)
def test_untrusted_request_never_raises_priority_above_the_rules(
    rules: list[Rule], req: RequestInfo
) -> None:
    classifier = Classifier(rules)
    by_rules = classifier.classify(RequestInfo(req.method, req.path, req.headers, req.tenant))
    got = classifier.classify(req)
    assert got.rank >= by_rules.rank
    assert classifier.explain(req).level == got


@given(st.lists(RULES, max_size=5).map(catch_all_last), REQUESTS, st.sampled_from(NAMES))
def test_trusted_request_for_a_level_always_gets_it(
    rules: list[Rule], req: RequestInfo, name: str
) -> None:
    trusted = RequestInfo(
        req.method, req.path, req.headers, req.tenant, requested=name, trusted=True
    )
    assert Classifier(rules).classify(trusted).name == name


def test_request_info_lowercases_header_names_unless_an_adapter_already_did() -> None:
    plain = RequestInfo(headers={"X-Client": "batch"})
    assert dict(plain.headers) == {"x-client": "batch"}
    ready = LowercaseHeaders({"x-client": "batch"})
    assert RequestInfo(headers=ready).headers is ready  # taken as it is: no copy per request
    rule = Rule(level="low", headers={"X-Client": "batch"})
    assert rule.matches(plain)
    assert rule.matches(RequestInfo(headers=ready))
