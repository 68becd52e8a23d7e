"""Trace one delta-table cell (model x benchmark) back through every file that made it.

The chain follows the model graph (deltaflow.models, the same one the workflow is built from),
so every kind of model is traced: an export back through its merged model to its adapter, a
merge through each input adapter's own chain, a checkpoint or sweep arm through its run. For
every run on the way it goes on to the mixture, the datasets and their raw files; it ends at the
benchmark's items and the base model. Each step shows its file, the params that made it, the
code version and packages, and every input's sha256 as recorded and as it is on disk now: a file
changed after the table was made is flagged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .errors import DeltaflowError
from .io import safetensors_sha256, sha256_path
from .models import DEFAULT_BASE, ModelGraph

PACKAGES_SHOWN = ("torch", "transformers", "peft", "trl", "lm_eval")


def _load(path: Path) -> dict:
    if not path.exists():
        raise DeltaflowError(f"{path} does not exist; has the workflow produced it?")
    return json.loads(path.read_text())


def _check(workdir: Path, path: str, recorded: str | None, role: str) -> dict:
    """One file: its recorded sha256 against the file on disk now."""
    p = workdir / path
    now = sha256_path(p) if p.exists() else None
    return {
        "role": role,
        "path": path,
        "sha256_recorded": recorded,
        "sha256_now": now,
        "changed": recorded is not None and now != recorded,
    }


def _inputs(workdir: Path, manifest: dict) -> list[dict]:
    out = []
    for name, value in manifest.get("inputs", {}).items():
        for entry in value if isinstance(value, list) else [value]:
            if entry:
                out.append(_check(workdir, entry["path"], entry.get("sha256"), name))
    return out


def _step(workdir: Path, kind: str, name: str, manifest_path: str, *, params=None, extra=None) -> dict:
    manifest = _load(workdir / manifest_path)
    code = manifest.get("code", {})
    step = {
        "step": kind,
        "name": name,
        "file": manifest_path,
        "params": manifest.get("params", {}) if params is None else params,
        "code": {"git_commit": code.get("git_commit"), "git_dirty": code.get("git_dirty")},
        "packages": {k: v for k, v in manifest.get("packages", {}).items() if k in PACKAGES_SHOWN},
        "finished": manifest.get("finished"),
        "files": _inputs(workdir, manifest),
    }
    if "weights_sha256" in manifest:  # the model folder's weights, hashed when it was written
        folder = workdir / Path(manifest_path).parent
        now = None
        if folder.is_dir():  # models we wrote record their safetensors' hash; base and imports, the folder's
            now = (
                safetensors_sha256(folder)
                if kind in ("merged", "run", "merge", "sweep")
                else sha256_path(folder, exclude=("manifest.json",))
            )
        step["files"].append(
            {
                "role": "weights",
                "path": str(Path(manifest_path).parent),
                "sha256_recorded": manifest["weights_sha256"],
                "sha256_now": now,
                "changed": now != manifest["weights_sha256"],
            }
        )
    step.update(extra or {})
    return step


def _delta_cell(workdir: Path, graph: ModelGraph, model: str, benchmark: str) -> pd.DataFrame:
    """The (model, benchmark) benchmark-level row of results/tables/delta.csv; raises if there is none."""
    if model not in graph:
        raise DeltaflowError(f"'{model}' is not a model of this config; models: {', '.join(graph.names)}")
    table_path = workdir / "results/tables/delta.csv"
    if not table_path.exists():
        raise DeltaflowError(f"{table_path} does not exist; run the workflow first")
    table = pd.read_csv(table_path)
    cell = table[
        (table.model == model)
        & (table.benchmark == benchmark)
        & (table.level == "benchmark")
        & (table.source == "evaluated")
    ]
    if cell.empty:
        raise DeltaflowError(
            f"no row ({model}, {benchmark}) in {table_path}; "
            f"models: {sorted(table.model.unique())}, "
            f"benchmarks: {sorted(table[table.level == 'benchmark'].benchmark.unique())}"
        )
    return cell


def _eval_steps(workdir: Path, model: str, benchmark: str) -> list[dict]:
    """The eval step of (model, benchmark) and the step of the benchmark's items."""
    steps = []
    summary = _load(workdir / f"results/evals/{model}/summary.json")["benchmarks"].get(benchmark)
    if summary is None:
        for stage in ("evals", "judged"):  # outside its suites (deltaflow.suites): a not_run record
            marker = workdir / f"results/{stage}/{model}/{benchmark}.json"
            if marker.exists() and (rec := _load(marker)).get("not_run"):
                raise DeltaflowError(
                    f"{model} x {benchmark} was never evaluated ({rec['reason']}): no cell to audit"
                )
        raise DeltaflowError(f"results/evals/{model}/summary.json has no {benchmark}; rerun the workflow")
    ev = _load(workdir / summary["metrics"])
    eval_step = {
        "step": "eval",
        "name": f"{model} x {benchmark}",
        "file": summary["metrics"],
        "params": {
            "metric": ev["metric"],
            "score": ev["score"],
            "n": ev["n"],
            "decoding": ev["decoding"],
            "cache": ev.get("cache"),
            "lm_eval_version": ev.get("lm_eval_version"),
        },
        "code": ev["manifest"].get("code", {}),
        "packages": {k: v for k, v in ev["manifest"].get("packages", {}).items() if k in PACKAGES_SHOWN},
        "finished": ev["manifest"].get("finished"),
        "files": [
            _check(workdir, summary["metrics"], summary["metrics_sha256"], "metrics"),
            _check(workdir, summary["samples"], summary["samples_sha256"], "samples"),
            *_inputs(workdir, ev["manifest"]),
        ],
    }
    steps.append(eval_step)
    docs = _load(workdir / f"results/benchmarks/{benchmark}/manifest.json")
    steps.append(
        _step(
            workdir,
            "benchmark",
            benchmark,
            f"results/benchmarks/{benchmark}/manifest.json",
            params={
                "source": docs["params"]["spec"]["source"],
                "n": docs["n"],
                "seed": docs["params"]["spec"]["seed"],
            },
        )
    )
    return steps


