"""The package layout: no import cycle between modules or between packages (a sub-package is one node, a
top-level module its own), and the entry points in ice_exp/apps/ are imported by nothing else in the package
(ice_exp/__main__.py, ``python -m ice_exp``, runs the discovery app)."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ice_exp"
ENTRY_ALIASES = {"ice_exp.__main__"}  # python -m ice_exp


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str) -> set[str]:
    """The ice_exp modules ``name`` imports anywhere in its source (also inside functions)."""
    tree = ast.parse(MODULES[name].read_text())
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def package_of(name: str) -> str:
    """A graph node: a top-level module is its own node, a module of a sub-package is that sub-package."""
    path = MODULES[name]
    if path.parent == PACKAGE:
        return name
    return module_name(path.parent / "__init__.py")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


MODULE_GRAPH = {name: imported(name) for name in MODULES}


def test_the_module_import_graph_is_acyclic():
    assert find_cycle(MODULE_GRAPH) is None, " -> ".join(find_cycle(MODULE_GRAPH))


def test_the_package_import_graph_is_acyclic():
    graph: dict[str, set[str]] = {}
    for name, targets in MODULE_GRAPH.items():
        graph.setdefault(package_of(name), set()).update(package_of(t) for t in targets if package_of(t) != package_of(name))
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_nothing_in_the_package_imports_the_apps():
    users = {name: sorted(t for t in targets if t.startswith("ice_exp.apps"))
             for name, targets in MODULE_GRAPH.items() if not name.startswith("ice_exp.apps") and name not in ENTRY_ALIASES}
    assert {k: v for k, v in users.items() if v} == {}


def test_the_import_graph_finder_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n != "ice_exp.__main__"))  # __main__ runs the app
def test_every_module_imports(name):
    importlib.import_module(name)
