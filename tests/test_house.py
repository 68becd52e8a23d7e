"""The package's shape: no import cycle between deltaflow's modules (imports inside functions
count: a cycle hidden in a function is still a cycle), and no function over 80 lines in
scripts/ (the entry scripts and the package)."""

import ast
from pathlib import Path

from conftest import REPO

from deltaflow.codedeps import PACKAGE_DIR, direct_imports

MAX_FUNCTION_LINES = 80


def _import_graph() -> dict[Path, set[Path]]:
    files = sorted(PACKAGE_DIR.rglob("*.py"))
    return {
        f: {g for g in direct_imports(f) if g.name != "__init__.py" or g.parent != f.parent} for f in files
    }


def _cycles(graph: dict[Path, set[Path]]) -> list[list[Path]]:
    """Strongly connected components of more than one module (Tarjan), and self-imports."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function(tmp_path):
    pkg = tmp_path / "deltaflow"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")
    (pkg / "c.py").write_text("from .a import y\n")
    graph = {f: direct_imports(f, pkg) - {pkg / "__init__.py"} for f in sorted(pkg.glob("*.py"))}
    assert _cycles(graph) == [[pkg / "a.py", pkg / "b.py"]]


def test_no_import_cycle_inside_the_package():
    cycles = [[str(p.relative_to(PACKAGE_DIR)) for p in c] for c in _cycles(_import_graph())]
    assert cycles == [], f"import cycles (break them by moving the shared piece to a leaf module): {cycles}"


def test_no_function_over_80_lines():
    long = []
    for path in sorted((REPO / "scripts").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({n} lines)")
    assert long == [], "functions over 80 lines: split them into named steps:\n" + "\n".join(long)
