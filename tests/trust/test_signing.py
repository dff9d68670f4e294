"""Signed priority tokens: what verifies, what is refused and why, and that nothing raises."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from prioritize.core.signing import (
    Verified,
    key_id,
    keyring,
    sign_priority,
    verify_priority,
    verify_with_keyring,
)

SECRET = b"s3cret-shared-by-every-service"
OLD = b"the-secret-before-rotation"
OTHER = b"a-secret-nobody-here-knows"
NOW = 1_800_000_000.0


def verify(token: str, *, now: float = NOW, secrets: tuple[bytes, ...] = (SECRET,)) -> Verified:
    return verify_priority(token, secrets=secrets, now=now)


def forge(body: str, secret: bytes) -> str:
    """A token with any body, MAC'd by hand, to reach checks a real signer never fails."""
    mac = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    return f"{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


# --- valid tokens --------------------------------------------------------------------------


def test_a_signed_token_verifies_to_its_level() -> None:
    token = sign_priority("critical", secret=SECRET, now=NOW)
    assert verify(token) == Verified("critical", None)
    assert verify(token).is_valid


def test_the_wire_format_is_version_level_expiry_key_id_mac() -> None:
    token = sign_priority("high", secret=SECRET, now=NOW, ttl=30)
    version, level, expires, kid, mac = token.split(".")
    assert (version, level, expires, kid) == ("v1", "high", str(int(NOW) + 30), key_id(SECRET))
    assert kid == hashlib.sha256(SECRET).hexdigest()[:8]
    assert len(mac) == 43
    assert "=" not in mac
    assert forge(f"v1.high.{int(NOW) + 30}.{kid}", SECRET) == token


def test_the_expiry_is_rounded_up_to_a_whole_second() -> None:
    token = sign_priority("low", secret=SECRET, now=NOW + 0.2, ttl=0.5)
    assert token.split(".")[2] == str(int(NOW) + 1)


def test_a_level_name_no_service_has_is_still_a_valid_token() -> None:
    # Which names mean something is the classifier's business, not the signature's.
    token = sign_priority("gold-2", secret=SECRET, now=NOW)
    assert verify(token) == Verified("gold-2", None)


def test_surrounding_whitespace_is_ignored() -> None:
    token = sign_priority("high", secret=SECRET, now=NOW)
    assert verify(f"  {token} ").level == "high"


# --- rotation ------------------------------------------------------------------------------


def test_after_rotation_the_old_secret_still_verifies_and_the_new_one_signs() -> None:
    rotated = (SECRET, OLD)  # new first: it signs; the old one stays to verify
    signed_before = sign_priority("critical", secret=OLD, now=NOW)
    signed_after = sign_priority("critical", secret=rotated[0], now=NOW)
    assert key_id(OLD) in signed_before
    assert key_id(SECRET) in signed_after
    assert verify(signed_before, secrets=rotated).level == "critical"
    assert verify(signed_after, secrets=rotated).level == "critical"


def test_once_the_old_secret_is_dropped_its_tokens_are_forged() -> None:
    signed_before = sign_priority("critical", secret=OLD, now=NOW)
    assert verify(signed_before, secrets=(SECRET,)) == Verified(None, "forged")


def test_a_service_without_secrets_refuses_every_token_as_forged() -> None:
    token = sign_priority("critical", secret=SECRET, now=NOW)
    assert verify(token, secrets=()) == Verified(None, "forged")


# --- forged -------------------------------------------------------------------------------


def test_a_token_signed_with_an_unknown_secret_is_forged() -> None:
    token = sign_priority("critical", secret=OTHER, now=NOW)
    assert verify(token) == Verified(None, "forged")


def test_a_token_naming_our_key_id_but_signed_with_another_secret_is_forged() -> None:
    token = forge(f"v1.critical.{int(NOW) + 30}.{key_id(SECRET)}", OTHER)
    assert verify(token) == Verified(None, "forged")


def test_a_raised_level_under_the_original_mac_is_forged() -> None:
    token = sign_priority("bulk", secret=SECRET, now=NOW)
    assert verify(token.replace(".bulk.", ".critical.")) == Verified(None, "forged")


def test_an_extended_expiry_under_the_original_mac_is_forged() -> None:
    token = sign_priority("high", secret=SECRET, now=NOW - 600)
    expires = token.split(".")[2]
    stretched = token.replace(f".{expires}.", f".{int(expires) + 600}.")
    assert verify(stretched) == Verified(None, "forged")


def test_a_changed_mac_is_forged() -> None:
    token = sign_priority("high", secret=SECRET, now=NOW)
    body, mac = token.rsplit(".", 1)
    other_mac = ("B" if mac[0] == "A" else "A") + mac[1:]
    assert verify(f"{body}.{other_mac}") == Verified(None, "forged")