def _model_steps(workdir: Path, graph: ModelGraph, model: str) -> tuple[list[dict], list[str]]:
    """A step for the model and each non-base ancestor, and the mixtures of the runs among them."""
    steps = []
    mixtures: list[str] = []
    for m in [model, *graph.ancestors(model)]:
        n = graph.node(m)
        if n.kind == "base":
            continue
        step = _step(workdir, n.kind, m, n.manifest, extra={"parents": [list(p) for p in n.parents]})
        step["files"] += [_check(workdir, f, None, "model file") for f in n.files]
        steps.append(step)
        if n.kind == "run" and n.details["mixture"] not in mixtures:
            mixtures.append(n.details["mixture"])
    return steps, mixtures


def _mixture_steps(workdir: Path, mixtures: list[str]) -> tuple[list[dict], dict, dict]:
    """A step for each mixture and each dataset it draws on, with the summaries of both."""
    steps = []
    chain_mixtures = {}
    chain_datasets = {}
    for mix in mixtures:
        manifest = _load(workdir / f"results/mixtures/{mix}/manifest.json")
        mstep = _step(workdir, "mixture", mix, f"results/mixtures/{mix}/manifest.json", params={})
        mstep["mixture"] = {k: manifest["mixture"][k] for k in ("seed", "rows", "tokens", "components")}
        steps.append(mstep)
        chain_mixtures[mix] = mstep["mixture"]
        for comp in manifest["mixture"]["components"]:
            ds = comp["dataset"]
            if ds in chain_datasets:
                continue
            dm = _load(workdir / f"results/data/{ds}/manifest.json")
            steps.append(
                _step(
                    workdir,
                    "dataset",
                    ds,
                    f"results/data/{ds}/manifest.json",
                    extra={"rows": dm["rows"], "rejected": dm["rejected"], "source": dm.get("source")},
                )
            )
            chain_datasets[ds] = {
                "rows": dm["rows"],
                "rejected": dm["rejected"],
                "raw": dm["inputs"].get("raw"),
                "source": dm.get("source"),
            }
    return steps, chain_mixtures, chain_datasets


