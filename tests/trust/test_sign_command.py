"""``prioritize sign``: the two headers for curl, and a clear message for every mistake."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from prioritize import TrustPolicy
from prioritize.cli import main
from prioritize.core.signing import key_id, verify_priority

SECRET = "s3cret-shared-by-every-service"
POLICY = """
levels = ["gold", "silver", "bronze"]
[trust]
secret_env = ["PRIO_SIGN_NEW", "PRIO_SIGN_OLD"]
token_ttl = 20
max_token_ttl = 120
"""
ENV = {"PRIO_SIGN_NEW": SECRET, "PRIO_SIGN_OLD": "the-old-one"}


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "svc.toml"
    path.write_text(POLICY, encoding="utf-8")
    return path


def sign(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(main, ["sign", *args], env=ENV if env is None else env)


def headers_of(result: Result) -> dict[str, str]:
    assert result.exit_code == 0, result.output
    return dict(line.split(": ", 1) for line in result.stdout.splitlines())


def test_prints_the_priority_header_and_a_token_the_service_accepts(policy: Path) -> None:
    before = time.time()
    headers = headers_of(sign("gold", "--policy", str(policy)))
    assert list(headers) == ["x-priority", "x-priority-token"]
    assert headers["x-priority"] == "gold"
    token = headers["x-priority-token"]
    assert token.split(".")[3] == key_id(SECRET.encode())  # the first secret signs
    expires = int(token.split(".")[2])
    assert before + 20 <= expires <= time.time() + 21  # the policy's token_ttl
    verified = verify_priority(token, secrets=(SECRET.encode(),), now=time.time())
    assert verified.level == "gold"
    service = TrustPolicy(secrets=(SECRET.encode(),))
    assert service.decide(headers, "203.0.113.7", time.time()).trusted


def test_ttl_sets_the_tokens_lifetime(policy: Path) -> None:
    before = time.time()
    headers = headers_of(sign("silver", "--policy", str(policy), "--ttl", "90"))
    assert before + 90 <= int(headers["x-priority-token"].split(".")[2]) <= time.time() + 91


def test_the_policy_is_found_in_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / "prioritize.toml").write_text(POLICY, encoding="utf-8")
    with contextlib.chdir(tmp_path):
        result = sign("bronze")
    assert headers_of(result)["x-priority"] == "bronze"


def test_the_header_names_come_from_the_policy(tmp_path: Path) -> None:
    path = tmp_path / "svc.toml"
    text = '[trust]\nsecret_env = "PRIO_SIGN_NEW"\npriority_header = "X-Prio"\n'
    path.write_text(text + 'signed_header = "X-Prio-Sig"\n', encoding="utf-8")
    assert list(headers_of(sign("high", "--policy", str(path)))) == ["x-prio", "x-prio-sig"]


def test_an_unknown_level_is_a_usage_error_with_a_suggestion(policy: Path) -> None:
    result = sign("glod", "--policy", str(policy))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert (
        "Error: Invalid value for 'LEVEL': unknown level 'glod'; did you mean 'gold'? "
        f"valid levels are ['gold', 'silver', 'bronze'] (in {policy})"
    ) in result.stderr


@pytest.mark.parametrize(
    ("ttl", "message"),
    [
        ("0", "Error: Invalid value for '--ttl': '0' is not a number of seconds > 0, e.g. 30"),
        ("-3", "Error: Invalid value for '--ttl': '-3' is not a number of seconds > 0, e.g. 30"),
        (
            "soon",
            "Error: Invalid value for '--ttl': 'soon' is not a number of seconds > 0, e.g. 30",
        ),
        ("inf", "Error: Invalid value for '--ttl': 'inf' is not a number of seconds > 0, e.g. 30"),
        ("nan", "Error: Invalid value for '--ttl': 'nan' is not a number of seconds > 0, e.g. 30"),
    ],
)
def test_a_ttl_that_is_not_a_positive_number_is_a_usage_error(
    policy: Path, ttl: str, message: str
) -> None:
    result = sign("gold", "--policy", str(policy), "--ttl", ttl)
    assert result.exit_code == 2
    assert message in result.stderr


def test_a_ttl_beyond_max_token_ttl_is_refused_since_services_would_refuse_it(
    policy: Path,
) -> None:
    result = sign("gold", "--policy", str(policy), "--ttl", "600")
    assert result.exit_code == 2
    assert (
        f"Error: Invalid value for '--ttl': 600 is more than trust.max_token_ttl (120) in "
        f"{policy}; services with this policy would refuse the token"
    ) in result.stderr


def test_an_unset_secret_variable_is_named_with_how_to_set_it(policy: Path) -> None:
    result = sign("gold", "--policy", str(policy), env={**ENV, "PRIO_SIGN_OLD": None})
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"1 problem in {policy}:",
        "  trust.secret_env[1]: environment variable PRIO_SIGN_OLD is not set; set it to the "
        "shared secret before starting, e.g. export PRIO_SIGN_OLD=$(openssl rand -hex 32) "
        "(the same value in every service that signs or verifies priority tokens)",
    ]


def test_an_empty_secret_variable_is_refused(policy: Path) -> None:
    result = sign("gold", "--policy", str(policy), env={**ENV, "PRIO_SIGN_NEW": ""})
    assert result.exit_code == 1
    assert "trust.secret_env[0]: environment variable PRIO_SIGN_NEW is empty" in result.stderr


def test_a_policy_without_secret_env_has_nothing_to_sign_with(tmp_path: Path) -> None:
    path = tmp_path / "plain.toml"
    path.write_text("[trust]\ntrusted_networks = ['10.0.0.0/8']\n", encoding="utf-8")
    result = sign("high", "--policy", str(path))
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {path} names no secret to sign with; add secret_env = ['PRIORITY_SECRET'] "
        "to its [trust] table and set that environment variable\n"
    )


def test_a_missing_policy_file_is_named(tmp_path: Path) -> None:
    result = sign("high", "--policy", str(tmp_path / "nothere.toml"))
    assert result.exit_code == 1
    assert "nothere.toml: no such policy file" in result.stderr
    assert "Traceback" not in result.output


def test_an_invalid_policy_lists_its_problems(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[trust]\nsecret = 'hunter2'\ntoken_ttl = 0\n", encoding="utf-8")
    result = sign("high", "--policy", str(path))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"2 problems in {path}:"
    assert lines[1].startswith("  trust.secret: secrets never go in the policy file")
    assert lines[2] == "  trust.token_ttl: 0 is not a number of seconds > 0"
    assert "hunter2" not in result.output


def test_help_describes_the_command() -> None:
    result = CliRunner().invoke(main, ["sign", "--help"])
    assert result.exit_code == 0
    assert "Print the priority header and a signed token for LEVEL" in result.output
    assert "--ttl SECONDS" in result.output
