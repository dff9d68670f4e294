"""Signed priority tokens: how a trusted caller proves it may raise a request's level.

A client-sent level may only lower priority (`Classifier`); a token signed
with a secret the services share may raise it. The same token carries a
request's level from one service to the next, so priority holds inside the
system and not only at its entrance.

Wire format (the value of the ``x-priority-token`` header)::

    v1.<level>.<expires>.<key id>.<mac>

* ``v1``: the format version; any other is malformed.
* ``<level>``: a level name, ``[a-z][a-z0-9_-]{0,31}``.
* ``<expires>``: when the token stops being valid, in whole unix seconds.
* ``<key id>``: the first 8 hex digits of ``sha256(secret)``, so the verifier
  picks the secret by id instead of trying each one.
* ``<mac>``: HMAC-SHA256 with that secret over ``v1.<level>.<expires>.<key id>``,
  in base64url without padding (43 characters).

Rotation: list the new secret first (it signs) and keep the old ones after it
(they still verify) until every token they signed has expired, then drop them.

Verification never raises on what a client sent. It answers with one of three
problems: ``"malformed"`` (not a token at all), ``"forged"`` (unknown key id,
wrong MAC, or an expiry further ahead than any honest signer would set) and
``"expired"``. The MAC is checked before the expiry, so only a token this
system really signed can be reported as expired. Time is an argument: this
module never reads a clock.

Rejected alternatives: JWT, whose header lets the token choose its own
algorithm and whose JSON is far more than a level and an expiry need; and a
single secret without key ids, which makes rotation a flag day.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, final

__all__ = [
    "Verified",
    "check_level_name",
    "key_id",
    "keyring",
    "sign_priority",
    "verify_priority",
    "verify_with_keyring",
]

VERSION: Final = "v1"
_LEVEL = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_EXPIRES = re.compile(r"[0-9]{1,12}")  # ASCII digits only: int() also takes "1_0", "+1", "١"
_KEY_ID = re.compile(r"[0-9a-f]{8}")
_MAC = re.compile(r"[A-Za-z0-9_-]{43}")
#: Longer than any token this module makes; refused before any other work.
_MAX_LENGTH = 128


@final
@dataclass(frozen=True, slots=True)
class Verified:
    """What a token says: its level when valid, else why it was refused."""

    #: the level name a valid token carries, else None
    level: str | None
    #: None when valid, else one of "malformed", "forged", "expired"
    problem: str | None

    @property
    def is_valid(self) -> bool:
        return self.problem is None


_MALFORMED = Verified(None, "malformed")
_FORGED = Verified(None, "forged")
_EXPIRED = Verified(None, "expired")


def key_id(secret: bytes) -> str:
    """The id a token names its secret by: the first 8 hex digits of ``sha256(secret)``."""
    return hashlib.sha256(secret).hexdigest()[:8]


def check_level_name(level: str) -> None:
    """Raise `ValueError` unless ``level`` is a name a token can carry (any level's name can)."""
    if not isinstance(level, str) or not _LEVEL.fullmatch(level):
        raise ValueError(
            f"level {level!r} is not a level name: 1 to 32 lowercase letters, digits, "
            "'_' or '-', starting with a letter"
        )


def sign_priority(level: str, *, secret: bytes, now: float, ttl: float = 30.0) -> str:
    """A token saying ``level``, valid until ``now + ttl`` (unix seconds), signed with ``secret``.

    The expiry is rounded up to a whole second. Raises `ValueError` for an
    empty secret, a level that is not a level name, or a ``ttl`` that is not
    a finite number > 0: these come from the service, not from a client.
    """
    if not isinstance(secret, bytes) or not secret:
        raise ValueError(f"secret must be non-empty bytes, not {_describe(secret)}")
    check_level_name(level)
    if not _is_real(ttl) or not math.isfinite(ttl) or ttl <= 0:
        raise ValueError(f"ttl = {ttl!r}: expected a number of seconds > 0")
    if not _is_real(now) or not math.isfinite(now):
        raise ValueError(f"now = {now!r}: expected unix time in seconds")
    expires = math.ceil(now + ttl)
    body = f"{VERSION}.{level}.{expires}.{key_id(secret)}"
    return f"{body}.{_mac(secret, body)}"


def verify_priority(
    token: str,
    *,
    secrets: Sequence[bytes],
    now: float,
    max_ttl: float = 300.0,
    skew: float = 5.0,
) -> Verified:
    """The level ``token`` carries if one of ``secrets`` signed it and it is current.

    ``skew`` allows for clocks that disagree between services: a token is
    expired once ``expires < now - skew``. A token claiming to expire later
    than ``now + max_ttl + skew`` is refused as forged, which caps what a
    leaked token is worth. The level is not checked against any level set.
    Never raises on ``token``.
    """
    return verify_with_keyring(token, keyring=keyring(secrets), now=now, max_ttl=max_ttl, skew=skew)


def keyring(secrets: Sequence[bytes]) -> Mapping[str, tuple[bytes, ...]]:
    """``secrets`` by key id, for `verify_with_keyring`: built once, not per token."""
    ring: dict[str, tuple[bytes, ...]] = {}
    for secret in secrets:
        kid = key_id(secret)
        ring[kid] = (*ring.get(kid, ()), secret)  # two secrets may share an id: try both
    return ring


def verify_with_keyring(
    token: str,
    *,
    keyring: Mapping[str, tuple[bytes, ...]],
    now: float,
    max_ttl: float = 300.0,
    skew: float = 5.0,
) -> Verified:
    """`verify_priority` with the secrets already indexed by `keyring`, for hot paths."""
    parts = _parse(token)
    if parts is None:
        return _MALFORMED
    level, expires, kid, mac, body = parts
    if not any(hmac.compare_digest(mac, _digest(s, body)) for s in keyring.get(kid, ())):
        return _FORGED
    if expires < now - skew:
        return _EXPIRED
    if expires > now + max_ttl + skew:
        return _FORGED
    return Verified(level, None)


def _parse(token: object) -> tuple[str, int, str, bytes, str] | None:
    """``(level, expires, key id, mac, signed body)``, or None if ``token`` is not a token."""
    if not isinstance(token, str) or len(token) > _MAX_LENGTH:
        return None
    parts = token.strip().split(".")
    if len(parts) != 5:
        return None
    version, level, expires, kid, mac_text = parts
    if (
        version != VERSION
        or not _LEVEL.fullmatch(level)
        or not _EXPIRES.fullmatch(expires)
        or not _KEY_ID.fullmatch(kid)
        or not _MAC.fullmatch(mac_text)
    ):
        return None
    try:
        mac = base64.urlsafe_b64decode(mac_text + "=")
    except (binascii.Error, ValueError):
        return None
    if _encode(mac) != mac_text:  # one spelling per MAC: no unused bits set in the last character
        return None
    return level, int(expires), kid, mac, f"{version}.{level}.{expires}.{kid}"


def _digest(secret: bytes, body: str) -> bytes:
    return hmac.new(secret, body.encode("ascii"), hashlib.sha256).digest()


def _mac(secret: bytes, body: str) -> str:
    return _encode(_digest(secret, body))


def _encode(mac: bytes) -> str:
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _describe(value: object) -> str:
    """A value named without showing it: it may be a secret."""
    if isinstance(value, bytes) and not value:
        return "empty bytes"
    if isinstance(value, str) and not value:
        return "an empty str"
    return f"a {type(value).__name__}"
