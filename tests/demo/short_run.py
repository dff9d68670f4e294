"""One short run of ``prioritize demo`` through the real command, shared by the tests that need it.

It starts real uvicorn servers and sends real HTTP, so it costs about ten
seconds; `short_demo` runs it once per test session and caches what it
printed, the report it wrote and the `DemoResult` it printed from (recorded
on its way to `demo_view`, so the figures and the text come from one run).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from click.testing import CliRunner

from prioritize.cli import main
from prioritize.demo import DemoResult
from prioritize.demo import view as demo_view_module

#: Short, but long enough to overload the queues: 2 s measured after 0.5 s of warm-up.
ARGS = ["demo", "--duration", "2", "--warmup", "0.5", "--seed", "7", "--quiet"]


@dataclass(frozen=True)
class ShortDemo:
    exit_code: int
    stdout: str
    stderr: str
    report: Path
    result: DemoResult

    @property
    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.stdout.splitlines()]


@functools.cache
def short_demo() -> ShortDemo:
    folder = Path(tempfile.mkdtemp(prefix="prioritize-demo-test-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    report = folder / "report.html"
    spy = mock.patch.object(demo_view_module, "demo_view", wraps=demo_view_module.demo_view)
    with spy as recorded:
        outcome = CliRunner().invoke(main, [*ARGS, "--report", str(report)])
    if outcome.exception is not None and not isinstance(outcome.exception, SystemExit):
        raise outcome.exception
    assert recorded.call_count == 1, outcome.output
    return ShortDemo(
        outcome.exit_code, outcome.stdout, outcome.stderr, report, recorded.call_args.args[0]
    )
