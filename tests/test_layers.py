"""Imports only go down: core <- edge, collector, sim <- demo (and the umbrella command).

Every ``import`` in the source roots, function-local ones included, is read from the syntax tree,
so a lazy import that climbs a layer is caught too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# source root -> the kerbside packages its modules may import
ALLOWED = {
    "core": {"kerbside.core"},
    "edge": {"kerbside.core", "kerbside.edge"},
    "collector": {"kerbside.core", "kerbside.collector"},
    "firmware-sim": {"kerbside.core", "kerbside.sim"},
    "demo": {
        "kerbside.core",
        "kerbside.edge",
        "kerbside.collector",
        "kerbside.sim",
        "kerbside.demo",
        "kerbside.cli",
    },
}


def _kerbside_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "kerbside":
                found += [(node.lineno, f"kerbside.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name.split(".")[0] == "kerbside"]


def _package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


@pytest.mark.parametrize("root", sorted(ALLOWED))
def test_imports_only_go_down(root: str) -> None:
    files = sorted((REPO / root).rglob("*.py"))
    assert files, f"no modules under {root}/"
    wrong = [
        f"{path.relative_to(REPO)}:{line}: imports {module}"
        for path in files
        for line, module in _kerbside_imports(path)
        if _package_of(module) not in ALLOWED[root]
    ]
    assert wrong == []


def test_the_checker_sees_a_climbing_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from kerbside.collector.store import Store\n")
    assert _kerbside_imports(module) == [(2, "kerbside.collector.store")]
