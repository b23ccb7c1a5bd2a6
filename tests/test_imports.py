"""The import graph of hiddennets/ and pipeline/ has no cycle, counting every import (also those
inside functions; only `if TYPE_CHECKING:` blocks are left out), and config.py is at the bottom."""
from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("hiddennets", "pipeline")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The project modules `path` imports: `from a.b import c` is a.b.c if that is a module, else a.b."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != me)
    return found


def graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")]
    modules = {module_name(p) for p in files}
    return {module_name(p): imports_of(p, modules) for p in files}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycles_in_hiddennets_or_pipeline():
    edges = graph()
    assert len(edges) > 40 and "hiddennets.validation" in edges["hiddennets.run_dir"]
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges))


def test_config_is_at_the_bottom_and_validation_above_the_registries():
    edges = graph()
    assert edges["hiddennets.config"] == {"hiddennets.errors"}
    assert edges["hiddennets.errors"] == set()
    assert {"hiddennets.algorithms", "hiddennets.models", "hiddennets.data", "hiddennets.optim",
            "hiddennets.init"} <= edges["hiddennets.validation"]
    lower = {m for m in edges if m.startswith(("hiddennets.algorithms", "hiddennets.models", "hiddennets.data",
                                               "hiddennets.layers", "hiddennets.masks", "hiddennets.optim"))}
    assert not any("hiddennets.validation" in edges[m] for m in lower)
