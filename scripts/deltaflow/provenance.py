"""Manifests written beside every artifact: what it was made from and how.

Records input hashes, the params that made it, the git commit (and whether the
tree was dirty), package versions, host and timing. Never environment variables
or tokens.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from .io import sha256_path, write_json

PACKAGES = ["torch", "transformers", "trl", "peft", "lm_eval", "datasets", "snakemake",
            "accelerate", "gguf", "pandas"]
REPO_ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def code_version() -> dict:
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


def package_versions() -> dict:
    return output_versions(tuple(PACKAGES))


# The packages whose versions decide a model's raw outputs (numerics, tokenization, prompt
# building, decoding): part of the eval cache key and the training resume key, so outputs made
# under other versions are never silently reused.
OUTPUT_PACKAGES = ("torch", "transformers", "peft", "trl", "lm_eval", "llama_cpp_python", "vllm")


def output_versions(packages: tuple[str, ...] = OUTPUT_PACKAGES) -> dict:
    """{package: version or None} of the packages that decide raw outputs, from the installed
    metadata (no import)."""
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            out[name] = None
    if out.get("llama_cpp_python") and (prebuilt := llama_cpp_prebuilt()):
        # the bindings' version alone does not say which llama.cpp computes (setup_llamacpp)
        out["llama_cpp_python"] += f" over {prebuilt}"
    return out


def llama_cpp_prebuilt() -> str | None:
    """Which prebuilt llama.cpp libraries llama-cpp-python runs over (``make setup``'s default,
    deltaflow.setup_llamacpp), or None for its own source build; found without importing it."""
    from importlib.util import find_spec

    spec = find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    marker = Path(spec.submodule_search_locations[0]) / "lib" / "deltaflow-prebuilt.json"
    return json.loads(marker.read_text())["label"] if marker.exists() else None


def device_class(device: str) -> str:
    """What kind of device computes: ``cpu``, or ``cuda:<GPU name>`` (kernels and so numerics
    differ between GPU models, and between CPU and GPU)."""
    if str(device).startswith("cpu"):
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return "cpu"


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def hardware() -> dict:
    info = {"host": platform.node(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version()}
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def build_manifest(kind: str, *, inputs: dict[str, str] | None = None, params: dict | None = None,
                   started: str | None = None, extra: dict | None = None) -> dict:
    """A manifest dict for an artifact of ``kind`` made from ``inputs`` with ``params``."""
    hashed = {}
    for name, value in (inputs or {}).items():
        paths = [value] if isinstance(value, (str, os.PathLike)) else list(value)
        entries = [{"path": str(p), "sha256": sha256_path(p)} for p in paths if Path(p).exists()]
        hashed[str(name)] = entries[0] if isinstance(value, (str, os.PathLike)) and entries else entries
    manifest = {
        "kind": kind,
        "inputs": hashed,
        "params": params or {},
        "code": code_version(),
        "packages": package_versions(),
        "hardware": hardware(),
        "started": started,
        "finished": now(),
    }
    base = (inputs or {}).get("base")
    if isinstance(base, (str, os.PathLike)) and Path(base).name == "manifest.json" and Path(base).exists():
        base_manifest = json.loads(Path(base).read_text())
        manifest["base_model"] = {"source": base_manifest.get("source"),
                                  "weights_sha256": base_manifest.get("weights_sha256")}
    if extra:
        manifest.update(extra)
    return manifest


def write_manifest(path, kind: str, **kwargs) -> dict:
    manifest = build_manifest(kind, **kwargs)
    write_json(path, manifest)
    return manifest
