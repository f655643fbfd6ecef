"""The package's shape: no import circles, no oversized modules.

The import graph is read from the source with :mod:`ast`, without importing anything. It holds
every import statement, also those inside functions: a function-local import that closes a
circle still makes the two modules depend on each other, it only hides that from a reader and
moves the failure from import time to the first call. Imports under ``if TYPE_CHECKING:`` never
run and are left out. Importing ``a.b.c`` also runs ``a/b/__init__.py``, so that edge is in the
graph too (the importer's own enclosing packages are already loading and are skipped).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import blinkstore_gunicorn

PACKAGE_DIR = Path(blinkstore_gunicorn.__file__).parent
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> str:
    """``blinkstore_gunicorn.server`` for ``blinkstore_gunicorn.server.store``."""
    return ".".join(module.split(".")[:2])


def is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node`` that can run (not under ``if TYPE_CHECKING:``)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, ast.If) and is_type_checking(child.test):
            for statement in child.orelse:
                yield from imports(ast.Module(body=[statement], type_ignores=[]))
        else:
            yield from imports(child)


def resolve(statement: ast.Import | ast.ImportFrom, importer: str, is_package: bool) -> set[str]:
    """The package modules ``statement`` names (for ``from x import y``: ``x.y`` if a module)."""
    if isinstance(statement, ast.Import):
        return {alias.name for alias in statement.names}
    base = statement.module or ""
    if statement.level:
        anchor = importer.split(".")
        anchor = anchor[: len(anchor) - statement.level + (1 if is_package else 0)]
        base = ".".join(anchor + ([base] if base else []))
    return {f"{base}.{alias.name}" for alias in statement.names} | {base}


def import_graph() -> tuple[dict[str, set[str]], dict[str, Path]]:
    paths = {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_package = path.name == "__init__.py"
        own_packages = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        targets: set[str] = set()
        for statement in imports(tree):
            for target in resolve(statement, name, is_package):
                if target not in paths:
                    continue
                # Importing a.b.c first runs a/__init__ and a/b/__init__.
                parts = target.split(".")
                for depth in range(1, len(parts) + 1):
                    step = ".".join(parts[:depth])
                    if step in paths and step not in own_packages and step != name:
                        targets.add(step)
        graph[name] = targets
    return graph, paths


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_no_import_cycles() -> None:
    graph, _ = import_graph()
    assert cycles(graph) == [], "modules that import each other (directly or through others)"


def test_no_cycles_between_layers() -> None:
    # The layers (cli, supervision, server, client...) may depend on each other one way only.
    graph, _ = import_graph()
    layers: dict[str, set[str]] = {}
    for module, targets in graph.items():
        layer = layer_of(module)
        layers.setdefault(layer, set()).update(
            layer_of(target) for target in targets if layer_of(target) != layer
        )
    assert cycles(layers) == [], "layers that import each other"


def test_the_graph_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_reads_relative_function_local_and_guarded_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "if TYPE_CHECKING:\n"
        "    from pkg.typed import T\n"
        "else:\n"
        "    import pkg.untyped\n"
        "def late():\n"
        "    from .sub.inner import f\n"
    )
    statements = list(imports(ast.parse(source)))
    names = set().union(*(resolve(s, "pkg.mod", is_package=False) for s in statements))
    assert {"pkg.sibling", "pkg.untyped", "pkg.sub.inner.f", "pkg.sub.inner"} <= names
    assert not any(name.startswith("pkg.typed") for name in names)


def test_no_module_is_too_long() -> None:
    _, paths = import_graph()
    lengths = {name: len(path.read_bytes().splitlines()) for name, path in paths.items()}
    too_long = {name: count for name, count in lengths.items() if count > MAX_LINES}
    assert too_long == {}, f"modules over {MAX_LINES} lines: split them by what they do"
