"""The core is sans-I/O: it never imports a clock, an event loop, threads, sockets or files."""

from __future__ import annotations

import ast
from pathlib import Path

import prioritize.core

CORE = Path(prioritize.core.__file__).parent

#: Modules that read clocks, block, talk to the outside world or pull in an adapter.
FORBIDDEN = {
    "asyncio", "threading", "time", "socket", "selectors", "select", "subprocess",
    "multiprocessing", "concurrent", "os", "io", "pathlib", "shutil", "signal",
    "sqlite3", "ssl", "http", "urllib", "logging", "tempfile", "datetime", "random",
    "redis", "asyncpg", "sqlalchemy", "starlette", "httpx", "uvicorn", "click", "rich",
}  # fmt: skip
#: Core modules may import each other and the package's error types, nothing else local.
ALLOWED_LOCAL = {"errors", "adaptive.spec"}  # adaptive is sans-I/O too (its own purity test)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.append((node.lineno, node.module or ""))
            elif node.level == 2:  # from ..x import y: must be prioritize.errors
                found.append((node.lineno, f"..{node.module}"))
            elif node.level > 2:
                found.append((node.lineno, "." * node.level + (node.module or "")))
    return found


def test_core_imports_no_io_clock_or_adapter_module() -> None:
    offences = []
    modules = sorted(CORE.glob("*.py"))
    assert len(modules) >= 8, "the core's modules were not found"
    for path in modules:
        for line, name in imported_modules(path):
            if name.startswith(".."):
                if name[2:] not in ALLOWED_LOCAL:
                    offences.append(f"{path.name}:{line} imports {name}")
            elif name.split(".")[0] in FORBIDDEN:
                offences.append(f"{path.name}:{line} imports {name}")
    assert offences == []


def test_the_purity_check_catches_a_clock_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom asyncio import sleep\nfrom ..cli import main\n")
    names = [name for _, name in imported_modules(bad)]
    assert names == ["time", "asyncio", "..cli"]
