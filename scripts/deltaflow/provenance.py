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
import sys
from importlib import metadata
from pathlib import Path

from .io import sha256_file, sha256_path, sha256_text, write_json

PACKAGES = [
    "torch",
    "transformers",
    "trl",
    "peft",
    "lm_eval",
    "datasets",
    "snakemake",
    "accelerate",
    "gguf",
    "pandas",
]
REPO_ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
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
        # the bindings' version alone does not say which llama.cpp computes (tools/setup_llamacpp.py)
        out["llama_cpp_python"] += f" over {prebuilt}"
    return out


def llama_cpp_prebuilt() -> str | None:
    """Which prebuilt llama.cpp libraries llama-cpp-python runs over (``make setup``'s default,
    tools/setup_llamacpp.py), or None for its own source build; found without importing it."""
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
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def hardware() -> dict:
    info = {
        "host": platform.node(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    # only a job that imported torch can have computed on a GPU; importing it here would cost
    # every other job (datasets, tables, cards) seconds of start-up
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def build_manifest(
    kind: str,
    *,
    inputs: dict[str, str] | None = None,
    params: dict | None = None,
    started: str | None = None,
    extra: dict | None = None,
) -> dict:
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
        manifest["base_model"] = {
            "source": base_manifest.get("source"),
            "weights_sha256": base_manifest.get("weights_sha256"),
        }
    if extra:
        manifest.update(extra)
    return manifest


def write_manifest(path, kind: str, **kwargs) -> dict:
    manifest = build_manifest(kind, **kwargs)
    write_json(path, manifest)
    return manifest


# --- job records: what made each job's outputs, travelling with results/ ---------------------
# Snakemake keeps what made an output (params, code) in .snakemake/metadata, which an `rsync
# results/`, a restored backup or a shared results folder leaves behind. Every job also writes
# results/.jobs/<rule>/<wildcards>.json: a hash per param and per code file. With no Snakemake
# record for an output, the workflow compares it with the job's current params and code at
# parse time (rules/common.smk: mark_stale_results) and reruns what differs.
JOBS_DIR = ".jobs"


def _canonical(value) -> str:
    def default(obj):
        return sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else str(obj)

    return json.dumps(value, sort_keys=True, default=default)


def params_digest(params) -> dict[str, str]:
    """{param name: sha256 of its canonical JSON} for ``(name, value)`` pairs."""
    return {name: sha256_text(_canonical(value)) for name, value in params}


def job_record_path(results: str | os.PathLike, rule: str, wildcards: dict) -> Path:
    from urllib.parse import quote

    key = ",".join(f"{k}={quote(str(v), safe='')}" for k, v in sorted(wildcards.items())) or "all"
    return Path(results) / JOBS_DIR / rule / f"{key}.json"


def code_digest(files, scripts_dir: str | os.PathLike) -> dict[str, str]:
    """{path relative to the workflow's scripts/ folder: sha256} of the code a job runs (relative,
    so a copied checkout's files compare with the originals)."""
    root = os.path.realpath(scripts_dir)
    return {os.path.relpath(os.path.realpath(f), root): sha256_file(f) for f in files if os.path.isfile(f)}


def write_job_record(snakemake) -> Path | None:
    """Record the running job's rule, wildcards, outputs, params and code (rulekit.start_job);
    only for a workflow job whose outputs are under results/."""
    outputs = [str(o) for o in getattr(snakemake, "output", [])]
    rule = getattr(snakemake, "rule", None)
    if not rule or not outputs or Path(outputs[0]).is_absolute() or Path(outputs[0]).parts[0] != "results":
        return None
    scripts_dir = Path(snakemake.scriptdir)
    code = snakemake.input.get("code", []) if hasattr(snakemake.input, "get") else []
    code = [code] if isinstance(code, str) else list(code)
    # the entry script: Snakemake runs a copy of it, with __file__ set to the original
    entry = getattr(sys.modules.get("__main__"), "__file__", None)
    if entry and Path(entry).is_file() and Path(entry).resolve().is_relative_to(scripts_dir.resolve()):
        code.append(entry)
    wildcards = dict(snakemake.wildcards.items())
    record = {
        "rule": rule,
        "wildcards": wildcards,
        "outputs": outputs,
        "params": params_digest(snakemake.params.items()),
        "code": code_digest(code, scripts_dir),
    }
    path = job_record_path("results", rule, wildcards)
    write_json(path, record)
    return path


def read_job_records(results: str | os.PathLike) -> list[dict]:
    """Every job record under ``results``; an unreadable one is skipped (a job writing it)."""
    out = []
    root = Path(results) / JOBS_DIR
    if not root.is_dir():
        return out
    for rule_dir in sorted(root.iterdir()):
        for f in sorted(rule_dir.glob("*.json")) if rule_dir.is_dir() else ():
            try:
                out.append(json.loads(f.read_text()))
            except (OSError, ValueError):
                continue
    return out


def stale_reasons(
    record: dict, params: dict[str, str] | None, scripts_dir: str | os.PathLike, hashes: dict | None = None
) -> list[str]:
    """What differs between a job record and the job now: ``params`` is the current
    params_digest (None: it cannot be computed); ``hashes`` caches file hashes across records."""
    hashes = {} if hashes is None else hashes
    reasons = []
    if params is not None:
        changed = sorted(
            k
            for k in set(params) | set(record.get("params", {}))
            if params.get(k) != record.get("params", {}).get(k)
        )
        if changed:
            reasons.append(f"params {', '.join(changed)}")
    edited = []
    for rel, sha in sorted(record.get("code", {}).items()):
        path = os.path.normpath(os.path.join(scripts_dir, rel))
        if path not in hashes:
            hashes[path] = sha256_file(path) if os.path.isfile(path) else None
        if hashes[path] != sha:
            edited.append(rel)
    if edited:
        reasons.append(f"code {', '.join(edited)}")
    return reasons
