"""load_policy and policy_from_toml: finding, reading and decoding policy files."""

from __future__ import annotations

from pathlib import Path

import pytest

from prioritize.config import load_policy, policy_from_toml
from prioritize.errors import ConfigError

POLICY = """\
default_level = "low"

[gates.api]
capacity = 8

[gates.api.levels.critical]
min = "25%"
max_wait = inf

[[rules]]
level = "critical"
path_prefix = "/payments"
"""

PYPROJECT = """\
[project]
name = "service"

[tool.prioritize]
default_level = "high"

[tool.prioritize.gates.db]
capacity = 4
"""

PYPROJECT_WITHOUT_POLICY = """\
[project]
name = "service"

[tool.ruff]
line-length = 100
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path | str | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    return info.value


# --- explicit paths ---------------------------------------------------------------------


def test_policy_file_is_loaded_from_a_path(tmp_path: Path) -> None:
    path = write(tmp_path, "prioritize.toml", POLICY)
    policy = load_policy(path)
    assert policy.source == str(path)
    assert policy.default_level.name == "low"
    assert policy.gate("api").resolve(8)[0].min == 2
    assert policy.gate("api").policy_for("critical").max_wait == float("inf")
    assert policy.rules[0].path_prefix == "/payments"


def test_path_may_be_a_string_and_any_file_name(tmp_path: Path) -> None:
    path = write(tmp_path, "staging.toml", POLICY)
    assert load_policy(str(path)).gate("api").capacity == 8


def test_pyproject_is_read_through_its_tool_prioritize_table(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "pyproject.toml", PYPROJECT))
    assert policy.default_level.name == "high"
    assert list(policy.gates) == ["db"]


def test_pyproject_without_the_table_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "pyproject.toml", PYPROJECT_WITHOUT_POLICY)
    assert str(error_of(path)) == f"{path} has no [tool.prioritize] table; add the policy there"


def test_problems_in_pyproject_carry_their_full_key_path(tmp_path: Path) -> None:
    text = PYPROJECT + "capacty = 5\n"
    error = error_of(write(tmp_path, "pyproject.toml", text))
    assert [str(p) for p in error.problems] == [
        "tool.prioritize.gates.db.capacty: unknown key; did you mean 'capacity'? "
        "accepted keys: 'capacity', 'levels', 'order', 'queue'"
    ]


def test_tool_prioritize_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "pyproject.toml", '[tool]\nprioritize = "yes"\n')
    assert str(error_of(path)) == f"tool.prioritize: 'yes' is not a table (in {path})"


def test_problems_of_a_file_name_it(tmp_path: Path) -> None:
    path = write(tmp_path, "prioritize.toml", "[gates.api]\ncapacity = 0\n")
    error = error_of(path)
    assert str(error) == f"gates.api.capacity: 0 is not a whole number ≥ 1 (in {path})"
    assert error.source == str(path)


def test_every_problem_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    text = """\
default_level = "urgent"

[gates.api]
capacity = "64"
order = "fast"

[[rules]]
level = "critical"
method = []
"""
    error = error_of(write(tmp_path, "prioritize.toml", text))
    assert len(error.problems) == 4
    assert str(error).startswith(f"4 problems in {error.source}:\n  - default_level: ")


def test_toml_booleans_are_not_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "prioritize.toml", "[gates.api]\ncapacity = true\n")
    assert str(error_of(path)) == f"gates.api.capacity: true is not a whole number ≥ 1 (in {path})"


# --- reading failures ---------------------------------------------------------------------


def test_toml_syntax_error_names_the_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "prioritize.toml", "[gates.api]\ncapacity = \n")
    error = error_of(path)
    assert str(error) == f"{path} is not valid TOML: Invalid value (at line 2, column 12)"
    assert error.__cause__ is not None


def test_missing_file_is_a_config_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    error = error_of(path)
    assert str(error) == f"{path}: no such policy file"
    assert isinstance(error.__cause__, FileNotFoundError)


def test_missing_relative_file_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert str(error_of("nope.toml")) == f"nope.toml: no such policy file (looked in {tmp_path})"


def test_directory_is_refused(tmp_path: Path) -> None:
    assert str(error_of(tmp_path)).startswith(f"{tmp_path}: cannot read the policy: ")


def test_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "prioritize.toml"
    path.write_bytes(b"default_level = '\xff'\n")
    assert str(error_of(path)) == (f"{path}: not UTF-8 text (invalid start byte at byte 17)")


# --- finding the policy ---------------------------------------------------------------------


def test_prioritize_toml_in_the_current_directory_is_found_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "prioritize.toml", POLICY)
    write(tmp_path, "pyproject.toml", PYPROJECT)
    monkeypatch.chdir(tmp_path)
    policy = load_policy()
    assert policy.source == str(tmp_path / "prioritize.toml")
    assert list(policy.gates) == ["api"]


def test_pyproject_table_is_used_when_there_is_no_prioritize_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "pyproject.toml", PYPROJECT)
    monkeypatch.chdir(tmp_path)
    assert list(load_policy().gates) == ["db"]


def test_no_policy_found_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "pyproject.toml", PYPROJECT_WITHOUT_POLICY)
    monkeypatch.chdir(tmp_path)
    assert str(error_of()) == (
        f"no policy found: looked for {tmp_path / 'prioritize.toml'} and for a "
        f"[tool.prioritize] table in {tmp_path / 'pyproject.toml'}; pass the policy "
        "file's path, or create one of these"
    )


def test_parent_directories_are_not_searched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "prioritize.toml", POLICY)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert str(error_of()).startswith("no policy found: ")


# --- TOML text -------------------------------------------------------------------------------


def test_policy_from_toml_text() -> None:
    policy = policy_from_toml(POLICY, "inline")
    assert policy.source == "inline"
    assert policy.gate("api").capacity == 8


def test_policy_from_toml_reads_a_pyproject_through_its_table() -> None:
    assert list(policy_from_toml(PYPROJECT, "service/pyproject.toml").gates) == ["db"]


def test_the_shipped_example_policy_is_valid() -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "prioritize.toml"
    assert load_policy(example).gates
