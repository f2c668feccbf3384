"""Imports run one way (issue 21, DESIGN.md section 3), read from the source with `ast`: no cycle between
modules, no function-local import of a project module, the layers, and only `pipelines` imports ray."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("curate", "pruning", "scaling", "pipelines")
HEAVY = frozenset({"ray", "torch"})
FACES = frozenset({"curate.api", "curate.cli", "curate.__main__"})
# Layers, bottom to top: a module may import its own layer and those below it.
LAYER_NAMES = ("curate foundation", "scaling", "pruning", "pipelines", "faces")
# The PEP 562 `__getattr__` that exposes the library calls lazily (DESIGN.md section 3).
ALLOWED_LOCAL = frozenset({("curate", "__getattr__")})

Where = Literal["module", "type_checking", "function"]


@dataclass(frozen=True)
class Import:
    """One imported module: a project module by its full name, anything else by its top-level name."""

    source: str
    target: str
    line: int
    where: Where
    function: str | None = None

    def __str__(self) -> str:
        inside = f" in {self.function}()" if self.function else ""
        kind = {"module": "", "type_checking": " (TYPE_CHECKING)", "function": " (function-local)"}
        return f"{self.source}:{self.line}{inside} imports {self.target}{kind[self.where]}"


def project_modules(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Module name -> file, for every .py under the packages (a package is its `__init__.py`)."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _targets(
    node: ast.Import | ast.ImportFrom, source: str, path: Path, modules: Mapping[str, Path]
) -> list[str]:
    if isinstance(node, ast.Import):
        return [_project_or_top(alias.name, modules) for alias in node.names]
    base = node.module or ""
    if node.level:
        package = source.split(".") if path.name == "__init__.py" else source.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    # `from package import name` imports the submodule `package.name` when there is one.
    return [
        f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else _project_or_top(base, modules)
        for alias in node.names
    ]


def _project_or_top(name: str, modules: Mapping[str, Path]) -> str:
    return name if name in modules else name.split(".")[0]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(source: str, path: Path, modules: Mapping[str, Path]) -> list[Import]:
    """Every import statement in `path`, classified as module level, `if TYPE_CHECKING:` or function-local."""
    found: list[Import] = []

    def visit(node: ast.AST, where: Where, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.extend(
                    Import(source, target, child.lineno, where, function)
                    for target in _targets(child, source, path, modules)
                )
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, "function", function or child.name)
            elif isinstance(child, ast.If) and where == "module" and _is_type_checking(child.test):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), "type_checking", function)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), where, function)
            else:
                visit(child, where, function)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), "module", None)
    return list(dict.fromkeys(found))  # `from m import a, b` is one import of m


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The cycles of `graph`: its strongly connected components of two or more nodes, or with a self-edge."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    nodes = sorted({*graph, *(t for ts in graph.values() for t in ts)})
    for start in nodes:
        if start in index:
            continue
        # Tarjan's algorithm, iterative: (node, iterator over its successors).
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph.get(succ, ())))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph.get(node, ()):
                        components.append(sorted(component))
    return sorted(components)


def layer(module: str) -> int:
    """Index into LAYER_NAMES."""
    if module in FACES:
        return 4
    return {"curate": 0, "scaling": 1, "pruning": 2, "pipelines": 3}[module.split(".")[0]]


def heavy_closure(module: str, edges: Mapping[str, set[str]], heavy: Mapping[str, set[str]]) -> set[str]:
    """The heavy libraries that importing `module` loads through module-level imports."""
    seen, todo, found = {module}, [module], set()
    while todo:
        current = todo.pop()
        found |= heavy.get(current, set())
        for nxt in edges.get(current, set()) - seen:
            seen.add(nxt)
            todo.append(nxt)
    return found


@dataclass(frozen=True)
class Graph:
    """The project's imports, and what each rule needs from them."""

    modules: dict[str, Path]
    imports: list[Import]

    @classmethod
    def read(cls, root: Path, packages: Iterable[str] = PACKAGES) -> Graph:
        modules = project_modules(root, packages)
        return cls(
            modules, [imp for name, path in modules.items() for imp in imports_of(name, path, modules)]
        )

    def project(self) -> list[Import]:
        return [imp for imp in self.imports if imp.target in self.modules and imp.target != imp.source]

    def static_edges(self) -> dict[str, set[str]]:
        """Project imports at module level and under TYPE_CHECKING (both count for cycles)."""
        edges: dict[str, set[str]] = {name: set() for name in self.modules}
        for imp in self.project():
            if imp.where != "function":
                edges[imp.source].add(imp.target)
        return edges

    def cycles(self) -> list[str]:
        edges = self.static_edges()
        out = []
        for component in strongly_connected(edges):
            members = set(component)
            lines = [
                f"    {imp}"
                for imp in self.project()
                if imp.where != "function" and imp.source in members and imp.target in members
            ]
            out.append("cycle among " + ", ".join(component) + ":\n" + "\n".join(lines))
        return out

    def local_imports(self) -> list[tuple[Import, str]]:
        """Function-local imports of project modules, each with why it is allowed ('' when it is not)."""
        runtime: dict[str, set[str]] = {name: set() for name in self.modules}
        heavy: dict[str, set[str]] = {name: set() for name in self.modules}
        for imp in self.imports:
            if imp.where == "module":
                if imp.target in self.modules and imp.target != imp.source:
                    runtime[imp.source].add(imp.target)
                elif imp.target in HEAVY:
                    heavy[imp.source].add(imp.target)
        out = []
        for imp in self.project():
            if imp.where != "function":
                continue
            if (imp.source, imp.function) in ALLOWED_LOCAL:
                out.append((imp, "the PEP 562 __getattr__ of DESIGN.md section 3"))
                continue
            kept_out = heavy_closure(imp.target, runtime, heavy) - heavy_closure(imp.source, runtime, heavy)
            out.append((imp, f"keeps {', '.join(sorted(kept_out))} out of import time" if kept_out else ""))
        return out

    def layer_breaches(self) -> list[Import]:
        return [
            imp
            for imp, allowed in self.local_imports()
            if "PEP 562" not in allowed and layer(imp.target) > layer(imp.source)
        ] + [
            imp for imp in self.project() if imp.where != "function" and layer(imp.target) > layer(imp.source)
        ]


