"""The adaptive package is sans-I/O like the core, and its public names are deliberate."""

from __future__ import annotations

from pathlib import Path

import prioritize.adaptive
from tests.core.test_purity import FORBIDDEN, imported_modules

PACKAGE = Path(prioritize.adaptive.__file__).parent
#: Local modules the adaptive package may use: its own, the core's, the errors.
ALLOWED_LOCAL = {"..core", "..errors"}


def test_adaptive_imports_no_clock_io_or_adapter_module() -> None:
    offences = []
    for path in sorted(PACKAGE.glob("*.py")):
        for line, module in imported_modules(path):
            top = module.split(".")[0]
            local = module.startswith("..")
            if (local and not any(module.startswith(a) for a in ALLOWED_LOCAL)) or (
                not local and top in FORBIDDEN
            ):
                offences.append(f"{path.name}:{line}: {module}")
    assert offences == []


def test_adaptive_all_is_sorted_and_exported() -> None:
    assert prioritize.adaptive.__all__ == [
        "AIMD", "AdaptiveCapacity", "AdaptiveSpec", "ControllerKind", "Gradient",
        "LimitController", "parse_adaptive",
    ]  # fmt: skip
    for name in prioritize.adaptive.__all__:
        assert getattr(prioritize.adaptive, name) is not None
