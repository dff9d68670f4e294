"""Every bad trust setting, in code and in a policy file, is refused with its key path."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from prioritize import ConfigError, TrustPolicy, load_policy, parse_policy, policy_from_toml
from prioritize.core.signing import verify_priority

SECRET = b"s3cret-shared-by-every-service"
NETWORK = "is not a network like '10.0.0.0/8' or 'fd00::/8'"


def problems_of(**settings: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        TrustPolicy(**settings)  # type: ignore[arg-type]
    return [str(p) for p in info.value.problems]


# --- TrustPolicy in code --------------------------------------------------------------------


def test_the_defaults() -> None:
    trust = TrustPolicy()
    assert (trust.priority_header, trust.signed_header) == ("x-priority", "x-priority-token")
    assert (trust.secrets, trust.secret_env, trust.trusted_proxies) == ((), (), ())
    assert (trust.token_ttl, trust.max_token_ttl) == (30.0, 300.0)


def test_single_values_become_tuples_and_header_names_lowercase() -> None:
    trust = TrustPolicy(
        signed_header="X-Sig",
        secrets=SECRET,  # type: ignore[arg-type]
        secret_env="PRIORITY_SECRET",  # type: ignore[arg-type]
        trusted_proxies="10.0.0.0/8",  # type: ignore[arg-type]
    )
    assert trust.signed_header == "x-sig"
    assert trust.secrets == (SECRET,)
    assert trust.secret_env == ("PRIORITY_SECRET",)
    assert trust.trusted_proxies == ("10.0.0.0/8",)


def test_the_repr_never_shows_a_secret() -> None:
    trust = TrustPolicy(secrets=(SECRET,), secret_env=("PRIORITY_SECRET",))
    assert "s3cret" not in repr(trust)
    assert "PRIORITY_SECRET" in repr(trust)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {"signed_header": "x priority token"},
            "trust.signed_header: 'x priority token' is not a header name like 'x-priority'",
        ),
        ({"signed_header": ""}, "trust.signed_header: '' is not a header name like 'x-priority'"),
        (
            {"signed_header": "X-Priority"},
            "trust.signed_header: 'x-priority' is also the priority_header; use another name",
        ),
        (
            {"trusted_proxies": ("10.0.0.1/8",)},
            f"trust.trusted_proxies[0]: '10.0.0.1/8' {NETWORK} (10.0.0.1/8 has host bits set)",
        ),
        (
            {"trusted_proxies": ("10.0.0.0/8", "proxy.internal")},
            f"trust.trusted_proxies[1]: 'proxy.internal' {NETWORK} ('proxy.internal' does not "
            "appear to be an IPv4 or IPv6 network)",
        ),
        ({"secrets": (b"",)}, "trust.secrets[0]: empty; a secret is non-empty bytes"),
        (
            {"secrets": (SECRET, "text")},
            "trust.secrets[1]: a str, not bytes; encode the text, e.g. secret.encode()",
        ),
        ({"secrets": (42,)}, "trust.secrets[0]: a int, not bytes; a secret is non-empty bytes"),
        (
            {"secret_env": ("PRIORITY SECRET",)},
            "trust.secret_env[0]: 'PRIORITY SECRET' is not an environment variable name like "
            "'PRIORITY_SECRET' (letters, digits and '_', not starting with a digit)",
        ),
        (
            {"secret_env": ("OK", "1SECRET")},
            "trust.secret_env[1]: '1SECRET' is not an environment variable name like "
            "'PRIORITY_SECRET' (letters, digits and '_', not starting with a digit)",
        ),
        ({"token_ttl": 0}, "trust.token_ttl: 0 is not a number of seconds > 0"),
        ({"token_ttl": -5.0}, "trust.token_ttl: -5.0 is not a number of seconds > 0"),
        ({"token_ttl": float("inf")}, "trust.token_ttl: inf is not a number of seconds > 0"),
        ({"token_ttl": True}, "trust.token_ttl: True is not a number of seconds > 0"),
        ({"max_token_ttl": "300"}, "trust.max_token_ttl: '300' is not a number of seconds > 0"),
        (
            {"token_ttl": 60, "max_token_ttl": 30},
            "trust.max_token_ttl: 30 is less than token_ttl (60), so this service's own tokens "
            "would be refused; max_token_ttl must be ≥ token_ttl (default 300)",
        ),
    ],
)
def test_each_bad_setting_is_named_with_what_is_accepted(
    settings: dict[str, object], expected: str
) -> None:
    assert problems_of(**settings) == [expected]


def test_an_error_about_secrets_never_shows_them() -> None:
    message = "\n".join(problems_of(secrets=("hunter2", b"")))
    assert "hunter2" not in message


def test_every_bad_setting_is_reported_at_once() -> None:
    paths = [
        p.split(":")[0]
        for p in problems_of(
            signed_header="a b",
            trusted_proxies=("lan",),
            secrets=(b"",),
            secret_env=("-",),
            token_ttl=-1,
            max_token_ttl=0,
        )
    ]
    assert paths == [
        "trust.signed_header",
        "trust.trusted_proxies[0]",
        "trust.secrets[0]",
        "trust.secret_env[0]",
        "trust.token_ttl",
        "trust.max_token_ttl",
    ]


# --- the [trust] table ------------------------------------------------------------------------


def test_the_trust_table_sets_every_field() -> None:
    policy = parse_policy(
        {
            "trust": {
                "priority_header": "X-Prio",
                "signed_header": "X-Prio-Token",
                "secret_env": ["PRIO_NEW", "PRIO_OLD"],
                "token_ttl": 10,
                "max_token_ttl": 60.5,
                "trusted_networks": "10.0.0.0/8",
                "trusted_proxies": ["10.1.0.0/16", "fd10::/16"],
            }
        }
    )
    assert policy.trust == TrustPolicy(
        priority_header="x-prio",
        signed_header="x-prio-token",
        secret_env=("PRIO_NEW", "PRIO_OLD"),
        token_ttl=10,
        max_token_ttl=60.5,
        trusted_networks=("10.0.0.0/8",),
        trusted_proxies=("10.1.0.0/16", "fd10::/16"),
    )
    assert policy.trust.secrets == ()  # parse_policy never reads the environment


def test_secret_env_may_be_a_single_name() -> None:
    assert parse_policy({"trust": {"secret_env": "PRIO"}}).trust.secret_env == ("PRIO",)


def table_problems(trust: Mapping[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_policy({"trust": trust})
    return [str(p) for p in info.value.problems]


ACCEPTED_KEYS = (
    "accepted keys: 'max_token_ttl', 'priority_header', 'secret_env', 'signed_header', "
    "'token_ttl', 'trusted_networks', 'trusted_proxies'"
)
NO_SECRETS = (
    "secrets never go in the policy file; put each in an environment variable and list "
    "the variables' names in secret_env, e.g. secret_env = ['PRIORITY_SECRET']"
)


@pytest.mark.parametrize(
    ("trust", "expected"),
    [
        ({"signed_header": 5}, "trust.signed_header: 5 is not a header name"),
        (
            {"signed_header": "x sig"},
            "trust.signed_header: 'x sig' is not a header name like 'x-priority'",
        ),
        ({"secret_env": 5}, "trust.secret_env: 5 is not a string or a list of strings"),
        (
            {"secret_env": ["A", 1]},
            "trust.secret_env: ['A', 1] is not a string or a list of strings",
        ),
        (
            {"secret_env": ["$SECRET"]},
            "trust.secret_env[0]: '$SECRET' is not an environment variable name like "
            "'PRIORITY_SECRET' (letters, digits and '_', not starting with a digit)",
        ),
        ({"token_ttl": 0}, "trust.token_ttl: 0 is not a number of seconds > 0"),
        ({"token_ttl": "30s"}, "trust.token_ttl: '30s' is not a number of seconds > 0"),
        ({"token_ttl": True}, "trust.token_ttl: true is not a number of seconds > 0"),
        (
            {"max_token_ttl": float("inf")},
            "trust.max_token_ttl: inf is not a number of seconds > 0",
        ),
        ({"max_token_ttl": -1}, "trust.max_token_ttl: -1 is not a number of seconds > 0"),
        (
            {"token_ttl": 600},
            "trust.max_token_ttl: 300 is less than token_ttl (600), so this service's own "
            "tokens would be refused; max_token_ttl must be ≥ token_ttl (default 300)",
        ),
        (
            {"trusted_proxies": "10.0.0.0/33"},
            f"trust.trusted_proxies[0]: '10.0.0.0/33' {NETWORK} ('10.0.0.0/33' does not appear "
            "to be an IPv4 or IPv6 network)",
        ),
        (
            {"trusted_proxies": [10]},
            "trust.trusted_proxies: [10] is not a string or a list of strings",
        ),
        (
            {"trusted_proxy": ["10.0.0.0/8"]},
            f"trust.trusted_proxy: unknown key; did you mean 'trusted_proxies'? {ACCEPTED_KEYS}",
        ),
        (
            {"token_tll": 5},
            f"trust.token_tll: unknown key; did you mean 'token_ttl'? {ACCEPTED_KEYS}",
        ),
        ({"secret": "hunter2"}, f"trust.secret: {NO_SECRETS}"),
        ({"secrets": ["hunter2"]}, f"trust.secrets: {NO_SECRETS}"),
        ({"key": "hunter2"}, f"trust.key: {NO_SECRETS}"),
    ],
)
def test_each_mistake_in_the_trust_table_is_named_with_its_key_path(
    trust: Mapping[str, object], expected: str
) -> None:
    assert table_problems(trust) == [expected]


def test_a_wrong_ttl_is_not_blamed_on_the_other_ttl() -> None:
    # The default standing in for a wrong value must not clash with the other one.
    assert table_problems({"token_ttl": "x", "max_token_ttl": 5}) == [
        "trust.token_ttl: 'x' is not a number of seconds > 0"
    ]
    assert table_problems({"token_ttl": 900, "max_token_ttl": "x"}) == [
        "trust.max_token_ttl: 'x' is not a number of seconds > 0"
    ]


def test_a_max_token_ttl_below_the_default_token_ttl_is_a_real_clash() -> None:
    assert [p.split(":")[0] for p in table_problems({"max_token_ttl": 10})] == [
        "trust.max_token_ttl"
    ]


def test_every_mistake_in_the_trust_table_is_reported_at_once() -> None:
    problems = table_problems(
        {
            "secret": "x",
            "signed_header": 1,
            "secret_env": ["1X"],
            "token_ttl": -1,
            "trusted_proxies": ["lan"],
        }
    )
    assert [p.split(":")[0] for p in problems] == [
        "trust.secret",
        "trust.signed_header",
        "trust.token_ttl",
        "trust.trusted_proxies[0]",
        "trust.secret_env[0]",
    ]


# --- secrets from the environment, when a policy file is loaded -----------------------------

POLICY = """
[trust]
secret_env = ["PRIO_TEST_NEW", "PRIO_TEST_OLD"]
"""


def test_loading_a_policy_reads_its_secrets_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PRIO_TEST_NEW", "new-secret")
    monkeypatch.setenv("PRIO_TEST_OLD", "old-secret")
    trust = policy_from_toml(POLICY, "svc.toml").trust
    assert trust.secrets == (b"new-secret", b"old-secret")
    token = trust.sign("critical", 1_800_000_000)["x-priority-token"]
    verified = verify_priority(token, secrets=(b"new-secret",), now=1_800_000_000)
    assert verified.level == "critical"


def test_load_policy_reads_secrets_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIO_TEST_NEW", "new-secret")
    monkeypatch.setenv("PRIO_TEST_OLD", "old-secret")
    path = tmp_path / "prioritize.toml"
    path.write_text(POLICY, encoding="utf-8")
    assert load_policy(path).trust.secrets == (b"new-secret", b"old-secret")


def test_an_unset_or_empty_secret_variable_is_named_with_how_to_set_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PRIO_TEST_NEW", raising=False)
    monkeypatch.setenv("PRIO_TEST_OLD", "")
    with pytest.raises(ConfigError) as info:
        policy_from_toml(POLICY, "svc.toml")
    assert info.value.source == "svc.toml"
    assert [str(p) for p in info.value.problems] == [
        "trust.secret_env[0]: environment variable PRIO_TEST_NEW is not set; set it to the "
        "shared secret before starting, e.g. export PRIO_TEST_NEW=$(openssl rand -hex 32) "
        "(the same value in every service that signs or verifies priority tokens)",
        "trust.secret_env[1]: environment variable PRIO_TEST_OLD is empty; set it to the "
        "shared secret before starting, e.g. export PRIO_TEST_OLD=$(openssl rand -hex 32) "
        "(the same value in every service that signs or verifies priority tokens)",
    ]


def test_unset_secrets_are_reported_with_the_files_other_problems(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PRIO_TEST_NEW", raising=False)
    text = '[gates.api]\ncapacity = 0\n[trust]\nsecret_env = "PRIO_TEST_NEW"\n'
    with pytest.raises(ConfigError) as info:
        policy_from_toml(text, "svc.toml")
    assert [p.path for p in info.value.problems] == ["gates.api.capacity", "trust.secret_env[0]"]


def test_in_pyproject_the_secret_problem_has_the_full_key_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PRIO_TEST_NEW", raising=False)
    text = '[tool.prioritize.trust]\nsecret_env = ["PRIO_TEST_NEW"]\n'
    with pytest.raises(ConfigError) as info:
        policy_from_toml(text, "pyproject.toml")
    assert [p.path for p in info.value.problems] == ["tool.prioritize.trust.secret_env[0]"]


def test_a_policy_without_secret_env_reads_no_environment() -> None:
    assert policy_from_toml("[trust]\ntoken_ttl = 5\n", "svc.toml").trust.secrets == ()
