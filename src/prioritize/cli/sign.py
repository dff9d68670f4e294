"""``prioritize sign``: print the headers that raise a request's level, for curl and tests.

The secret comes from the environment variables the policy names in
``trust.secret_env``, exactly as the service reads it, so a token this
command prints is one the service accepts. The output is two header lines,
ready for ``curl -H @file`` (or ``-H @<(prioritize sign critical)``).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path

import click

from ..core.classify import _unknown_name
from ..errors import ConfigError
from .common import fail, load_or_fail

__all__ = ["sign"]


def _seconds(ctx: click.Context, param: click.Parameter, text: str | None) -> float | None:
    """A finite number > 0; click's FloatRange would answer 'not a valid float range'."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"{text!r} is not a number of seconds > 0, e.g. 30")
    return value


@click.command()
@click.argument("level")
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The policy file (default: ./prioritize.toml, else ./pyproject.toml).",
)
@click.option(
    "--ttl",
    callback=_seconds,
    default=None,
    metavar="SECONDS",
    help="How long the token is valid (default: the policy's trust.token_ttl).",
)
def sign(level: str, policy_path: Path | None, ttl: float | None) -> None:
    """Print the priority header and a signed token for LEVEL, one per line."""
    policy = load_or_fail(policy_path)
    trust = policy.trust
    source = policy.source
    if level not in policy.levels:
        message = f"{_unknown_name('level', level, policy.levels.names)} (in {source})"
        raise click.BadParameter(message, param_hint="'LEVEL'")
    if not trust.secrets:
        message = (
            f"{source} names no secret to sign with; add secret_env = ['PRIORITY_SECRET'] "
            "to its [trust] table and set that environment variable"
        )
        fail(ConfigError(message))
    if ttl is not None and ttl > trust.max_token_ttl:
        raise click.BadParameter(
            f"{ttl:g} is more than trust.max_token_ttl ({trust.max_token_ttl:g}) in {source}; "
            "services with this policy would refuse the token",
            param_hint="'--ttl'",
        )
    if ttl is not None:
        trust = replace(trust, token_ttl=ttl)
    for name, value in trust.sign(level, time.time()).items():
        click.echo(f"{name}: {value}")