def test_an_unknown_key_id_is_forged() -> None:
    token = sign_priority("high", secret=SECRET, now=NOW)
    assert verify(token.replace(key_id(SECRET), "00000000")) == Verified(None, "forged")


def test_an_expiry_beyond_the_longest_lifetime_is_forged_even_if_signed() -> None:
    # The signer's secret is right but no honest signer sets a day: a leaked
    # token, or a misconfigured signer, is worth max_ttl at most.
    token = sign_priority("critical", secret=SECRET, now=NOW, ttl=86_400)
    assert verify(token) == Verified(None, "forged")
    at_the_limit = sign_priority("critical", secret=SECRET, now=NOW, ttl=300 + 5)
    assert verify(at_the_limit).level == "critical"
    just_beyond = sign_priority("critical", secret=SECRET, now=NOW, ttl=300 + 6)
    assert verify(just_beyond) == Verified(None, "forged")
    assert verify_priority(token, secrets=(SECRET,), now=NOW, max_ttl=86_400).level == "critical"


# --- expired ------------------------------------------------------------------------------


def test_a_token_past_its_expiry_and_the_skew_is_expired() -> None:
    token = sign_priority("critical", secret=SECRET, now=NOW, ttl=30)
    assert verify(token, now=NOW + 30).level == "critical"
    assert verify(token, now=NOW + 35).level == "critical"  # within the 5 s skew
    assert verify(token, now=NOW + 36) == Verified(None, "expired")
    assert verify_priority(token, secrets=(SECRET,), now=NOW + 36, skew=10).level == "critical"


def test_an_expired_token_with_a_bad_mac_is_forged_not_expired() -> None:
    token = sign_priority("critical", secret=OTHER, now=NOW - 3600)
    assert verify(token.replace(key_id(OTHER), key_id(SECRET))) == Verified(None, "forged")


# --- malformed ----------------------------------------------------------------------------

GOOD = sign_priority("high", secret=SECRET, now=NOW)
V, LEVEL, EXPIRES, KID, MAC = GOOD.split(".")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "   ",
        "critical",
        "v1",
        f"{V}.{LEVEL}.{EXPIRES}.{KID}",  # a part missing
        f"{GOOD}.extra",  # a part too many
        f"v2.{LEVEL}.{EXPIRES}.{KID}.{MAC}",  # another version
        f"V1.{LEVEL}.{EXPIRES}.{KID}.{MAC}",
        f"v1.High.{EXPIRES}.{KID}.{MAC}",  # not a level name
        f"v1..{EXPIRES}.{KID}.{MAC}",
        f"v1.{'a' * 33}.{EXPIRES}.{KID}.{MAC}",
        f"v1.1high.{EXPIRES}.{KID}.{MAC}",
        f"v1.{LEVEL}.soon.{KID}.{MAC}",  # expiry not an integer
        f"v1.{LEVEL}.{EXPIRES}.5.{KID}.{MAC}",
        f"v1.{LEVEL}.-{EXPIRES}.{KID}.{MAC}",
        f"v1.{LEVEL}.+{EXPIRES}.{KID}.{MAC}",
        f"v1.{LEVEL}.1_800_000_030.{KID}.{MAC}",
        f"v1.{LEVEL}.{'١' * 10}.{KID}.{MAC}",  # Arabic-Indic digits int() would take
        f"v1.{LEVEL}.{'9' * 40}.{KID}.{MAC}",
        f"v1.{LEVEL}.{EXPIRES}.{KID.upper()}.{MAC}",  # key id not lowercase hex
        f"v1.{LEVEL}.{EXPIRES}.{KID}0.{MAC}",
        f"v1.{LEVEL}.{EXPIRES}.xyzxyzxy.{MAC}",
        f"v1.{LEVEL}.{EXPIRES}.{KID}.{MAC}=",  # padding
        f"v1.{LEVEL}.{EXPIRES}.{KID}.{MAC[:-1]}",  # MAC too short
        f"v1.{LEVEL}.{EXPIRES}.{KID}.{MAC}A",
        f"v1.{LEVEL}.{EXPIRES}.{KID}.{MAC[:-1]}+",  # not base64url
        f"v1.{LEVEL}.{EXPIRES}.{KID}.{MAC[:-1]}é",
        f"v1.{LEVEL}.{EXPIRES}.{KID}.{MAC[:20]} {MAC[21:]}",
        "v1." + "x" * 500,
        "\x00" * 10,
    ],
)
def test_anything_that_is_not_a_token_is_malformed(token: str) -> None:
    assert verify(token) == Verified(None, "malformed")


