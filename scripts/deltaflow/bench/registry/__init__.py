"""The benchmark registry: one small declarative YAML per benchmark (as lm-eval's task
YAMLs are), in this folder, and in the user's own folders (config ``benchmark_dirs``), whose
YAML files take the same keys. A config names benchmarks by file stem."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

from ...io import load_yaml
from ..spec import BenchmarkSpec, check_registry_file, schema

REGISTRY_DIR = Path(__file__).resolve().parent
REQUIRED_KEYS = tuple(schema()["$defs"]["registry_file"]["required"])


def _files(dirs: tuple = ()) -> dict[str, Path]:
    """name -> YAML file: the packaged registry, then each user folder in order (a user file
    with a packaged name is reported by ``duplicates``, not silently preferred)."""
    out = {p.stem: p for p in sorted(REGISTRY_DIR.glob("*.yaml"))}
    for d in dirs:
        for p in sorted(Path(d).glob("*.yaml")):
            out.setdefault(p.stem, p)
    return out


def duplicates(dirs: tuple = ()) -> list[tuple[Path, Path]]:
    """(user file, file it collides with) for every user YAML whose name is already taken."""
    seen = {p.stem: p for p in sorted(REGISTRY_DIR.glob("*.yaml"))}
    out = []
    for d in dirs:
        for p in sorted(Path(d).glob("*.yaml")):
            if p.stem in seen:
                out.append((p, seen[p.stem]))
            else:
                seen[p.stem] = p
    return out


def available(dirs: tuple = ()) -> list[str]:
    return sorted(_files(tuple(dirs)))


def path_of(name: str, dirs: tuple = ()) -> Path:
    files = _files(tuple(dirs))
    if name not in files:
        raise KeyError(f"unknown benchmark '{name}'; the registry has: {', '.join(sorted(files))}")
    return files[name]


@functools.cache
def _load(path: Path, mtime_ns: int) -> dict:
    return load_yaml(path, what="benchmark file")  # a key given twice is an error naming both lines


def load(name: str, dirs: tuple = ()) -> dict:
    path = path_of(name, tuple(dirs))
    spec = copy.deepcopy(_load(path, path.stat().st_mtime_ns))
    check_registry_file(spec, path)  # the schema's registry_file: unknown keys, types, required
    spec["task"] = name
    return spec


def benchmark_spec(name: str, dirs: tuple = (), **overrides) -> BenchmarkSpec:
    """Registry benchmark ``name`` as a BenchmarkSpec, with ``overrides`` (``decoding`` merged
    over the registry's, other keys replaced): what tests and bench scripts evaluate without a
    config (a config's specs come from deltaflow.bench.from_config)."""
    d = {**load(name, dirs), "name": name}
    if "decoding" in overrides:
        overrides = {**overrides, "decoding": {**d.get("decoding", {}), **overrides["decoding"]}}
    return BenchmarkSpec.from_dict({**d, **overrides})
