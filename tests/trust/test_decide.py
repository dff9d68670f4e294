"""TrustPolicy.decide: who the caller is, what it asks for, and whether it may raise it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prioritize import Classifier, RequestInfo, Rule, TrustDecision, TrustPolicy
from prioritize.core.signing import key_id, sign_priority, verify_priority

SECRET = b"s3cret-shared-by-every-service"
OLD = b"the-secret-before-rotation"
NOW = 1_800_000_000.0
PROXIES = ("10.1.0.0/16", "fd10::/16")
TRUST = TrustPolicy(
    trusted_networks=("192.168.0.0/16", "fd00::/16"),
    secrets=(SECRET, OLD),
    trusted_proxies=PROXIES,
)
CLASSIFIER = Classifier([Rule("high", path_prefix="/payments")])
OUTSIDE = "203.0.113.7"


def token(level: str, *, secret: bytes = SECRET, now: float = NOW, ttl: float = 30) -> str:
    return sign_priority(level, secret=secret, now=now, ttl=ttl)


def level_for(headers: dict[str, str], peer: str | None = OUTSIDE, path: str = "/payments") -> str:
    """The level a request gets once the middleware has asked `decide`."""
    decision = TRUST.decide(headers, peer, NOW)
    info = RequestInfo(
        path=path, headers=headers, requested=decision.requested, trusted=decision.trusted
    )
    return CLASSIFIER.classify(info).name


# --- the plain priority header: lower only ------------------------------------------------


def test_an_unsigned_request_to_raise_is_refused() -> None:
    assert TRUST.decide({"x-priority": "critical"}, OUTSIDE, NOW) == TrustDecision(
        "critical", False, OUTSIDE, None
    )
    assert level_for({"x-priority": "critical"}) == "high"


def test_an_unsigned_request_to_lower_is_allowed() -> None:
    assert level_for({"x-priority": "bulk"}) == "bulk"


def test_the_plain_header_is_stripped_and_a_blank_one_requests_nothing() -> None:
    assert TRUST.decide({"x-priority": "  low "}, OUTSIDE, NOW).requested == "low"
    assert TRUST.decide({"x-priority": "   "}, OUTSIDE, NOW).requested is None
    assert TRUST.decide({}, OUTSIDE, NOW) == TrustDecision(None, False, OUTSIDE, None)


def test_a_caller_in_a_trusted_network_may_raise_without_a_token() -> None:
    assert TRUST.decide({"x-priority": "critical"}, "192.168.4.2", NOW).trusted
    assert level_for({"x-priority": "critical"}, peer="192.168.4.2") == "critical"


def test_the_header_names_are_configurable() -> None:
    trust = TrustPolicy(priority_header="X-Prio", signed_header="X-Prio-Sig", secrets=(SECRET,))
    headers = {"x-prio": "bulk", "x-prio-sig": token("critical")}
    assert trust.decide(headers, OUTSIDE, NOW) == TrustDecision("critical", True, OUTSIDE, None)
    assert trust.decide({"x-priority": "bulk"}, OUTSIDE, NOW).requested is None


# --- signed tokens -----------------------------------------------------------------------


def test_a_valid_token_raises_the_level() -> None:
    headers = {"x-priority-token": token("critical")}
    assert TRUST.decide(headers, OUTSIDE, NOW) == TrustDecision("critical", True, OUTSIDE, None)
    assert level_for(headers) == "critical"


def test_a_valid_token_wins_over_the_plain_header() -> None:
    headers = {"x-priority": "bulk", "x-priority-token": token("critical")}
    assert TRUST.decide(headers, OUTSIDE, NOW).requested == "critical"


def test_a_token_signed_with_the_previous_secret_still_raises() -> None:
    headers = {"x-priority-token": token("critical", secret=OLD)}
    assert level_for(headers) == "critical"


@pytest.mark.parametrize(
    ("bad_token", "why"),
    [
        (token("critical", secret=b"not-ours"), "forged"),
        (token("critical").replace(key_id(SECRET), "0badc0de"), "forged"),
        (token("bulk").replace(".bulk.", ".critical."), "forged"),
        (token("critical", ttl=86_400), "forged"),
        (token("critical", now=NOW - 3600), "expired"),
        ("critical", "malformed"),
        ("", "malformed"),
        ("v1.critical.soon.0badc0de.mac", "malformed"),
    ],
)
def test_a_bad_token_is_ignored_reported_and_the_plain_header_can_only_lower(
    bad_token: str, why: str
) -> None:
    raise_ = {"x-priority": "critical", "x-priority-token": bad_token}
    assert TRUST.decide(raise_, OUTSIDE, NOW) == TrustDecision("critical", False, OUTSIDE, why)
    assert level_for(raise_) == "high"
    lower = {"x-priority": "low", "x-priority-token": bad_token}
    assert level_for(lower) == "low"
    alone = {"x-priority-token": bad_token}
    assert TRUST.decide(alone, OUTSIDE, NOW) == TrustDecision(None, False, OUTSIDE, why)


def test_a_bad_token_from_a_trusted_network_is_reported_but_the_address_still_trusts() -> None:
    headers = {"x-priority": "critical", "x-priority-token": "junk"}
    decision = TRUST.decide(headers, "192.168.0.9", NOW)
    assert decision == TrustDecision("critical", True, "192.168.0.9", "malformed")


def test_a_service_without_secrets_reports_tokens_as_forged() -> None:
    decision = TrustPolicy().decide({"x-priority-token": token("critical")}, OUTSIDE, NOW)
    assert decision == TrustDecision(None, False, OUTSIDE, "forged")


def test_a_token_is_reported_by_its_own_lifetime_cap() -> None:
    strict = TrustPolicy(secrets=(SECRET,), token_ttl=10, max_token_ttl=10)
    decision = strict.decide({"x-priority-token": token("high", ttl=60)}, OUTSIDE, NOW)
    assert decision.ignored == "forged"


@given(
    st.dictionaries(st.text(max_size=20), st.text(max_size=80), max_size=6), st.text(max_size=40)
)
def test_decide_never_raises_on_whatever_a_client_sends(headers: dict[str, str], peer: str) -> None:
    headers.setdefault("x-priority-token", peer)
    headers.setdefault("x-forwarded-for", peer)
    decision = TRUST.decide(headers, peer, NOW)
    assert decision.ignored in {None, "malformed", "forged", "expired"}
    # random text is never a valid token, so only the address can make it trusted
    client = decision.client
    assert decision.trusted == (client is not None and TRUST.is_trusted_address(client))


# --- X-Forwarded-For ------------------------------------------------------------------------


def test_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    # Anyone can write a trusted address into X-Forwarded-For: believing it
    # would let a client raise its own priority.
    headers = {"x-forwarded-for": "192.168.0.1", "x-priority": "critical"}
    assert TRUST.decide(headers, OUTSIDE, NOW) == TrustDecision("critical", False, OUTSIDE, None)
    assert level_for(headers) == "high"


def test_forwarded_for_from_a_trusted_proxy_names_the_client() -> None:
    headers = {"x-forwarded-for": OUTSIDE}
    assert TRUST.decide(headers, "10.1.0.5", NOW).client == OUTSIDE
    assert not TRUST.decide(headers, "10.1.0.5", NOW).trusted
    trusted_client = {"x-forwarded-for": "192.168.7.7", "x-priority": "critical"}
    assert TRUST.decide(trusted_client, "10.1.0.5", NOW).trusted
    assert level_for(trusted_client, peer="10.1.0.5") == "critical"


def test_the_chain_is_walked_from_the_right_past_every_trusted_proxy() -> None:
    # client -> proxy 10.1.0.3 -> proxy 10.1.0.2 -> proxy (the peer) 10.1.0.1
    headers = {"x-forwarded-for": f"{OUTSIDE}, 10.1.0.3, 10.1.0.2"}
    assert TRUST.client_address(headers, "10.1.0.1") == OUTSIDE


def test_entries_left_of_the_first_untrusted_hop_are_not_believed() -> None:
    # The client wrote "192.168.0.1" itself; the proxies appended what they saw.
    headers = {"x-forwarded-for": f"192.168.0.1, {OUTSIDE}, 10.1.0.2"}
    assert TRUST.client_address(headers, "10.1.0.1") == OUTSIDE
    assert not TRUST.decide(headers, "10.1.0.1", NOW).trusted


def test_when_every_entry_is_a_trusted_proxy_the_leftmost_is_the_client() -> None:
    headers = {"x-forwarded-for": "10.1.0.9, 10.1.0.3,10.1.0.2"}
    assert TRUST.client_address(headers, "10.1.0.1") == "10.1.0.9"


@pytest.mark.parametrize(
    ("forwarded", "client"),
    [
        ("unknown", "10.1.0.1"),
        ("", "10.1.0.1"),
        (f"{OUTSIDE}, _hidden", "10.1.0.1"),
        (f"{OUTSIDE}, garbage, 10.1.0.2", "10.1.0.2"),
        (f"{OUTSIDE}, 10.1.0.3:8080, 10.1.0.2", "10.1.0.2"),
        (f"{OUTSIDE}, 10.1.0.3, ", "10.1.0.1"),
    ],
)
def test_an_entry_that_is_not_an_address_stops_the_walk_at_the_last_good_hop(
    forwarded: str, client: str
) -> None:
    assert TRUST.client_address({"x-forwarded-for": forwarded}, "10.1.0.1") == client


def test_without_a_peer_there_is_no_client_and_no_forwarded_for() -> None:
    headers = {"x-forwarded-for": "192.168.0.1", "x-priority": "critical"}
    assert TRUST.decide(headers, None, NOW) == TrustDecision("critical", False, None, None)


def test_a_peer_that_is_not_an_address_is_the_client_and_not_trusted() -> None:
    headers = {"x-forwarded-for": "192.168.0.1"}
    assert TRUST.decide(headers, "testclient", NOW) == TrustDecision(
        None, False, "testclient", None
    )


def test_without_trusted_proxies_forwarded_for_is_never_read() -> None:
    trust = TrustPolicy(trusted_networks=("192.168.0.0/16",))
    headers = {"x-forwarded-for": "192.168.0.1"}
    assert trust.decide(headers, "10.1.0.1", NOW).client == "10.1.0.1"


# --- IPv6 and IPv4-mapped addresses -------------------------------------------------------


def test_ipv6_proxies_clients_and_networks() -> None:
    headers = {"x-forwarded-for": "2001:db8::1, fd10::3"}
    assert TRUST.decide(headers, "fd10::1", NOW) == TrustDecision(None, False, "2001:db8::1", None)
    trusted = {"x-forwarded-for": "fd00::42, fd10::3"}
    assert TRUST.decide(trusted, "fd10::1", NOW).trusted
    assert TRUST.decide({}, "fd00::7", NOW).trusted


def test_ipv4_mapped_addresses_compare_as_ipv4() -> None:
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
    headers = {"x-forwarded-for": "::ffff:192.168.0.1, ::ffff:10.1.0.3"}
    decision = TRUST.decide(headers, "::ffff:10.1.0.1", NOW)
    assert decision == TrustDecision(None, True, "::ffff:192.168.0.1", None)
    assert TRUST.is_trusted_proxy("::ffff:10.1.2.3")
    assert not TRUST.is_trusted_proxy("::ffff:10.2.0.1")
    assert TRUST.decide({}, "::ffff:192.168.1.1", NOW).trusted


def test_ipv6_addresses_in_mixed_case_and_with_spaces_are_read() -> None:
    headers = {"x-forwarded-for": "  2001:DB8::1 ,FD10::3  "}
    assert TRUST.client_address(headers, "FD10::1") == "2001:DB8::1"


# --- sign: carrying the level to the next service -----------------------------------------


def test_sign_gives_the_plain_header_and_a_token_the_next_service_accepts() -> None:
    headers = TRUST.sign("critical", NOW)
    assert set(headers) == {"x-priority", "x-priority-token"}
    assert headers["x-priority"] == "critical"
    assert key_id(SECRET) in headers["x-priority-token"]  # the first secret signs
    verified = verify_priority(headers["x-priority-token"], secrets=(SECRET,), now=NOW + 30)
    assert verified.level == "critical"
    assert TRUST.decide(headers, OUTSIDE, NOW) == TrustDecision("critical", True, OUTSIDE, None)


def test_signed_tokens_live_for_token_ttl() -> None:
    short = TrustPolicy(secrets=(SECRET,), token_ttl=2)
    headers = short.sign("high", NOW)
    assert short.decide(headers, None, NOW + 2).trusted
    assert short.decide(headers, None, NOW + 8).ignored == "expired"


def test_sign_without_a_secret_gives_the_plain_header_only() -> None:
    assert TrustPolicy().sign("low", NOW) == {"x-priority": "low"}


def test_sign_refuses_a_level_that_is_not_a_level_name() -> None:
    for trust in (TRUST, TrustPolicy()):
        with pytest.raises(ValueError, match="'Critical' is not a level name"):
            trust.sign("Critical", NOW)


def test_address_verdicts_stay_right_when_remembered_and_when_forgotten() -> None:
    trust = TrustPolicy(trusted_networks=("10.0.0.0/8",), trusted_proxies=("192.0.2.0/24",))
    for _ in range(2):  # the second round answers from what the first remembered
        assert trust.is_trusted_address("10.1.2.3")
        assert not trust.is_trusted_address("192.0.2.1")
        assert trust.is_trusted_proxy("192.0.2.1")
        assert not trust.is_trusted_proxy("10.1.2.3")
    # a flood of distinct addresses: the memory is dropped, not grown, and answers hold
    for i in range(5000):
        assert not trust.is_trusted_address(f"203.0.{i // 256 % 256}.{i % 256}")
    assert len(trust._verdicts) <= 4096
    assert trust.is_trusted_address("10.1.2.3")
    assert not trust.is_trusted_address("not an address")