def test_a_mac_spelled_with_unused_bits_set_is_malformed() -> None:
    # 43 base64 characters carry 258 bits for a 256-bit MAC: the last character
    # has two spare bits. Only the one canonical spelling of each MAC is accepted.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(MAC[-1])
    assert last % 4 == 0
    for spare in (1, 2, 3):
        variant = f"{V}.{LEVEL}.{EXPIRES}.{KID}.{MAC[:-1]}{alphabet[last + spare]}"
        assert verify(variant) == Verified(None, "malformed")


def test_a_token_that_is_not_a_string_is_malformed() -> None:
    assert verify(None) == Verified(None, "malformed")  # type: ignore[arg-type]
    assert verify(GOOD.encode()) == Verified(None, "malformed")  # type: ignore[arg-type]


# --- bad arguments from the service -------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"secret": b""}, "secret must be non-empty bytes, not empty bytes"),
        ({"secret": "text"}, "secret must be non-empty bytes, not a str"),
        ({"level": "High"}, "level 'High' is not a level name: 1 to 32 lowercase letters"),
        ({"level": ""}, "level '' is not a level name"),
        ({"level": "a.b"}, "level 'a.b' is not a level name"),
        ({"ttl": 0}, "ttl = 0: expected a number of seconds > 0"),
        ({"ttl": -1.5}, "ttl = -1.5: expected a number of seconds > 0"),
        ({"ttl": float("inf")}, "ttl = inf: expected a number of seconds > 0"),
        ({"ttl": True}, "ttl = True: expected a number of seconds > 0"),
        ({"now": float("nan")}, "now = nan: expected unix time in seconds"),
    ],
)
def test_signing_with_a_bad_argument_says_what_is_accepted(
    kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"level": "high", "secret": SECRET, "now": NOW, **kwargs}
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        sign_priority(**args)  # type: ignore[arg-type]


def test_an_error_about_a_secret_never_shows_it() -> None:
    with pytest.raises(ValueError, match="not a str") as info:
        sign_priority("high", secret="hunter2", now=NOW)  # type: ignore[arg-type]
    assert "hunter2" not in str(info.value)


# --- properties ---------------------------------------------------------------------------

LEVEL_NAMES = st.from_regex(r"[a-z][a-z0-9_-]{0,31}", fullmatch=True)
SECRETS = st.binary(min_size=1, max_size=64)
TIMES = st.floats(min_value=0, max_value=4e9, allow_nan=False)
TTLS = st.floats(min_value=0.001, max_value=300, allow_nan=False)


@given(level=LEVEL_NAMES, secret=SECRETS, now=TIMES, ttl=TTLS)
def test_a_signed_token_verifies_to_its_level_for_its_whole_lifetime(
    level: str, secret: bytes, now: float, ttl: float
) -> None:
    token = sign_priority(level, secret=secret, now=now, ttl=ttl)
    for at in (now, now + ttl):
        assert verify_priority(token, secrets=(OTHER, secret), now=at) == Verified(level, None)
    assert verify_priority(token, secrets=(secret,), now=now + ttl + 7).problem == "expired"


@given(st.text(max_size=200))
def test_arbitrary_text_never_raises_and_is_never_valid(text: str) -> None:
    result = verify(text)
    assert result.level is None
    assert result.problem in {"malformed", "forged", "expired"}


@given(st.from_regex(r"v1\.[a-z]{1,8}\.[0-9]{10}\.[0-9a-f]{8}\.[A-Za-z0-9_-]{43}", fullmatch=True))
def test_well_formed_text_with_a_made_up_mac_is_never_valid(text: str) -> None:
    # malformed only when the made-up MAC's last character has its spare bits set
    assert verify(text).problem in {"forged", "malformed"}


@given(position=st.integers(min_value=0, max_value=len(GOOD) - 1), char=st.characters())
def test_changing_any_one_character_of_a_real_token_never_yields_a_valid_one(
    position: int, char: str
) -> None:
    changed = GOOD[:position] + char + GOOD[position + 1 :]
    assume(changed != GOOD)
    result = verify(changed)
    assert result.level is None
    assert result.problem in {"malformed", "forged", "expired"}


def test_a_keyring_indexes_secrets_by_key_id_and_tries_each_under_one_id() -> None:
    ring = keyring((SECRET, OLD))
    assert dict(ring) == {key_id(SECRET): (SECRET,), key_id(OLD): (OLD,)}
    token = sign_priority("high", secret=SECRET, now=NOW)
    # Two secrets whose ids collide (1 in 4 billion) are both tried.
    shared = {key_id(SECRET): (OTHER, SECRET)}
    assert verify_with_keyring(token, keyring=shared, now=NOW) == Verified("high", None)
    assert verify_with_keyring(token, keyring={}, now=NOW) == Verified(None, "forged")
