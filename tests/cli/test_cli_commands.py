"""The `prioritize` command: check and simulate, through click's runner and as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from prioritize import __version__
from prioritize.cli import main
from prioritize.core.signing import key_id

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "prioritize.toml"
#: A short run of the example, enough for the CLI's plumbing.
SHORT = ["--duration", "2", "--warmup", "0", "--quiet"]

BAD_POLICY = """
[gates.api]
capacity = 0
[gates.api.levels.critcal]
min = 1
[[rules]]
level = "urgent"
path_prefix = "/x"
"""

BAD_LOAD = """
[gates.api]
capacity = 4
[simulate]
duration = -1
[simulate.load.bulk]
rate = 10
service = { dist = "normal", mean = 0.1 }
"""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prioritize.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_check_shows_levels_gates_in_seats_and_rules(runner: CliRunner) -> None:
    result = runner.invoke(main, ["check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "critical, high, normal, low, bulk" in out
    assert "gate api: 32 seats, order strict, queue 256" in out
    assert "3 (10%)" in out  # critical's min, resolved
    assert "8 (25%)" in out  # bulk's max, resolved
    assert "path starts with /payments" in out
    assert "no rule matches (default level)" in out


def test_check_lists_every_problem_and_exits_1(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["check", str(write(tmp_path, BAD_POLICY))])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert any(line.strip().startswith("gates.api.capacity: 0 is not") for line in lines)
    assert any(line.strip().startswith("gates.api.levels.critcal: unknown level") for line in lines)
    assert any(line.strip().startswith("rules[0].level: unknown level 'urgent'") for line in lines)
    assert "Traceback" not in result.output


def test_check_of_a_missing_file_exits_1_without_traceback(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = runner.invoke(main, ["check", str(tmp_path / "nope.toml")])
    assert result.exit_code == 1
    assert "nope.toml" in result.stderr
    assert "Traceback" not in result.output


def test_simulate_prints_policy_and_fifo_side_by_side(runner: CliRunner) -> None:
    result = runner.invoke(main, ["simulate", str(EXAMPLE), *SHORT])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "gate api · 32 seats · queue 256 · seed 1" in out
    assert "policy" in out
    assert "FIFO" in out
    for level in ("critical", "high", "normal", "low", "bulk", "total"):
        assert f"\n {level} " in out
    assert all(len(line) <= 100 for line in out.splitlines())


def test_simulate_json_to_stdout_is_only_json(runner: CliRunner) -> None:
    result = runner.invoke(main, ["simulate", str(EXAMPLE), *SHORT, "--json", "-"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["duration"] == 2
    for run in ("policy", "fifo"):
        for level in data[run]["levels"]:
            assert level["offered"] == level["served"] + level["shed"]


def test_simulate_json_to_a_file_also_prints_the_table(runner: CliRunner, tmp_path: Path) -> None:
    target = tmp_path / "figures.json"
    result = runner.invoke(main, ["simulate", str(EXAMPLE), *SHORT, "--json", str(target)])
    assert result.exit_code == 0, result.output
    assert json.loads(target.read_text(encoding="utf-8"))["gate"] == "api"
    assert "requests shed, by reason" in result.stdout


def test_flags_override_the_simulate_table(runner: CliRunner) -> None:
    args = ["simulate", str(EXAMPLE), *SHORT, "--seed", "5", "--overload", "0.5"]
    args += ["--rate", "critical=10", "--json", "-"]
    data = json.loads(runner.invoke(main, args).stdout)
    assert data["seed"] == 5
    assert data["overload"] == 0.5
    assert data["load"][0] == {
        "level": "critical",
        "rate": 5.0,
        "service": {"dist": "lognormal", "mean": 0.05, "sigma": 0.5},
        "flows": 1,
        "skew": 0.0,
    }


def test_a_bad_flag_value_is_a_problem_with_its_key_path(runner: CliRunner) -> None:
    args = ["simulate", str(EXAMPLE), "--rate", "bulk=-3", "--rate", "critcal=1", "--quiet"]
    result = runner.invoke(main, args)
    assert result.exit_code == 1
    assert "  simulate.load.bulk.rate: -3 is not a number > 0" in result.stderr.splitlines()
    assert "simulate.load.critcal: unknown level 'critcal'; did you mean 'critical'?" in (
        result.stderr
    )


def test_a_malformed_rate_flag_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(main, ["simulate", str(EXAMPLE), "--rate", "bulk"])
    assert result.exit_code == 2
    assert "LEVEL=RATE" in result.stderr


def test_simulate_with_a_bad_load_lists_every_problem(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["simulate", str(write(tmp_path, BAD_LOAD))])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = [line.strip() for line in result.stderr.splitlines()]
    assert "simulate.duration: -1 is not a number > 0" in lines
    assert (
        "simulate.load.bulk.service.dist: 'normal' is not one of "
        "['constant', 'exponential', 'lognormal', 'uniform']; did you mean 'lognormal'?"
    ) in lines


def test_simulate_with_a_bad_policy_exits_1(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["simulate", str(write(tmp_path, BAD_POLICY))])
    assert result.exit_code == 1
    assert "gates.api.capacity" in result.stderr
    assert "Traceback" not in result.output


def test_the_installed_command_runs_the_example_as_json() -> None:
    command = Path(sys.executable).with_name("prioritize")
    done = subprocess.run(
        [str(command), "simulate", str(EXAMPLE), "--json", "-"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    policy = {level["level"]: level for level in data["policy"]["levels"]}
    fifo = {level["level"]: level for level in data["fifo"]["levels"]}
    assert policy["critical"]["wait"]["p99"] < fifo["critical"]["wait"]["p99"] / 5
    assert policy["critical"]["shed"] < fifo["critical"]["shed"]


def test_importing_the_library_imports_neither_click_nor_rich() -> None:
    code = (
        "import sys, prioritize, prioritize.simulate; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('click', 'rich')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_check_warns_about_a_level_that_can_never_hold_a_seat(tmp_path: Path) -> None:
    policy = tmp_path / "prioritize.toml"
    policy.write_text(
        "[gates.api]\ncapacity = 4\n"
        '[gates.api.levels.critical]\nmin = "50%"\n'
        '[gates.api.levels.high]\nmin = "50%"\n'
    )
    result = CliRunner().invoke(main, ["check", str(policy)])
    assert result.exit_code == 0
    assert "warning: gates.api.levels.normal: can never hold a seat" in result.output


def test_check_shows_an_adaptive_capacity(tmp_path: Path) -> None:
    policy = tmp_path / "prioritize.toml"
    policy.write_text('[gates.api]\ncapacity = { adaptive = "aimd", min = 2, max = 50 }\n')
    result = CliRunner().invoke(main, ["check", str(policy)])
    assert result.exit_code == 0, result.output
    assert "adaptive capacity: aimd, 2 to 50 seats, starting at 20" in result.output


def test_check_shows_who_may_raise_their_priority_without_showing_secrets(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOP_PRIORITY_SECRET", "new secret of the shop")
    monkeypatch.setenv("SHOP_PRIORITY_SECRET_OLD", "old secret of the shop")
    policy = """
[gates.api]
capacity = 8

[trust]
trusted_networks = ["10.0.0.0/8"]
secret_env = ["SHOP_PRIORITY_SECRET", "SHOP_PRIORITY_SECRET_OLD"]
token_ttl = 20
"""
    result = runner.invoke(main, ["check", str(write(tmp_path, policy))])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "trust: x-priority may lower a level; raising it takes a signed token" in out
    assert "trusted networks: 10.0.0.0/8; proxies whose X-Forwarded-For is believed: none" in out
    new, old = key_id(b"new secret of the shop"), key_id(b"old secret of the shop")
    assert (
        "signed tokens (x-priority-token): 2 secrets from SHOP_PRIORITY_SECRET, "
        f"SHOP_PRIORITY_SECRET_OLD, key ids {new}, {old}; the first signs; "
        "tokens signed here live 20 s, at most 300 s accepted"
    ) in out
    assert "secret of the shop" not in out


def test_check_says_when_no_token_can_raise_a_level(runner: CliRunner) -> None:
    result = runner.invoke(main, ["check", str(EXAMPLE)])
    assert "no secret configured (trust.secret_env), so no token can raise a level" in result.stdout
