"""Trust: whether the caller of a request may raise its level, and who that caller is.

A client-sent priority header may only lower a request's level (the rule
lives in `Classifier`); `TrustPolicy.decide` says when a caller may also
raise it: it sent a valid signed token (`prioritize.core.signing`), or its
address is in a trusted network. The ASGI middleware calls ``decide`` with
the request's headers and the socket's peer address; the outbound HTTP
transport calls ``sign`` to carry the level to the next service.

``X-Forwarded-For`` is believed only when the peer is a configured reverse
proxy: anyone else can write any address into it, and trusting it would let
a client claim to come from a trusted network. The list is read from the
right, skipping the configured proxies; the first address that is not one
of them is the client, because each proxy appends the address it saw and
only those appends can be believed.

Headers that fail (malformed, forged, expired tokens) are reported in the
decision's ``ignored``, never raised: they come from clients, and a bad
header must cost its sender the raise, not the request.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import final

from ..errors import ConfigError, Problem
from .signing import check_level_name, keyring, sign_priority, verify_with_keyring

__all__ = ["TrustDecision", "TrustPolicy"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
#: RFC 9110 token: what a header name may be made of (as in classify.py).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FORWARDED_FOR = "x-forwarded-for"
_MAX_TOKEN_TTL = 300.0


@final
@dataclass(frozen=True, slots=True)
class TrustDecision:
    """What `TrustPolicy.decide` concluded about one request.

    Pass ``requested`` and ``trusted`` on to `RequestInfo`; count ``ignored``.
    """

    #: the level name the caller asks for: a valid token's level, else the plain
    #: priority header's value (stripped; None when absent or blank)
    requested: str | None
    #: the caller may raise its level: a valid token, or the client is in trusted_networks
    trusted: bool
    #: the client's address after X-Forwarded-For processing (the peer if no trusted
    #: proxy is involved)
    client: str | None
    #: why a signed header was ignored ("malformed", "forged", "expired"), else None
    ignored: str | None


@final
@dataclass(frozen=True, slots=True)
class TrustPolicy:
    """Who may raise priority, and how the level travels to the next service.

    ``priority_header`` carries a requested level (anyone may use it to lower
    theirs). ``signed_header`` carries a token signed with one of ``secrets``:
    the first one signs, all of them verify (rotation: docs/trust.md).
    ``secret_env`` names the environment variables the secrets are read from
    when a policy file is loaded (the core never reads the environment).
    ``token_ttl`` is the lifetime of tokens this service signs; tokens claiming
    to live longer than ``max_token_ttl`` are refused. ``trusted_networks`` are
    CIDR networks whose callers are trusted; ``trusted_proxies`` are the
    reverse proxies whose ``X-Forwarded-For`` is believed. Secrets are left out
    of the repr. Raises `ConfigError` naming every malformed setting.
    """

    priority_header: str = "x-priority"
    trusted_networks: tuple[str, ...] = ()
    signed_header: str = "x-priority-token"
    secrets: tuple[bytes, ...] = field(default=(), repr=False)
    secret_env: tuple[str, ...] = ()
    token_ttl: float = 30.0
    max_token_ttl: float = _MAX_TOKEN_TTL
    trusted_proxies: tuple[str, ...] = ()
    _networks: tuple[_Network, ...] = field(init=False, default=(), repr=False, compare=False)
    _proxies: tuple[_Network, ...] = field(init=False, default=(), repr=False, compare=False)
    #: address -> (in trusted_networks, in trusted_proxies); peers repeat, and each
    #: ``ip in network`` test is a Python call: decided once per address
    _verdicts: dict[str, tuple[bool, bool]] = field(
        init=False, default_factory=dict, repr=False, compare=False, hash=False
    )
    _keyring: Mapping[str, tuple[bytes, ...]] = field(
        init=False, default_factory=dict, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("trusted_networks", "secrets", "secret_env", "trusted_proxies"):
            set_(self, name, _as_tuple(getattr(self, name)))
        for name in ("priority_header", "signed_header"):
            value = getattr(self, name)
            if isinstance(value, str):
                set_(self, name, value.lower())
        problems = self.problems()
        if problems:
            raise ConfigError(problems)
        set_(self, "_networks", tuple(ipaddress.ip_network(t) for t in self.trusted_networks))
        set_(self, "_proxies", tuple(ipaddress.ip_network(t) for t in self.trusted_proxies))
        set_(self, "_keyring", MappingProxyType(dict(keyring(self.secrets))))

    def problems(self, prefix: str = "trust") -> list[Problem]:
        """Every malformed setting, each with its key path under ``prefix``."""
        out: list[Problem] = []
        for key in ("priority_header", "signed_header"):
            value = getattr(self, key)
            if not isinstance(value, str) or not _TOKEN.fullmatch(value):
                message = f"{value!r} is not a header name like 'x-priority'"
                out.append(Problem(f"{prefix}.{key}", message))
        if self.signed_header == self.priority_header:
            message = f"{self.signed_header!r} is also the priority_header; use another name"
            out.append(Problem(f"{prefix}.signed_header", message))
        out.extend(_network_problems(f"{prefix}.trusted_networks", self.trusted_networks))
        out.extend(_network_problems(f"{prefix}.trusted_proxies", self.trusted_proxies))
        out.extend(
            Problem(f"{prefix}.secrets[{index}]", _secret_problem(secret))
            for index, secret in enumerate(self.secrets)
            if not isinstance(secret, bytes) or not secret
        )
        for index, name in enumerate(self.secret_env):
            if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
                message = (
                    f"{name!r} is not an environment variable name like 'PRIORITY_SECRET' "
                    "(letters, digits and '_', not starting with a digit)"
                )
                out.append(Problem(f"{prefix}.secret_env[{index}]", message))
        ttls_valid = True
        for key in ("token_ttl", "max_token_ttl"):
            value = getattr(self, key)
            if not _is_positive_seconds(value):
                ttls_valid = False
                message = f"{value!r} is not a number of seconds > 0"
                out.append(Problem(f"{prefix}.{key}", message))
        if ttls_valid and self.max_token_ttl < self.token_ttl:
            message = (
                f"{_seconds(self.max_token_ttl)} is less than token_ttl "
                f"({_seconds(self.token_ttl)}), so this "
                "service's own tokens would be refused; max_token_ttl must be ≥ token_ttl "
                f"(default {_MAX_TOKEN_TTL:g})"
            )
            out.append(Problem(f"{prefix}.max_token_ttl", message))
        return out

    def is_trusted_address(self, address: str) -> bool:
        """True if ``address`` (an IP, as the socket reports it) is in a trusted network."""
        return self._networks != () and self._verdict(address)[0]

    def is_trusted_proxy(self, address: str) -> bool:
        """True if ``address`` is a reverse proxy whose ``X-Forwarded-For`` is believed."""
        return self._proxies != () and self._verdict(address)[1]

    def _verdict(self, address: str) -> tuple[bool, bool]:
        verdicts = self._verdicts
        found = verdicts.get(address) if isinstance(address, str) else None
        if found is None:
            ip = _parse_address(address)
            found = (
                ip is not None and _within(ip, self._networks),
                ip is not None and _within(ip, self._proxies),
            )
            if isinstance(address, str):
                if len(verdicts) >= _VERDICTS_KEPT:
                    verdicts.clear()  # a flood of distinct addresses costs a re-parse, not memory
                verdicts[address] = found
        return found

    def decide(self, headers: Mapping[str, str], peer: str | None, now: float) -> TrustDecision:
        """Who the caller is, which level it asks for, and whether it may raise it.

        ``headers`` has lowercase names, several values of one header joined
        with ``", "``; ``peer`` is the socket's peer address (None if there is
        none, e.g. a Unix socket). A token that fails verification is reported
        in ``ignored``, and the plain header still applies (it can then only
        lower the level, unless the client's address is trusted). Never raises
        on anything the client sent.
        """
        client = self.client_address(headers, peer)
        trusted = client is not None and self.is_trusted_address(client)
        ignored: str | None = None
        token = headers.get(self.signed_header)
        if token is not None:
            verified = verify_with_keyring(
                token, keyring=self._keyring, now=now, max_ttl=self.max_token_ttl
            )
            if verified.level is not None:
                return TrustDecision(verified.level, True, client, None)
            ignored = verified.problem
        plain = headers.get(self.priority_header)
        requested = (plain.strip() or None) if plain is not None else None
        return TrustDecision(requested, trusted, client, ignored)

    def client_address(self, headers: Mapping[str, str], peer: str | None) -> str | None:
        """The client's address: ``peer``, or read from X-Forwarded-For if ``peer`` is a proxy.

        Walks the list from the right past trusted proxies; the first other
        address is the client. If every entry is a trusted proxy the leftmost
        is the client; an entry that is not an IP address stops the walk, and
        the last address walked past (or the peer) is the client.
        """
        forwarded = headers.get(_FORWARDED_FOR)
        if peer is None or forwarded is None or not self.is_trusted_proxy(peer):
            return peer
        client = peer
        for entry in reversed(forwarded.split(",")):
            hop = entry.strip()
            ip = _parse_address(hop)
            if ip is None:
                break
            client = hop
            if not _within(ip, self._proxies):
                break
        return client

    def sign(self, level: str, now: float) -> dict[str, str]:
        """The headers that carry ``level`` to the next service.

        With a secret configured: the priority header and a token signed with
        the first secret, valid for ``token_ttl``; without one, the priority
        header alone (the next service lets it only lower the level). Raises
        `ValueError` if ``level`` is not a level name.
        """
        if not self.secrets:
            check_level_name(level)
            return {self.priority_header: level}
        token = sign_priority(level, secret=self.secrets[0], now=now, ttl=self.token_ttl)
        return {self.priority_header: level, self.signed_header: token}


def _as_tuple(values: object) -> tuple[object, ...]:
    # A bare string (or bytes) would otherwise become a tuple of its characters.
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        return (values,)
    return tuple(values)


def _network_problems(path: str, networks: tuple[str, ...]) -> list[Problem]:
    out: list[Problem] = []
    for index, text in enumerate(networks):
        try:
            ipaddress.ip_network(text)
        except (ValueError, TypeError) as exc:
            message = f"{text!r} is not a network like '10.0.0.0/8' or 'fd00::/8' ({exc})"
            out.append(Problem(f"{path}[{index}]", message))
    return out


#: addresses whose verdicts are remembered at most
_VERDICTS_KEPT = 4096


def _parse_address(text: str) -> _Address | None:
    """An IP address, IPv4-mapped IPv6 read as the IPv4 it maps; None if not an address."""
    return _parse_text(text) if isinstance(text, str) else None


@lru_cache(maxsize=4096)
def _parse_text(text: str) -> _Address | None:
    # ip_address() costs about 3 µs and every request parses its peer; peers repeat.
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _within(ip: _Address, networks: tuple[_Network, ...]) -> bool:
    return any(ip in network for network in networks)


def _is_positive_seconds(value: object) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    return math.isfinite(value) and value > 0


def _seconds(value: float) -> str:
    """``300`` rather than ``300.0``: the default is a float, the user may have written neither."""
    return str(int(value)) if float(value).is_integer() else repr(value)


def _secret_problem(secret: object) -> str:
    """What is wrong with a secret, said without showing it."""
    if isinstance(secret, bytes | str) and not secret:
        return "empty; a secret is non-empty bytes"
    if isinstance(secret, str):
        return "a str, not bytes; encode the text, e.g. secret.encode()"
    return f"a {type(secret).__name__}, not bytes; a secret is non-empty bytes"
