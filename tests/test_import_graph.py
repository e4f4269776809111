"""The import graph of ``safework``: no cycles, and the layers hold.

Every module of the package (each folder ``[tool.setuptools.package-dir]`` in ``pyproject.toml``
maps) is parsed with ``ast``, nothing imported. Each import of a ``safework`` module is one edge
to the most specific module it names (``from safework.search import local`` is an edge to
``safework.search.local``, ``from safework.search import SearchResult`` one to
``safework.search``), wherever it stands: at module level, under ``if TYPE_CHECKING:`` or inside
a function. A lazy import that only dodges a cycle is still a cycle.

The layers, each importing only from those before it::

    safework, safework.errors, safework.files   the root: version, exceptions, file helpers
    engine                                      the model runtime
    value_models, search, memory                what the strategies and stores are made of
    server, training                            the app and the training kit (never each other)
    clients                                     speaks HTTP to the server: only itself and the root
    safework.cli                                the `safework` command, over everything
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ROOT_MODULES = frozenset({"safework", "safework.errors", "safework.files"})
LAYERS = ("engine", "value_models", "search", "memory", "server", "training", "clients")
FORBIDDEN: dict[str, frozenset[str]] = {
    "root": frozenset({*LAYERS, "cli"}),
    "engine": frozenset({"value_models", "search", "memory", "server", "training", "clients"}),
    "value_models": frozenset({"server", "training", "clients"}),
    "search": frozenset({"server", "training", "clients"}),
    "memory": frozenset({"server", "training", "clients"}),
    "server": frozenset({"training", "clients"}),
    "training": frozenset({"server", "clients"}),
    "clients": frozenset({"engine", "value_models", "search", "memory", "server", "training"}),
}
"""Layer -> the layers it must not import (every layer but ``cli`` must not import ``cli``)."""


def package_dirs() -> dict[str, Path]:
    """Package name -> its folder, as ``pyproject.toml`` maps them."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    dirs = pyproject["tool"]["setuptools"]["package-dir"]
    return {name: ROOT / folder for name, folder in dirs.items()}


def package_modules() -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    out = {}
    for package, folder in package_dirs().items():
        for path in sorted(folder.glob("*.py")):
            out[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return out


def _named(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> Iterator[str]:
    """The dotted names ``node`` imports (``from a import b`` gives ``a.b``)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        parts = module.split(".")[: len(module.split(".")) - node.level + is_package]
        base = ".".join([*parts, base] if base else parts)
    yield from (f"{base}.{alias.name}" for alias in node.names)


def module_imports(
    module: str, source: str, known: Mapping[str, object], is_package: bool = False
) -> Iterator[tuple[str, int]]:
    """(imported module, line) for each import of a ``known`` module in ``source``, at any
    depth; a name that is not a module counts as an import of the module holding it."""
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        for name in _named(node, module, is_package):
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                yield name, node.lineno


def import_graph() -> dict[str, dict[str, list[int]]]:
    """Module -> {imported module: lines}."""
    modules = package_modules()
    graph: dict[str, dict[str, list[int]]] = {name: {} for name in modules}
    for name, path in modules.items():
        source = path.read_text(encoding="utf-8")
        for target, line in module_imports(name, source, modules, path.stem == "__init__"):
            graph[name].setdefault(target, []).append(line)
    return graph


def _reachable(graph: Mapping[str, Mapping[str, object]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def cycles(graph: Mapping[str, Mapping[str, object]]) -> set[frozenset[str]]:
    """The strongly connected components of more than one module."""
    reach = {name: _reachable(graph, name) for name in graph}
    found = set()
    for name in graph:
        component = frozenset({name} | {m for m in reach[name] if name in reach[m]})
        if len(component) > 1:
            found.add(component)
    return found


def layer(module: str) -> str:
    if module in ROOT_MODULES:
        return "root"
    return module.split(".")[1]


def breaches(graph: Mapping[str, Mapping[str, object]]) -> set[tuple[str, str]]:
    """(importer, imported) pairs that cross the layers the wrong way."""
    out = set()
    for importer, targets in graph.items():
        forbidden = FORBIDDEN.get(layer(importer), frozenset())
        for target in targets:
            if layer(target) in forbidden or (layer(target) == "cli" != layer(importer)):
                out.add((importer, target))
    return out


def _describe(component: frozenset[str], graph: Mapping[str, Mapping[str, list[int]]]) -> str:
    edges = [
        f"  {a} -> {b} (line {', '.join(map(str, sorted(set(graph[a][b]))))})"
        for a in sorted(component)
        for b in sorted(graph[a])
        if b in component
    ]
    return "\n".join(edges)


# --------------------------------------------------------------------------- the checks


def test_every_module_is_read() -> None:
    graph = import_graph()
    assert len(graph) > 130
    for name in ("safework.errors", "safework.engine.base", "safework.server.chat.serving"):
        assert name in graph
    assert "safework.engine.base" in graph["safework.server.serving_common"]


def test_imports_at_any_depth_count() -> None:
    known = dict.fromkeys(["safework.a", "safework.a.b", "safework.a.c", "safework.d"])
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import c\n"
        "from .c import Thing\n"
        "if TYPE_CHECKING:\n"
        "    from safework.d import X\n"
        "def f():\n"
        "    import safework.a\n"
        "    from safework.a.c.deeper import y\n"
    )
    found = sorted(module_imports("safework.a.b", source, known))
    assert found == [
        ("safework.a", 7),
        ("safework.a.c", 2),
        ("safework.a.c", 3),
        ("safework.a.c", 8),
        ("safework.d", 5),
    ]
    init = list(module_imports("safework.a", "from .b import z\n", known, is_package=True))
    assert init == [("safework.a.b", 1)]


def test_no_import_cycles() -> None:
    graph = import_graph()
    found = cycles(graph)
    described = (_describe(c, graph) for c in sorted(found, key=sorted))
    assert not found, "import cycles:\n" + "\n\n".join(described)


def test_layers_hold() -> None:
    graph = import_graph()
    found = sorted(breaches(graph))
    assert not found, "layer breaches:\n" + "\n".join(
        f"  {a} ({layer(a)}) -> {b} ({layer(b)}), line {graph[a][b][0]}" for a, b in found
    )