def audit_chain(workdir: Path, graph: ModelGraph, model: str, benchmark: str) -> dict:
    """The provenance chain behind (model, benchmark) in results/tables/delta.csv."""
    workdir = Path(workdir)
    cell = _delta_cell(workdir, graph, model, benchmark)
    node = graph.node(model)
    chain: dict = {
        "cell": cell.iloc[0].to_dict(),
        "model": model,
        "benchmark": benchmark,
        "kind": node.kind,
        "lineage": graph.lineage(model),
        "steps": [],
    }
    steps = chain["steps"]
    steps.append(_step(workdir, "table", "delta table", "results/tables/manifest.json", params={}))
    steps[-1]["files"] = [f for f in steps[-1]["files"] if f["role"] in (f"{model}/{benchmark}", "code")]

    steps.extend(_eval_steps(workdir, model, benchmark))

    model_steps, mixtures = _model_steps(workdir, graph, model)
    steps.extend(model_steps)
    mixture_steps, chain["mixtures"], chain["datasets"] = _mixture_steps(workdir, mixtures)
    steps.extend(mixture_steps)
    base_path = graph.node(graph.base_of(model)).manifest  # the model's own base (base_models:)
    base = _load(workdir / base_path)
    name = "base model" + ("" if graph.base_of(model) == DEFAULT_BASE else f" {graph.base_of(model)}")
    steps.append(_step(workdir, "base", name, base_path))
    chain["base_model"] = {"source": base["source"], "weights_sha256": base["weights_sha256"]}
    chain["changed"] = [
        {"step": s["step"], "name": s["name"], **f} for s in steps for f in s["files"] if f["changed"]
    ]
    return chain


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "-"


def format_chain(chain: dict) -> str:
    c = chain["cell"]
    lines = [
        (
            f"{c['model']} x {c['benchmark']}: {c['score']} (base {c['base_score']}, "
            f"delta {c['delta_pts']:+} pts, n={int(c['n'])}) [{chain['kind']}]"
        ),
        "  made by: " + " -> ".join(chain["lineage"]),
    ]
    for s in chain["steps"]:
        code = s["code"]
        commit = (code.get("git_commit") or "no commit")[:12] + (
            " (dirty tree)" if code.get("git_dirty") else ""
        )
        pkgs = ", ".join(f"{k} {v}" for k, v in s["packages"].items() if v)
        lines.append(f"  {s['step']} {s['name']}: {s['file']}  code {commit}" + (f"; {pkgs}" if pkgs else ""))
        if s["step"] == "eval":
            p = s["params"]
            lines.append(
                f"    {p['metric']}={p['score']:.4f} over n={p['n']}, decoding {json.dumps(p['decoding'])}"
            )
        elif s["step"] == "benchmark":
            p = s["params"]
            lines.append(f"    items: {p['n']} chosen with seed {p['seed']} from {json.dumps(p['source'])}")
        elif s["step"] == "run":
            p = s["params"]
            lines.append(
                f"    mixture {p.get('mixture')}, recipe {json.dumps(p.get('recipe'))}"
                + (f", init_from {p['init_from']}" if p.get("init_from") else "")
            )
        elif s["step"] == "mixture":
            m = s["mixture"]
            lines.append(f"    {m['rows']} rows / {m['tokens']} tokens, seed {m['seed']}")
            for comp in m["components"]:
                lines.append(
                    f"    - {comp['name']}: {comp['rows']} rows ({comp['row_share']:.1%}) from "
                    f"{comp['dataset']}[{comp['split']}] weight {comp['weight']}"
                )
        elif s["step"] == "dataset":
            lines.append(f"    {s['rows']} rows, {s['rejected']} rejected")
        elif s["step"] in ("merge", "sweep"):
            lines.append(f"    from {', '.join(f'{m} x {w:g}' for m, w in s['parents'])}")
        elif s["step"] == "base":
            src = chain["base_model"]["source"]  # as resolved when the base was materialized
            origin = (
                src.get("id")
                or src.get("resolved_path")
                or src.get("path")
                or src.get("corpus")
                or src.get("type")
            )
            rev = src.get("revision") or src.get("package_version") or "-"
            lines.append(f"    base model: {origin} revision {rev}")
        for f in s["files"]:
            if f["role"] == "code" and not f["changed"]:
                continue  # code files: listed only when changed (the commit is shown above)
            mark = (
                f"CHANGED (recorded {_short(f['sha256_recorded'])}, now {_short(f['sha256_now'])})"
                if f["changed"]
                else f"sha256 {_short(f['sha256_recorded'] or f['sha256_now'])}"
                + ("" if f["sha256_now"] else " (missing)")
            )
            lines.append(f"    {f['role']}: {f['path']} ({mark})")
    n = len(chain["changed"])
    lines.append(
        f"  {n} file(s) changed since the table was made"
        + (
            ": the cell no longer traces to the files on disk; rerun the workflow"
            if n
            else "; every recorded hash matches the disk"
        )
    )
    return "\n".join(lines)
