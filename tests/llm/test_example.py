"""examples/llm_jobs.py runs: a critical job is answered while the nightly batch is still queued."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "llm_jobs.py"


def test_a_live_critical_request_is_not_stuck_behind_the_nightly_batch() -> None:
    spec = importlib.util.spec_from_file_location("llm_jobs_example", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    figures = example.main(nightly=60, rpm=600)  # the answer itself is checked inside
    # in FIFO order the whole batch (60 calls, 6 s at 600 rpm) would be done first
    assert figures["batch_done_before"] < 60
