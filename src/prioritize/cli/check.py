"""``prioritize check``: validate a policy file and show what it resolves to.

Showing the resolved seats (``min = "10%"`` of 32 seats is 3) is the point:
percentages and defaults are where a policy surprises its author, and
seeing them resolved before deploying is cheaper than finding out under load.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import click
from rich import box
from rich.console import Console
from rich.table import Table

from ..core.classify import Rule
from ..core.config import Policy
from ..core.policy import GatePolicy, Percent, Quantity
from ..core.process_policy import ProcessPolicy
from ..core.signing import key_id
from ..core.trust import TrustPolicy
from ..simulate.load import LoadSpec
from .common import check_load, load_or_fail, stdout_console

__all__ = ["check"]


def _seats(resolved: int, configured: Quantity | None) -> str:
    return f"{resolved} ({configured})" if isinstance(configured, Percent) else str(resolved)


def _seconds(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:g} s"


def gate_table(gate: GatePolicy) -> Table:
    """One row per level: its knobs resolved to seats for the gate's capacity."""
    table = Table(
        title=f"gate {gate.name}: {gate.capacity} seats, order {gate.order.value}, "
        f"queue {gate.queue}",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    for name in ("level", "min", "max", "weight", "queue", "max_wait"):
        table.add_column(name, justify="left" if name == "level" else "right")
    for level, limits in zip(gate.level_set, gate.resolve(gate.capacity), strict=True):
        configured = gate.policy_for(level.name)
        table.add_row(
            level.name,
            _seats(limits.min, configured.min),
            _seats(limits.max, configured.max),
            f"{limits.weight:g}",
            str(limits.queue),
            _seconds(limits.max_wait),
        )
    return table


def _matchers(rule: Rule) -> str:
    parts: list[str] = []
    if rule.path_prefix is not None:
        parts.append(f"path starts with {rule.path_prefix}")
    if rule.path is not None:
        parts.append(f"path matches {rule.path}")
    for label, values in (("method", rule.methods), ("tenant", rule.tenants), ("plan", rule.plans)):
        if values:
            parts.append(f"{label} in {', '.join(sorted(values))}")
    for header, want in rule.headers.items():
        shown = " or ".join(want) if isinstance(want, tuple) else want
        parts.append(f"header {header} = {shown}")
    return " and ".join(parts) or "every request"


def rules_table(rules: Sequence[Rule], default_level: object) -> Table:
    """The classification rules in the order they are tried, then the default."""
    table = Table(title="rules (first match wins)", box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("level")
    table.add_column("when")
    for index, rule in enumerate(rules, start=1):
        table.add_row(str(index), rule.level, _matchers(rule))
    table.add_row("", str(default_level), "no rule matches (default level)")
    return table


def _load_line(spec: LoadSpec) -> str:
    warmup = f" after {spec.warmup:g} s warmup" if spec.warmup else ""
    return (
        f"[simulate]: gate {spec.gate}, {spec.offered_rate:,.0f} req/s over "
        f"{len(spec.levels)} levels for {spec.duration:g} s{warmup}, seed {spec.seed}"
    )


def trust_lines(trust: TrustPolicy) -> list[str]:
    """Who may raise their priority, in words: the settings a reviewer must see together.

    Secrets are never shown: how many, where they come from and their key
    ids (what a token names), so a rotation can be checked.
    """
    networks = ", ".join(trust.trusted_networks) or "none"
    proxies = ", ".join(trust.trusted_proxies) or "none"
    lines = [
        f"trust: {trust.priority_header} may lower a level; raising it takes a signed "
        f"token or a trusted network",
        f"  trusted networks: {networks}; proxies whose X-Forwarded-For is believed: {proxies}",
    ]
    if trust.secrets:
        where = f" from {', '.join(trust.secret_env)}" if trust.secret_env else ""
        ids = ", ".join(key_id(secret) for secret in trust.secrets)
        count = f"{len(trust.secrets)} secret{'s' if len(trust.secrets) > 1 else ''}"
        lines.append(
            f"  signed tokens ({trust.signed_header}): {count}{where}, key ids {ids}; "
            f"the first signs; tokens signed here live {trust.token_ttl:g} s, "
            f"at most {trust.max_token_ttl:g} s accepted"
        )
    else:
        lines.append(
            f"  signed tokens ({trust.signed_header}): no secret configured "
            "(trust.secret_env), so no token can raise a level"
        )
    return lines


def show_policy(console: Console, policy: Policy, load: LoadSpec | None) -> None:
    console.print(f"policy {policy.source}: valid", style="bold green")
    console.print(f"levels, most important first: {', '.join(policy.levels.names)}")
    for gate in policy.gates.values():
        console.print(gate_table(gate))
        spec = policy.adaptive.get(gate.name)
        if spec is not None:
            console.print(
                f"adaptive capacity: {spec.kind.value}, {spec.min} to {spec.max} "
                f"seats, starting at {spec.initial} (the table shows the start)",
                markup=False,
                highlight=False,
            )
        for warning in gate.warnings():
            console.print(f"warning: {warning}", style="yellow", markup=False, highlight=False)
    console.print(rules_table(policy.rules, policy.default_level))
    for line in trust_lines(policy.trust):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if "processes" in policy.gates or policy.processes != ProcessPolicy():
        for line in policy.processes.describe(policy.levels, policy.default_level):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    for budget in policy.budgets.values():
        for line in budget.describe():
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    if load is not None:
        console.print(_load_line(load), markup=False, highlight=False)


@click.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
def check(path: Path | None) -> None:
    """Validate a policy file and print its levels, gates (in seats) and rules.

    PATH defaults to the policy file found the way the library finds it.
    A [simulate] table, if any, is checked too. Exits 1 listing every
    problem, one per line with its key path.
    """
    policy = load_or_fail(path)
    load = check_load(policy, policy.simulate) if policy.simulate else None
    show_policy(stdout_console(), policy, load)
