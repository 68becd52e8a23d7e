"""deltaflow command line.

- `deltaflow audit MODEL BENCHMARK` traces a delta-table cell back through every kind of model
  (run, checkpoint, merge, sweep arm, merged or GGUF export) to the mixture, the datasets and
  their raw files, the benchmark items and the base model, with each file's recorded and
  current sha256 (deltaflow.audit).
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

from .errors import DeltaflowError


def _load(path: Path) -> dict:
    if not path.exists():
        raise DeltaflowError(f"{path} does not exist; has the workflow produced it?")
    return json.loads(path.read_text())


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
    audit.add_argument("--config", default="config/config.yaml", type=Path,
                       help="the config the results were made with (its model graph)")
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
        from .audit import audit_chain, format_chain
        from .config import load_config
        from .models import ModelGraph

        graph = ModelGraph(load_config(args.config, check_files=False))
        chain = audit_chain(args.results.resolve().parent, graph, args.model, args.benchmark)
    except DeltaflowError as exc:
        print(f"deltaflow: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(chain, indent=2, default=str) if args.json else format_chain(chain))
    return 0


if __name__ == "__main__":
    sys.exit(main())
