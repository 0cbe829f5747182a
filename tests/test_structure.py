"""Structural guards on the product code: no import cycle inside a package, the layering of
the packages (docs/architecture.md), no function over 80 lines, and a clean ``ruff check``.

The import graph is read from the source with :mod:`ast`, not by importing it: every
``import`` counts, including those inside functions (an import moved into a function body
hides a cycle from Python's loader, not from the design). ``python tests/test_structure.py``
runs the same checks without pytest (``make lint`` does).
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The product's top-level packages (folders with an __init__.py) and single-file parts; the
# later ones appear as the product grows and are walked once they exist.
PACKAGES = ("edge_runtime", "host_training", "quantization", "tools", "network_center", "firmware")
SCRIPT_FOLDERS = ("deploy",)  # plain scripts run on a node (deploy/install.py)
# Which product packages each may import (docs/architecture.md): edge_runtime is the bottom
# layer; host_training sits on it; quantization on both (it quantizes trained checkpoints);
# tools and network_center on those; nothing imports tools. One direction only, so no
# cycle can run across packages either.
MAY_IMPORT = {
    "edge_runtime": set(),
    "host_training": {"edge_runtime"},
    "quantization": {"edge_runtime", "host_training"},
    "network_center": {"edge_runtime"},
    "firmware": set(),
    "deploy": set(),
    "tools": {"edge_runtime", "host_training", "quantization", "network_center"},
}
MAX_FUNCTION_LINES = 80
# Argument-parser tables may be longer: one add_argument call after another, nothing else.
# A function is let through only if it has one of these names AND is such a table.
PARSER_TABLE_NAME = re.compile(r"^(build_parser|make_parser|add_arguments|add_\w+_arguments|\w+_parser)$")
PARSER_CALLS = {"ArgumentParser", "set_defaults"}  # and every add_* call


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. "edge_runtime.backend"
    path: Path
    is_package: bool  # an __init__.py


def product_modules(root: Path = ROOT) -> dict[str, Module]:
    """Every product module by dotted name."""
    modules = {}
    for package in PACKAGES:
        if not (root / package / "__init__.py").is_file():
            continue
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = rel.parts
            if any(p.startswith(".") or p == "__pycache__" or p == "fixtures" for p in parts):
                continue
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            modules[name] = Module(name, path, is_package)
    for folder in SCRIPT_FOLDERS:
        for path in sorted((root / folder).rglob("*.py")) if (root / folder).is_dir() else ():
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            modules[name] = Module(name, path, False)
    return modules


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _import_nodes(tree: ast.AST):
    """Every Import / ImportFrom in ``tree``, at any depth, except under ``if TYPE_CHECKING``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if _type_checking_only(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _resolve_from(module: Module, node: ast.ImportFrom) -> str:
    """The absolute dotted name an ImportFrom reads from (relative levels resolved)."""
    if node.level == 0:
        return node.module or ""
    parts = module.name.split(".")
    base = parts if module.is_package else parts[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: Module, modules: dict[str, Module]) -> dict[str, int]:
    """Product modules ``module`` imports, with the line of the first import of each.

    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module, else
    ``pkg`` itself; ``import a.b.c`` counts as importing ``a.b.c``.
    """
    tree = ast.parse(module.path.read_text(), filename=str(module.path))
    found: dict[str, int] = {}

    def add(name: str, line: int) -> None:
        while name and name not in modules:  # a name inside a module: the module
            name = name.rpartition(".")[0]
        if name and name != module.name:
            found[name] = min(line, found.get(name, line))

    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        else:
            base = _resolve_from(module, node)
            for alias in node.names:
                target = f"{base}.{alias.name}" if base else alias.name
                add(target if target in modules else base, node.lineno)
    return found


def import_graph(modules: dict[str, Module] | None = None) -> dict[str, dict[str, int]]:
    """``{module: {imported product module: line}}`` over the whole product."""
    modules = product_modules() if modules is None else modules
    return {name: imports_of(m, modules) for name, m in modules.items()}


def _top(name: str) -> str:
    return name.split(".")[0]


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Import cycles between modules of the same top-level package, one per strongly
    connected component (Tarjan), each as a closed path ``[a, b, ..., a]``."""
    edges = {m: sorted(t for t in targets if _top(t) == _top(m) and t in graph)
             for m, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components = []

    def visit(v: str) -> None:  # recursion depth is bounded by the module count (~150)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return [_one_cycle(sorted(c), edges) for c in components]


def _one_cycle(component: list[str], edges: dict[str, list[str]]) -> list[str]:
    """A shortest closed path through the first module of a strongly connected component."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in edges[v]:
            if w == start:
                return paths[v] + [start]
            if w in members and w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    return component  # unreachable for a real component


def describe_cycle(cycle: list[str], graph: dict[str, dict[str, int]], modules: dict[str, Module]) -> str:
    """One cycle as ``a (file:line of its import of b) -> b (...) -> a``, then every import
    that holds the same tangle together (the modules importing each other in a cycle)."""
    steps = [f"{a} ({modules[a].path.relative_to(ROOT)}:{graph[a][b]})"
             for a, b in zip(cycle, cycle[1:], strict=False)]
    tangle = _tangle(cycle[0], graph)
    inside = [f"    {modules[a].path.relative_to(ROOT)}:{line}: {a} imports {b}"
              for a in sorted(tangle) for b, line in sorted(graph[a].items()) if b in tangle]
    return "\n".join([" -> ".join(steps + [cycle[-1]])] + (inside if len(inside) > len(steps) else []))


def _tangle(start: str, graph: dict[str, dict[str, int]]) -> set[str]:
    """The modules on some import cycle through ``start`` (its strongly connected component)."""
    def reach(edges):
        seen, todo = {start}, [start]
        while todo:
            for w in edges.get(todo.pop(), ()):
                if w not in seen and _top(w) == _top(start):
                    seen.add(w)
                    todo.append(w)
        return seen
    reverse: dict[str, list[str]] = {}
    for a, targets in graph.items():
        for b in targets:
            reverse.setdefault(b, []).append(a)
    return reach(graph) & reach(reverse)


def layering_violations(graph: dict[str, dict[str, int]], modules: dict[str, Module]) -> list[str]:
    """Imports across packages that docs/architecture.md's layering forbids."""
    out = []
    for name, targets in sorted(graph.items()):
        allowed = MAY_IMPORT.get(_top(name), set())
        for target, line in sorted(targets.items()):
            if _top(target) != _top(name) and _top(target) not in allowed:
                out.append(f"{modules[name].path.relative_to(ROOT)}:{line}: {name} imports {target}")
    return out


def _is_parser_table(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A function that only builds an argparse parser: named like one, and every statement
    an ``add_*`` call (``add_argument``, ``add_parser``, a helper that adds a group of
    arguments), an assignment of such a call or of a constant, an import, a docstring or a
    ``return``; loops and branches over such statements count as such."""
    return bool(PARSER_TABLE_NAME.match(fn.name)) and all(_is_table_statement(s) for s in fn.body)


def _is_table_statement(stmt: ast.stmt) -> bool:
    if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.Return, ast.Pass)):
        return True
    if isinstance(stmt, (ast.For, ast.If)):
        return all(_is_table_statement(s) for s in stmt.body + stmt.orelse)
    value = getattr(stmt, "value", None)
    if isinstance(stmt, ast.Expr) and isinstance(value, ast.Constant):  # docstring
        return True
    if isinstance(stmt, ast.Assign) and isinstance(value, (ast.Constant, ast.Attribute, ast.Name)):
        return True
    return isinstance(stmt, (ast.Expr, ast.Assign)) and _is_parser_call(value)


def _is_parser_call(value) -> bool:
    if not isinstance(value, ast.Call):
        return False
    func = value.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in PARSER_CALLS or name.startswith(("add_", "_add_"))


def long_functions(modules: dict[str, Module] | None = None) -> list[str]:
    """Product functions (and methods) over :data:`MAX_FUNCTION_LINES` lines, parser tables
    excepted, as ``path:line: name N lines``."""
    modules = product_modules() if modules is None else modules
    out = []
    for module in modules.values():
        tree = ast.parse(module.path.read_text(), filename=str(module.path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            n = node.end_lineno - node.lineno + 1
            if n > MAX_FUNCTION_LINES and not _is_parser_table(node):
                out.append(f"{module.path.relative_to(ROOT)}:{node.lineno}: {node.name} {n} lines")
    return sorted(out)


# --- tests ------------------------------------------------------------------------------

def test_graph_reads_imports_inside_functions_and_relative_ones(tmp_path):
    """The walker sees the imports that hold today's cycles together: inside functions,
    relative, ``from pkg import module``, and skips ``if TYPE_CHECKING`` ones."""
    pkg = tmp_path / "edge_runtime"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .sub import b\n    return b\n")
    (pkg / "sub" / "b.py").write_text("from .. import c\n")
    (pkg / "c.py").write_text("import edge_runtime.a as a\nfrom edge_runtime.sub.b import x\n")
    (pkg / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from . import a\nelse:\n    from .sub import b\n")
    modules = product_modules(tmp_path)
    graph = {name: imports_of(m, modules) for name, m in modules.items()}
    assert set(graph["edge_runtime.a"]) == {"edge_runtime.sub.b"}
    assert set(graph["edge_runtime.sub.b"]) == {"edge_runtime.c"}
    assert set(graph["edge_runtime.c"]) == {"edge_runtime.a", "edge_runtime.sub.b"}
    assert set(graph["edge_runtime.d"]) == {"edge_runtime.sub.b"}
    found = cycles(graph)
    assert len(found) == 1 and found[0][0] == found[0][-1] == "edge_runtime.a"
    assert set(found[0]) == {"edge_runtime.a", "edge_runtime.sub.b", "edge_runtime.c"}


def test_no_import_cycle_inside_a_package():
    modules = product_modules()
    graph = import_graph(modules)
    assert len(graph) > 50  # the walk found the product
    found = [describe_cycle(c, graph, modules) for c in cycles(graph)]
    assert not found, "import cycles (module (file:line of the import) -> ...):\n" + "\n".join(found)


def test_layering_of_the_packages():
    modules = product_modules()
    bad = layering_violations(import_graph(modules), modules)
    assert not bad, "imports against the layering of docs/architecture.md:\n" + "\n".join(bad)


def test_long_function_rule_lets_through_parser_tables_only():
    table = ast.parse("def build_parser():\n    p = argparse.ArgumentParser()\n"
                      + "    p.add_argument('--x')\n" * 100 + "    return p\n").body[0]
    busy = ast.parse("def build_parser():\n    p = argparse.ArgumentParser()\n"
                     + "    p.add_argument('--x')\n" * 100 + "    run(p)\n    return p\n").body[0]
    named_otherwise = ast.parse("def main():\n" + "    p.add_argument('--x')\n" * 100).body[0]
    assert _is_parser_table(table)
    assert not _is_parser_table(busy)
    assert not _is_parser_table(named_otherwise)


def test_no_function_over_80_lines():
    found = long_functions()
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines (split them):\n" + "\n".join(found)


def _ruff() -> list[str]:
    exe = Path(sys.executable).with_name("ruff")
    return [str(exe)] if exe.is_file() else [shutil.which("ruff") or "ruff"]


def test_ruff_check_is_clean():
    """``ruff check`` over the repository, with pyproject.toml's rules (PLR0915, the
    statement limit that backs the line limit above, among them)."""
    result = subprocess.run([*_ruff(), "check", "--no-cache", "--output-format", "concise", "."],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def main() -> int:
    """The structure checks without pytest (``make lint`` runs ruff itself)."""
    modules = product_modules()
    graph = import_graph(modules)
    problems = [f"cycle: {describe_cycle(c, graph, modules)}" for c in cycles(graph)]
    problems += [f"layering: {v}" for v in layering_violations(graph, modules)]
    problems += [f"long function: {v}" for v in long_functions(modules)]
    for line in problems:
        print(line)
    print(f"{len(problems)} structure problem(s) in {len(modules)} modules" if problems
          else f"structure: {len(modules)} modules, no cycle, layering kept, no function over "
               f"{MAX_FUNCTION_LINES} lines")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
