"""Reading a policy from a TOML file: the I/O half of `prioritize.core.config`.

The policy lives in ``prioritize.toml`` or in the ``[tool.prioritize]`` table
of ``pyproject.toml``. This module only finds and reads the file (stdlib
`tomllib`) and hands the table to `parse_policy`, which stays pure.

Every failure is a `ConfigError`, including a missing or unreadable file
(the `OSError` is kept as ``__cause__``): a program that loads its policy at
start-up catches one exception and prints it, whatever went wrong. Problems
found in ``pyproject.toml`` carry their full key path there
(``tool.prioritize.gates.api.capacity``). Errors about the file itself name
it in their message; errors about its contents carry a note naming it.

The secrets that sign priority tokens are read here too, from the
environment variables the file names in ``trust.secret_env``: the core never
reads the environment, and secrets never go in the file. An unset or empty
variable is reported with the file's other problems.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from .core.config import Policy, parse_policy
from .errors import ConfigError, Problem

__all__ = ["POLICY_FILE", "Policy", "load_policy", "policy_from_toml"]

#: The file `load_policy` looks for first when given no path.
POLICY_FILE = "prioritize.toml"
_PYPROJECT = "pyproject.toml"
_TOOL_TABLE = "tool.prioritize"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def load_policy(path: str | os.PathLike[str] | None = None) -> Policy:
    """Read and check the policy in ``path``, or find it in the current directory.

    With no path: ``./prioritize.toml``, else the ``[tool.prioritize]`` table
    of ``./pyproject.toml`` (a pyproject without that table is passed over),
    else `ConfigError` saying where it looked. A path whose file name is
    ``pyproject.toml`` is read through its ``[tool.prioritize]`` table, which
    must then exist. Parent directories are not searched: which policy a
    service runs should not depend on where it happens to be started from.
    The secrets named in ``trust.secret_env`` are read from the environment.
    """
    if path is not None:
        file = Path(path)
        return policy_from_toml(_read(file), str(file))
    here = Path.cwd()
    candidate = here / POLICY_FILE
    if candidate.is_file():
        return policy_from_toml(_read(candidate), str(candidate))
    pyproject = here / _PYPROJECT
    if pyproject.is_file():
        data = _parse_toml(_read(pyproject), str(pyproject))
        if _tool_table(data, str(pyproject)) is not None:
            return _build(data, str(pyproject))
    raise ConfigError(
        f"no policy found: looked for {candidate} and for a [{_TOOL_TABLE}] table "
        f"in {pyproject}; pass the policy file's path, or create one of these"
    )


def policy_from_toml(text: str, source: str) -> Policy:
    """Check the policy written in TOML ``text``; ``source`` names it in messages.

    If ``source`` is a file called ``pyproject.toml``, the policy is its
    ``[tool.prioritize]`` table. The secrets named in ``trust.secret_env`` are
    read from the environment; an unset or empty variable is a problem.
    """
    return _build(_parse_toml(text, source), source)


def _build(data: Mapping[str, object], source: str) -> Policy:
    is_pyproject = Path(source).name == _PYPROJECT
    table = _tool_table(data, source) if is_pyproject else data
    if table is None:
        raise ConfigError(f"{source} has no [{_TOOL_TABLE}] table; add the policy there")
    policy: Policy | None = None
    problems: list[Problem] = []
    try:
        policy = parse_policy(table, source)
        names = policy.trust.secret_env
    except ConfigError as exc:
        problems.extend(exc.problems)
        names = _secret_env_names(table)
    secrets, missing = _read_secrets(names)
    problems.extend(missing)
    if problems or policy is None:
        if is_pyproject:
            problems = [
                Problem(f"{_TOOL_TABLE}.{p.path}" if p.path else _TOOL_TABLE, p.message)
                for p in problems
            ]
        raise ConfigError(problems, source) from None
    if not secrets:
        return policy
    return replace(policy, trust=replace(policy.trust, secrets=secrets))


def _read_secrets(names: Sequence[str]) -> tuple[tuple[bytes, ...], list[Problem]]:
    """The secrets in the environment variables ``names``, or a problem for each one unset.

    Secrets never go in the policy file, which ends up in version control and
    in logs; the file names the variables (``trust.secret_env``) instead.
    """
    secrets: list[bytes] = []
    problems: list[Problem] = []
    for index, name in enumerate(names):
        value = os.environ.get(name)
        if value:
            secrets.append(value.encode("utf-8"))
            continue
        state = "is not set" if value is None else "is empty"
        message = (
            f"environment variable {name} {state}; set it to the shared secret before "
            f"starting, e.g. export {name}=$(openssl rand -hex 32) (the same value "
            "in every service that signs or verifies priority tokens)"
        )
        problems.append(Problem(f"trust.secret_env[{index}]", message))
    return tuple(secrets), problems


def _secret_env_names(table: Mapping[str, object]) -> tuple[str, ...]:
    """``trust.secret_env`` from a policy that failed to parse, if it is well-formed."""
    trust = table.get("trust")
    names = trust.get("secret_env") if isinstance(trust, Mapping) else None
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return ()
    return tuple(n for n in names if _ENV_NAME.fullmatch(n))


def _tool_table(data: Mapping[str, object], source: str) -> Mapping[str, object] | None:
    tool = data.get("tool")
    table = tool.get("prioritize") if isinstance(tool, Mapping) else None
    if table is not None and not isinstance(table, Mapping):
        raise ConfigError([Problem(_TOOL_TABLE, f"{table!r} is not a table (in {source})")])
    return table


def _parse_toml(text: str, source: str) -> dict[str, object]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message ends with "(at line L, column C)".
        raise ConfigError(f"{source} is not valid TOML: {exc}") from exc


def _read(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        where = "" if file.is_absolute() else f" (looked in {Path.cwd()})"
        raise ConfigError(f"{file}: no such policy file{where}") from exc
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the policy: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
