"""The dependency graph runs one way: entry point → adapters → core."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "bot"
#: The entry point (``python -m bot``, ``serve``) composes the platforms; nothing else in the core may.
ENTRY_POINT = {"__main__.py", "cli.py", "serve.py"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_core_never_imports_a_platform():
    offenders = {
        str(path.relative_to(CORE)): sorted(
            n for n in imported_modules(path) if n.split(".")[0] in {"adapters", "slack_bolt", "slack_sdk", "discord"}
        )
        for path in CORE.rglob("*.py")
        if path.name not in ENTRY_POINT
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}
