"""``[processes]``: what a valid section becomes, the defaults, and every mistake's message."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from prioritize import ConfigError, LevelSet, parse_policy
from prioritize.cli import main
from prioritize.core.process_policy import (
    IoClass,
    IoPriority,
    ProcessPolicy,
    ProcessPriority,
    default_priority,
)

LEVELS = "['critical', 'high', 'normal', 'low', 'bulk']"
IONICE = (
    "'idle', 'best-effort' or 'realtime', optionally with a level from 0 (highest) to 7, "
    "like 'best-effort:7' (idle has no level)"
)
NICE = "a whole number from -20 (most favoured) to 19 (least)"
WEIGHT = "a whole number from 1 to 10000 (cgroup v2 cpu.weight; 100 is the default)"


def problems(processes: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_policy({"processes": processes})
    return [str(p) for p in info.value.problems]


def test_a_section_becomes_each_levels_priorities() -> None:
    policy = parse_policy(
        {
            "processes": {
                "cgroup": "/sys/fs/cgroup/app.service/children",
                "strict": True,
                "levels": {
                    "critical": {"nice": -5, "ionice": "realtime:2"},
                    "bulk": {"nice": 19, "ionice": "idle", "cpu_weight": 20},
                },
            }
        }
    )
    processes = policy.processes
    assert processes.cgroup == "/sys/fs/cgroup/app.service/children"
    assert processes.strict is True
    assert processes.defaults is True
    assert dict(processes.levels) == {
        "critical": ProcessPriority(-5, IoPriority(IoClass.REALTIME, 2)),
        "bulk": ProcessPriority(19, IoPriority(IoClass.IDLE), 20),
    }


def test_without_a_section_levels_below_the_default_are_niced() -> None:
    policy = parse_policy({})
    assert policy.processes == ProcessPolicy()
    got = {
        level.name: policy.processes.priority(level, policy.levels, policy.default_level)
        for level in policy.levels
    }
    below = ProcessPriority(10, IoPriority(IoClass.BEST_EFFORT, 7), is_default=True)
    least = ProcessPriority(19, IoPriority(IoClass.IDLE), is_default=True)
    inherit = ProcessPriority()
    assert got == {
        "critical": inherit,
        "high": inherit,
        "normal": inherit,
        "low": below,
        "bulk": least,
    }


def test_the_defaults_follow_a_level_set_of_its_own() -> None:
    levels = LevelSet(["interactive", "batch"])
    assert default_priority(levels["interactive"], levels, levels["interactive"]).is_inherited
    assert default_priority(levels["batch"], levels, levels["interactive"]).nice == 19
    # the default level is the least important: nothing is below it
    assert default_priority(levels["batch"], levels, levels["batch"]).is_inherited


def test_a_listed_level_gets_exactly_its_table() -> None:
    policy = parse_policy({"processes": {"levels": {"bulk": {"nice": 5}}}})
    bulk = policy.processes.priority(policy.levels["bulk"], policy.levels, policy.default_level)
    assert bulk == ProcessPriority(nice=5)  # no idle I/O class: the table replaces the default


def test_defaults_false_leaves_unlisted_levels_as_the_service_runs() -> None:
    policy = parse_policy({"processes": {"defaults": False}})
    for level in policy.levels:
        assert policy.processes.priority(level, policy.levels, policy.default_level).is_inherited


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("idle", IoPriority(IoClass.IDLE)),
        ("best-effort", IoPriority(IoClass.BEST_EFFORT, 4)),
        ("best-effort:0", IoPriority(IoClass.BEST_EFFORT, 0)),
        ("realtime:7", IoPriority(IoClass.REALTIME, 7)),
    ],
)
def test_ionice_values_parse_and_print_back(text: str, expected: IoPriority) -> None:
    parsed = IoPriority.parse(text)
    assert parsed == expected
    assert IoPriority.parse(str(parsed)) == parsed


@pytest.mark.parametrize(
    ("processes", "message"),
    [
        (5, "processes: 5 is not a table"),
        (
            {"strikt": True},
            "processes.strikt: unknown key; did you mean 'strict'? accepted keys: "
            "'cgroup', 'defaults', 'levels', 'strict'",
        ),
        (
            {"cgroup": "app.service"},
            "processes.cgroup: 'app.service' is not an absolute path to a cgroup v2 directory, "
            "like '/sys/fs/cgroup/app.service'",
        ),
        (
            {"cgroup": 5},
            "processes.cgroup: 5 is not an absolute path to a cgroup v2 directory, "
            "like '/sys/fs/cgroup/app.service'",
        ),
        ({"strict": "yes"}, "processes.strict: 'yes' is not true or false"),
        ({"defaults": 1}, "processes.defaults: 1 is not true or false"),
        ({"levels": []}, "processes.levels: [] is not a table"),
        (
            {"levels": {"bluk": {}}},
            f"processes.levels.bluk: unknown level 'bluk'; did you mean 'bulk'? "
            f"valid levels are {LEVELS}",
        ),
        ({"levels": {"low": 10}}, "processes.levels.low: 10 is not a table"),
        (
            {"levels": {"low": {"niceness": 10}}},
            "processes.levels.low.niceness: unknown key; did you mean 'nice'? accepted keys: "
            "'cpu_weight', 'ionice', 'nice'",
        ),
        ({"levels": {"low": {"nice": 20}}}, f"processes.levels.low.nice: 20 is not {NICE}"),
        ({"levels": {"low": {"nice": -21}}}, f"processes.levels.low.nice: -21 is not {NICE}"),
        ({"levels": {"low": {"nice": 2.5}}}, f"processes.levels.low.nice: 2.5 is not {NICE}"),
        ({"levels": {"low": {"nice": True}}}, f"processes.levels.low.nice: true is not {NICE}"),
        ({"levels": {"low": {"nice": "10"}}}, f"processes.levels.low.nice: '10' is not {NICE}"),
        (
            {"levels": {"low": {"ionice": "fast"}}},
            f"processes.levels.low.ionice: 'fast' is not {IONICE}",
        ),
        (
            {"levels": {"low": {"ionice": "idle:3"}}},
            f"processes.levels.low.ionice: 'idle:3' is not {IONICE}",
        ),
        (
            {"levels": {"low": {"ionice": "best-effort:8"}}},
            f"processes.levels.low.ionice: 'best-effort:8' is not {IONICE}",
        ),
        (
            {"levels": {"low": {"ionice": "realtime:-1"}}},
            f"processes.levels.low.ionice: 'realtime:-1' is not {IONICE}",
        ),
        ({"levels": {"low": {"ionice": 3}}}, f"processes.levels.low.ionice: 3 is not {IONICE}"),
        (
            {"levels": {"low": {"cpu_weight": 0}}},
            f"processes.levels.low.cpu_weight: 0 is not {WEIGHT}",
        ),
        (
            {"levels": {"low": {"cpu_weight": 10001}}},
            f"processes.levels.low.cpu_weight: 10001 is not {WEIGHT}",
        ),
        (
            {"levels": {"low": {"cpu_weight": 50.0}}},
            f"processes.levels.low.cpu_weight: 50.0 is not {WEIGHT}",
        ),
        (
            {"levels": {"low": {"cpu_weight": False}}},
            f"processes.levels.low.cpu_weight: false is not {WEIGHT}",
        ),
    ],
)
def test_each_mistake_is_reported_with_its_key_path_value_and_what_is_accepted(
    processes: object, message: str
) -> None:
    assert problems(processes) == [message]


def test_every_mistake_of_the_section_is_reported_at_once() -> None:
    found = problems(
        {
            "cgroup": "relative",
            "levels": {
                "low": {"nice": 99, "ionice": "fast"},
                "bulk": {"cpu_weight": 0},
                "lowest": {},
            },
        }
    )
    assert [p.split(":")[0] for p in found] == [
        "processes.cgroup",
        "processes.levels.low.nice",
        "processes.levels.low.ionice",
        "processes.levels.bulk.cpu_weight",
        "processes.levels.lowest",
    ]


def test_the_policys_top_level_keys_include_processes() -> None:
    with pytest.raises(ConfigError) as info:
        parse_policy({"proceses": {}})
    message = str(info.value)
    assert message.startswith("proceses: unknown key; did you mean 'processes'? accepted keys: ")
    assert "'processes'" in message.partition("accepted keys: ")[2]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ProcessPriority(nice=30), f"processes.levels.<level>.nice: 30 is not {NICE}"),
        (
            lambda: ProcessPriority(cpu_weight=0),
            f"processes.levels.<level>.cpu_weight: 0 is not {WEIGHT}",
        ),
        (
            lambda: ProcessPriority(ionice="idle"),  # type: ignore[arg-type]
            "processes.levels.<level>.ionice: 'idle' is not an IoPriority, "
            "like IoPriority.parse('idle')",
        ),
        (
            lambda: IoPriority(IoClass.BEST_EFFORT, 9),
            "ionice level 9 is not a whole number from 0 to 7",
        ),
        (
            lambda: ProcessPolicy(cgroup="cgroup"),
            "processes.cgroup: 'cgroup' is not an absolute path to a cgroup v2 directory, "
            "like '/sys/fs/cgroup/app.service'",
        ),
        (
            lambda: ProcessPolicy(levels={"low": 10}),  # type: ignore[dict-item]
            "processes.levels.low: 10 is not a ProcessPriority",
        ),
    ],
)
def test_objects_built_in_code_check_themselves(build: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build()  # type: ignore[operator]
    assert str(info.value) == message


def test_check_shows_what_children_of_each_level_run_with(tmp_path: Path) -> None:
    (tmp_path / "prioritize.toml").write_text(
        "[gates.processes]\ncapacity = 4\n"
        "[processes.levels.critical]\nnice = -5\n"
        "[processes.levels.bulk]\nnice = 19\nionice = 'idle'\ncpu_weight = 20\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["check", str(tmp_path / "prioritize.toml")])
    assert result.exit_code == 0, result.output
    tail = result.output.splitlines()[-8:]
    assert tail == [
        "child processes (prioritize.process), per level:",
        "  critical: nice -5, inherited I/O class, no cgroup",
        "  high: inherited nice, inherited I/O class, no cgroup",
        "  normal: inherited nice, inherited I/O class, no cgroup",
        "  low: nice 10, ionice best-effort:7, no cgroup (default)",
        "  bulk: nice 19, ionice idle, cpu.weight 20",
        "  cgroups per level in: this process's own cgroup v2 directory, if it is writable",
        "  a priority that cannot be applied is a warning",
    ]


def test_check_says_nothing_about_processes_when_the_policy_has_none(tmp_path: Path) -> None:
    (tmp_path / "prioritize.toml").write_text("[gates.api]\ncapacity = 4\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["check", str(tmp_path / "prioritize.toml")])
    assert result.exit_code == 0, result.output
    assert "child processes" not in result.output
