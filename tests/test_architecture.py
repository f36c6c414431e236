"""The package reads as its pipeline: no module imports one that imports it back, directly or not."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "titlegen_lib"


def project_imports(path: Path) -> set[str]:
    """The titlegen_lib modules a file imports anywhere in it (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("titlegen_lib"):
            parts = node.module.split(".")
            if len(parts) > 1:
                found.add(parts[1])
            else:  # from titlegen_lib import data
                found.update(alias.name for alias in node.names if (PACKAGE / f"{alias.name}.py").is_file())
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("titlegen_lib."))
    return found - {path.stem}


def import_graph() -> dict[str, set[str]]:
    return {path.stem: project_imports(path) for path in PACKAGE.glob("*.py")}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A list of modules that import each other in a ring, or None."""
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> list[str] | None:
        state[module] = "open"
        for imported in sorted(graph.get(module, ())):
            if state.get(imported) == "open":
                return trail[trail.index(imported):] + [imported] if imported in trail else [module, imported]
            if imported not in state and (ring := visit(imported, trail + [imported])):
                return ring
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (ring := visit(module, [module])):
            return ring
    return None


def test_the_package_has_no_import_cycle():
    assert find_cycle(import_graph()) is None, " -> ".join(find_cycle(import_graph()))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"config": {"models"}, "models": {"config"}}) == ["config", "models", "config"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_config_needs_no_loader():
    # config validates model names from the registry; importing it must not pull in the loaders or torch
    assert "models" not in import_graph()["config"]
