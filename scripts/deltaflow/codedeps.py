"""Which deltaflow modules a piece of code runs: derived from its imports, never listed by hand.

Snakemake tracks a rule's entry script but not the modules it imports, so each rule declares
the modules as inputs (an edit reruns exactly the stages that import it) and the eval cache
keys raw outputs with the modules that produce them. Both sets come from here: the transitive
closure of ``deltaflow`` imports, read statically from the source (``ast``, no import, cheap
at parse time). Imports inside functions count too: a lazily imported module still runs.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = "deltaflow"
PACKAGE_DIR = Path(__file__).resolve().parent


def _module_file(dotted: str, package_dir: Path) -> Path | None:
    """``deltaflow.a.b`` -> its file under ``package_dir`` (a module or a package's
    ``__init__.py``), or None for a name that is not a module (an attribute)."""
    parts = dotted.split(".")[1:]
    base = package_dir.joinpath(*parts) if parts else package_dir
    for candidate in (base.with_suffix(".py") if parts else None, base / "__init__.py"):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _dotted_name(path: Path, package_dir: Path) -> str:
    rel = path.relative_to(package_dir).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([PACKAGE, *parts])


def direct_imports(path: Path, package_dir: Path = PACKAGE_DIR) -> set[Path]:
    """The files of the deltaflow modules ``path`` imports (absolute and relative imports,
    at any depth of the file), with the ``__init__.py`` of every package on their way."""
    path = Path(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    inside = path.resolve().is_relative_to(package_dir)
    current = _dotted_name(path.resolve(), package_dir) if inside else ""
    # the package a relative import starts from: a module's parent, or a package itself
    here = current if path.name == "__init__.py" else current.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if not inside:
                    continue
                anchor = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                module = ".".join(anchor + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            # `from deltaflow import sources`: the name may be a module of its own
            names.update(f"{module}.{a.name}" for a in node.names if a.name != "*")
    found: set[Path] = set()
    for name in names:
        if name != PACKAGE and not name.startswith(PACKAGE + "."):
            continue
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # the packages on the way run their __init__
            f = _module_file(".".join(parts[:i]), package_dir)
            if f is not None:
                found.add(f)
    found.discard(path.resolve())
    return found


@cache
def _closure(entry: Path, package_dir: Path) -> tuple[Path, ...]:
    seen: set[Path] = set()
    todo = list(direct_imports(entry, package_dir))
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        todo.extend(direct_imports(f, package_dir) - seen)
    if entry.is_relative_to(package_dir):
        seen.add(entry)
    return tuple(sorted(seen))


def code_closure(*entries: str | Path, package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """Every deltaflow module file that running ``entries`` can execute: the entries
    themselves when they are deltaflow modules, and their transitive deltaflow imports."""
    out: set[Path] = set()
    for entry in entries:
        out.update(_closure(Path(entry).resolve(), Path(package_dir).resolve()))
    return sorted(out)


def module_path(name: str, package_dir: Path = PACKAGE_DIR) -> Path:
    """A deltaflow module's file from its short name (``bench.run`` -> .../bench/run.py)."""
    f = _module_file(f"{PACKAGE}.{name}", Path(package_dir))
    if f is None:
        raise ValueError(f"no deltaflow module named {name!r} under {package_dir}")
    return f
