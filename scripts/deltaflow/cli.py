"""deltaflow command line.

- `deltaflow audit MODEL BENCHMARK` traces a delta-table cell back to the data rows' sources,
  the mixture, the recipe, the base model revision and the code.
- `deltaflow rescore BENCHMARK` re-scores every model's saved outputs for a benchmark with the
  current registry/config (e.g. after an answer-parser fix) without loading any model, and
  prints old vs new scores. Rerunning the workflow applies the change, also without a model:
  the eval jobs find their outputs cached and only re-score.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from .errors import DeltaflowError


def _load(path: Path) -> dict:
    if not path.exists():
        raise DeltaflowError(f"{path} does not exist; has the workflow produced it?")
    return json.loads(path.read_text())


def _code(manifest: dict) -> str:
    code = manifest.get("code", {})
    dirty = " (dirty tree)" if code.get("git_dirty") else ""
    return f"{code.get('git_commit') or 'no commit'}{dirty}"


def audit_chain(results: Path, model: str, benchmark: str) -> dict:
    """The provenance chain behind (model, benchmark) in results/tables/delta.csv."""
    table = pd.read_csv(results / "tables/delta.csv")
    cell = table[(table.model == model) & (table.benchmark == benchmark) & (table.level == "benchmark")
                 & (table.source == "evaluated")]
    if cell.empty:
        raise DeltaflowError(f"no row ({model}, {benchmark}) in {results / 'tables/delta.csv'}; "
                             f"models: {sorted(table.model.unique())}, "
                             f"benchmarks: {sorted(table.benchmark.unique())}")
    chain: dict = {"cell": cell.iloc[0].to_dict()}
    ev = _load(results / f"evals/{model}/{benchmark}.json")
    chain["eval"] = {"score": ev["score"], "n": ev["n"], "metric": ev["metric"],
                     "decoding": ev["decoding"], "inputs": ev["manifest"]["inputs"],
                     "code": _code(ev["manifest"]), "finished": ev["manifest"]["finished"]}
    docs = _load(results / f"benchmarks/{benchmark}/manifest.json")
    chain["benchmark"] = {"source": docs["params"]["spec"]["source"], "n": docs["n"],
                          "seed": docs["params"]["spec"]["seed"], "inputs": docs["inputs"]}
    if model != "base":
        adapter = _load(results / f"adapters/{model}/manifest.json")
        chain["adapter"] = {"recipe": adapter["params"]["recipe"], "mixture": adapter["params"]["mixture"],
                            "train_sha256": adapter["inputs"]["train"]["sha256"],
                            "code": _code(adapter)}
        mix = _load(results / f"mixtures/{adapter['params']['mixture']}/manifest.json")
        chain["mixture"] = {"seed": mix["mixture"]["seed"], "rows": mix["mixture"]["rows"],
                            "tokens": mix["mixture"]["tokens"],
                            "components": mix["mixture"]["components"], "code": _code(mix)}
        chain["datasets"] = {}
        for comp in mix["mixture"]["components"]:
            ds = _load(results / f"data/{comp['dataset']}/manifest.json")
            chain["datasets"][comp["dataset"]] = {
                "source": ds.get("source"), "raw": ds["inputs"].get("raw"), "rows": ds["rows"],
                "rejected": ds["rejected"], "code": _code(ds)}
    base = _load(results / "models/base/manifest.json")
    chain["base_model"] = {"source": base["source"], "weights_sha256": base["weights_sha256"],
                           "code": _code(base)}
    return chain


def format_chain(chain: dict) -> str:
    c = chain["cell"]
    lines = [f"{c['model']} x {c['benchmark']}: {c['score']} (base {c['base_score']}, "
             f"delta {c['delta_pts']:+} pts, n={c['n']})"]
    ev = chain["eval"]
    lines.append(f"  eval: {ev['metric']}={ev['score']:.4f} over n={ev['n']}, decoding {ev['decoding']}, "
                 f"code {ev['code']}, finished {ev['finished']}")
    b = chain["benchmark"]
    lines.append(f"  items: {b['n']} chosen with seed {b['seed']} from {json.dumps(b['source'])}")
    if "adapter" in chain:
        a = chain["adapter"]
        lines.append(f"  adapter: mixture {a['mixture']}, recipe {json.dumps(a['recipe'])}, "
                     f"train.jsonl sha256 {a['train_sha256'][:16]}, code {a['code']}")
        m = chain["mixture"]
        lines.append(f"  mixture: {m['rows']} rows / {m['tokens']} tokens, seed {m['seed']}")
        for comp in m["components"]:
            lines.append(f"    - {comp['name']}: {comp['rows']} rows ({comp['row_share']:.1%}) from "
                         f"{comp['dataset']}[{comp['split']}] weight {comp['weight']}")
        for name, ds in chain["datasets"].items():
            raws = ds["raw"] if isinstance(ds["raw"], list) else [ds["raw"]]
            where = ", ".join(f"{r['path']} (sha256 {r['sha256'][:16]})" for r in raws if r) or "generated"
            lines.append(f"    dataset {name}: {ds['rows']} rows, {ds['rejected']} rejected, from {where}")
    base = chain["base_model"]
    src = base["source"]
    origin = src.get("id") or src.get("resolved_path") or src.get("path") or src.get("type")
    rev = src.get("revision") or src.get("package_version") or "-"
    lines.append(f"  base model: {origin} revision {rev}, source sha256 "
                 f"{(src.get('source_sha256') or src.get('corpus_sha256') or '-')[:16]}, "
                 f"weights sha256 {base['weights_sha256'][:16]}")
    return "\n".join(lines)


def rescore(results: Path, config_path: Path, benchmark: str) -> list[dict]:
    """Re-score saved raw outputs of ``benchmark`` for every evaluated model (no model loaded)."""
    from .config import benchmark_spec, load_config
    from .io import read_jsonl
    from .scoring import score_all

    config = load_config(config_path, check_files=False)
    if benchmark not in config["benchmarks"]:
        raise DeltaflowError(f"benchmark '{benchmark}' is not in {config_path}; "
                             f"known: {', '.join(sorted(config['benchmarks']))}")
    spec = benchmark_spec(config, benchmark)
    docs = read_jsonl(results / f"benchmarks/{benchmark}/docs.jsonl")
    rows = []
    for metrics_path in sorted((results / "evals").glob(f"*/{benchmark}.json")):
        old = _load(metrics_path)
        outputs = results / "evals/.cache" / old["cache"]["key"] / "outputs.jsonl"
        if not outputs.exists():
            raise DeltaflowError(f"{metrics_path}: its saved outputs {outputs} are gone; rerun the workflow")
        records, new = score_all(spec, docs, read_jsonl(outputs))
        rows.append({"model": old["model"], "metric": new["metric"], "old": old["score"], "new": new["score"],
                     "changed_items": sum(a["score"] != b["score"] for a, b in
                                          zip(read_jsonl(metrics_path.with_suffix(".jsonl")), records))})
    if not rows:
        raise DeltaflowError(f"no results/evals/*/{benchmark}.json under {results}; run the workflow first")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deltaflow")
    sub = parser.add_subparsers(dest="command", required=True)
    audit = sub.add_parser("audit", help="trace a delta-table cell back to its data, recipe, model and code")
    audit.add_argument("model")
    audit.add_argument("benchmark")
    audit.add_argument("--results", default="results", type=Path)
    audit.add_argument("--json", action="store_true", help="print the chain as JSON")
    resc = sub.add_parser("rescore", help="re-score saved outputs of a benchmark (no model needed)")
    resc.add_argument("benchmark")
    resc.add_argument("--config", default="config/config.yaml", type=Path)
    resc.add_argument("--results", default="results", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "rescore":
            rows = rescore(args.results, args.config, args.benchmark)
            for r in rows:
                print(f"{r['model']:<32} {r['metric']:<12} {r['old']:.4f} -> {r['new']:.4f} "
                      f"({r['changed_items']} items changed)")
            return 0
        chain = audit_chain(args.results, args.model, args.benchmark)
    except DeltaflowError as exc:
        print(f"deltaflow: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(chain, indent=2, default=str) if args.json else format_chain(chain))
    return 0


if __name__ == "__main__":
    sys.exit(main())