@pytest.fixture(scope="module")
def graph() -> Graph:
    return Graph.read(ROOT)


def _report(title: str, lines: Iterable[object]) -> str:
    return title + "\n" + "\n".join(f"  {line}" for line in lines)


def test_no_import_cycle(graph: Graph) -> None:
    """No cycle among modules, counting module-level and `if TYPE_CHECKING:` imports."""
    cycles = graph.cycles()
    assert not cycles, _report("import cycles:", cycles)


def test_no_function_local_import_of_a_project_module(graph: Graph) -> None:
    """A project module is imported at module level, unless importing it there would load ray or torch
    that the importer does not load already (or it is the PEP 562 `__getattr__` of `curate`)."""
    bad = [imp for imp, allowed in graph.local_imports() if not allowed]
    assert not bad, _report("function-local imports of project modules (move them to the top):", bad)


def test_layers(graph: Graph) -> None:
    """Foundation <- scaling <- pruning <- pipelines <- faces: nothing imports a layer above its own."""
    bad = [
        f"{imp}: {LAYER_NAMES[layer(imp.source)]} may not import {LAYER_NAMES[layer(imp.target)]}"
        for imp in graph.layer_breaches()
    ]
    assert not bad, _report("imports against the layers:", bad)


def test_only_pipelines_imports_ray(graph: Graph) -> None:
    """Ray is imported in `pipelines/` only, at module level or anywhere else."""
    bad = [imp for imp in graph.imports if imp.target == "ray" and not imp.source.startswith("pipelines")]
    assert not bad, _report("ray imported outside pipelines/:", bad)


# The checker itself, on a hand-made tree with a planted cycle.

FIXTURE = {
    "app/__init__.py": "",
    "app/base.py": "from __future__ import annotations\nimport numpy\n",
    "app/a.py": "from app import base\nfrom .b import thing\n",
    "app/b.py": (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from app.c import Other\nthing = 1\n"
    ),
    "app/c.py": (
        "import app.a\n"
        "def late():\n"
        "    from app.base import numpy\n"
        "    import torch\n"
        "    return numpy, torch\n"
    ),
    "app/sub/__init__.py": "from .. import base\nfrom . import leaf\n",
    "app/sub/leaf.py": "from ..base import numpy\n",
}


def _fixture_graph(tmp_path: Path, files: Mapping[str, str]) -> Graph:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return Graph.read(tmp_path, ["app"])


def test_checker_finds_a_planted_cycle(tmp_path: Path) -> None:
    """a -> b (module level), b -> c (TYPE_CHECKING), c -> a (module level): one cycle, with its lines."""
    g = _fixture_graph(tmp_path, FIXTURE)
    assert g.static_edges() == {
        "app": set(),
        "app.base": set(),
        "app.a": {"app.base", "app.b"},
        "app.b": {"app.c"},
        "app.c": {"app.a"},
        "app.sub": {"app.base", "app.sub.leaf"},
        "app.sub.leaf": {"app.base"},
    }
    (cycle,) = g.cycles()
    assert cycle.startswith("cycle among app.a, app.b, app.c:")
    assert "app.b:3 imports app.c (TYPE_CHECKING)" in cycle
    assert "app.c:1 imports app.a" in cycle
    assert [(str(imp), why) for imp, why in g.local_imports()] == [
        ("app.c:3 in late() imports app.base (function-local)", "")
    ]


def test_checker_passes_the_tree_without_its_cycle(tmp_path: Path) -> None:
    g = _fixture_graph(tmp_path, {**FIXTURE, "app/c.py": "import torch\n"})
    assert g.cycles() == []
    assert g.local_imports() == []


def test_local_import_that_keeps_torch_out_is_allowed(tmp_path: Path) -> None:
    files = {
        **FIXTURE,
        "app/c.py": "import torch\n",
        "app/base.py": "def model():\n    from app.c import torch\n    return torch\n",
    }
    ((imp, why),) = _fixture_graph(tmp_path, files).local_imports()
    assert (imp.source, imp.target, why) == ("app.base", "app.c", "keeps torch out of import time")


@pytest.mark.parametrize(
    ("graph_", "expected"),
    [
        ({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}, [["a", "b", "c"]]),
        ({"a": ["b"], "b": ["c"], "d": ["a", "c"]}, []),
        ({"a": ["a"], "b": []}, [["a"]]),
        ({"a": ["b"], "b": ["a"], "c": ["d"], "d": ["e"], "e": ["c", "a"]}, [["a", "b"], ["c", "d", "e"]]),
    ],
)
def test_strongly_connected_on_hand_made_graphs(
    graph_: dict[str, list[str]], expected: list[list[str]]
) -> None:
    assert strongly_connected(graph_) == expected
