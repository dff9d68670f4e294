"""``prioritize demo``'s options: each bad value is named with what is accepted, before any run."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from prioritize.cli import main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--duration", "0"], "Invalid value for '--duration': 0: expected seconds from 1 to 300"),
        (["--duration", "nan"], "Invalid value for '--duration': nan: expected seconds"),
        (["--duration", "soon"], "Invalid value for '--duration': 'soon' is not a valid float"),
        (
            ["--duration", "5", "--warmup", "6"],
            "Invalid value for '--warmup': 6: expected seconds from 0 to the duration (5)",
        ),
        (["--warmup", "-1"], "Invalid value for '--warmup': -1: expected seconds from 0"),
        (["--rate-factor", "0"], "Invalid value for '--rate-factor': 0: expected a number > 0"),
        (["--rate-factor", "20"], "≤ 8 (more would measure this machine's CPU, not the queues)"),
        (["--seed", "-1"], "Invalid value for '--seed': -1: expected a whole number from 0"),
        (["--seed", "1.5"], "Invalid value for '--seed': '1.5' is not a valid integer"),
    ],
)
def test_a_bad_option_is_a_usage_error_naming_it(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["demo", *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_every_bad_option_is_reported_at_once() -> None:
    result = CliRunner().invoke(main, ["demo", "--duration", "0", "--seed", "-1"])
    assert result.exit_code == 2
    assert "'--duration'" in result.stderr
    assert "'--seed'" in result.stderr


def test_a_report_path_that_cannot_be_written_is_refused_before_running(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(main, ["demo", "--report", str(tmp_path / "no" / "r.html")])
    assert missing.exit_code == 2
    assert "Invalid value for '--report'" in missing.stderr
    assert f"directory {str(tmp_path / 'no')!r} does not exist" in missing.stderr
    folder = runner.invoke(main, ["demo", "--report", str(tmp_path)])
    assert folder.exit_code == 2
    assert "is a directory; expected a file path" in folder.stderr


def test_without_uvicorn_the_demo_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a)
    )
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 1
    assert "pip install 'prioritize[http]'" in result.stderr


def test_the_command_is_listed_next_to_simulate() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert "demo" in result.output
    assert "simulate" in result.output
