"""The package keeps the shape docs/architecture.md draws: no import circles, seams that
point one way, small modules, and formatting left to the formatter.

Imports are read from the source (every ``import``, including those under TYPE_CHECKING and
inside functions: a circle hidden in a function is still a circle).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT

PACKAGE = ROOT / "aios_instance"
MAX_LINES = 400
GENERATED = ("aios_instance._proto.",)

#: (importer prefix, imported prefix): a seam that must not be crossed this way.
FORBIDDEN = [
    ("aios_instance.control", "aios_instance.runtime"),
    ("aios_instance.transport", "aios_instance.runtime"),
    ("aios_instance.transport", "aios_instance.control"),
    ("aios_instance.runtime", "aios_instance.cli"),
    ("aios_instance.control", "aios_instance.cli"),
    ("aios_instance.ingest", "aios_instance.runtime"),
    ("aios_instance.ingest", "aios_instance.cli"),
    ("aios_instance.control", "aios_instance.ingest"),
    ("aios_instance.transport", "aios_instance.ingest"),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    found = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: path for name, path in found.items() if not name.startswith(GENERATED)}


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[str]:
    """The package modules ``name`` imports (a ``from x import y`` names the module
    ``x.y`` when there is one, else ``x``)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, is_package, node.module, node.level)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield sub if sub in MODULES else base


def _resolve(name: str, is_package: bool, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    parts = name.split(".")
    anchor = parts if is_package else parts[:-1]
    anchor = anchor[: len(anchor) - (level - 1)]
    return ".".join([*anchor, module] if module else anchor)


def _graph(*, packages: bool = False) -> dict[str, set[str]]:
    """Import edges between package modules. For circles, edges into a package's
    ``__init__`` are left out (``packages`` False): a front door re-exports what its modules
    define, so every module "imports" it through its parent without depending on it. The
    seams count them: importing ``runtime`` itself is importing the runtime."""
    inits = {n for n, p in MODULES.items() if p.name == "__init__.py"}
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        targets = {t for t in _imports(name, path) if t in MODULES and t != name}
        graph[name] = targets if packages else targets - inits
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
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
    return found


def test_the_graph_sees_the_imports_it_should() -> None:
    """Guards the reader itself: known edges of each kind are found."""
    graph = _graph()
    assert "aios_instance.runtime.pipeline" in graph["aios_instance.runtime.worker"]
    assert "aios_instance.keys" in graph["aios_instance.runtime.block"]  # from .. import keys
    assert "aios_instance.transport.base" in graph["aios_instance.transport.memory"]


def test_no_import_circles() -> None:
    assert _cycles(_graph()) == []


@pytest.mark.parametrize(("importer", "imported"), FORBIDDEN)
def test_seams_point_one_way(importer: str, imported: str) -> None:
    crossing = sorted(
        f"{name} -> {target}"
        for name, targets in _graph(packages=True).items()
        if name.startswith(importer)
        for target in targets
        if target.startswith(imported)
    )
    assert crossing == []


def test_top_level_modules_stay_out_of_the_runtime() -> None:
    """The user-facing modules work without the runtime; only the CLI and its private
    modules (which run it) and the tester (which drives the real pipeline) reach in."""
    inner = ("aios_instance.runtime", "aios_instance.transport", "aios_instance.control")
    reaching = sorted(
        name
        for name, targets in _graph().items()
        if name.count(".") == 1 and not name.startswith(inner)
        if any(t.startswith(inner) for t in targets)
    )
    tools = [n for n in reaching if n.startswith(("aios_instance.cli", "aios_instance._cli"))]
    assert sorted(set(reaching) - set(tools)) == ["aios_instance.testing"]


def _mapped() -> set[str]:
    """The module paths (relative to the package) docs/architecture.md's map names: the
    ``.py`` words a line starts with, in the folder its indentation puts them."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    folders: list[str] = []
    found: set[str] = set()
    for line in text.split("```")[1].splitlines():
        words = line.split()
        if not words:
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        if words[0].endswith("/"):
            folders = [*folders[:depth], words[0].rstrip("/")]
            continue
        prefix = "".join(f"{folder}/" for folder in folders[1:depth])
        for word in words:
            if not word.endswith(".py"):
                break
            found.add(prefix + word)
    return found


def test_docs_architecture_maps_the_tree() -> None:
    modules = {
        path.relative_to(PACKAGE).as_posix()
        for name, path in MODULES.items()
        if path.name != "__init__.py" or path.parent == PACKAGE  # the front door is mapped
    }
    mapped = _mapped()
    assert sorted(modules - mapped) == [], "modules the map does not name"
    assert sorted(mapped - modules) == [], "names in the map with no module"


def test_modules_stay_small() -> None:
    sizes = {
        name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in MODULES.items()
    }
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_the_formatter_decides_the_layout() -> None:
    skipped = [name for name, path in MODULES.items() if "fmt: skip" in path.read_text("utf-8")]
    assert skipped == []
