"""deltaflow command line.

- `deltaflow audit MODEL BENCHMARK` traces a delta-table cell back through every kind of model
  (run, checkpoint, merge, sweep arm, merged or GGUF export) to the mixture, the datasets and
  their raw files, the benchmark items and the base model, with each file's recorded and
  current sha256 (deltaflow.audit).
- `deltaflow compare MODEL_A MODEL_B [--benchmark B]` prints the paired comparison of two
  evaluated models (mean delta with CI, McNemar, flips, right/left/tie rates) from the saved
  per-item records, nothing rerun; the tables' own code and refusals (deltaflow.tables).
- `deltaflow compare --against OTHER` compares the same models and benchmarks in this results
  tree and another (a results directory, or a git revision that tracks results/), paired over
  the items, and lists the cells that changed (`--all`: every cell) (deltaflow.tree_diff).
- `deltaflow status [SNAKEMAKE ARGS]` lists the jobs a run would redo and Snakemake's reason
  for each (changed params, code or inputs), from a dry run (deltaflow.status).
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


def compare(workdir: Path, config: dict, left: str, right: str, benchmarks: list[str] | None = None):
    """Right vs left from the saved per-item records: the comparisons table's rows."""
    from .bench.from_config import benchmark_axes
    from .models import ModelGraph
    from .tables import TableSettings, comparison_table, load_eval_results

    graph = ModelGraph(config)
    for name in (left, right):
        if name not in graph:
            raise DeltaflowError(f"'{name}' is not a model of this config; models: {', '.join(graph.names)}")
    if benchmarks:
        unknown = sorted(set(benchmarks) - set(config["benchmarks"]))
        if unknown:
            raise DeltaflowError(
                f"unknown benchmark(s) {unknown}; known: {', '.join(sorted(config['benchmarks']))}"
            )
    summaries = [workdir / f"results/evals/{m}/summary.json" for m in (left, right)]
    for path in summaries:
        if not path.exists():
            raise DeltaflowError(f"{path} does not exist; run the workflow first (its eval job)")
    # judged benchmarks' scores come from the judge jobs (rules/judge.smk), when there are any
    summaries += [p for m in (left, right) if (p := workdir / f"results/judged/{m}/summary.json").exists()]
    cwd = Path.cwd()
    try:  # the summaries list their files relative to the working directory
        import os

        os.chdir(workdir)
        results, _ = load_eval_results(summaries, benchmarks)
    finally:
        os.chdir(cwd)
    settings = TableSettings.from_config(config["tables"], benchmark_axes(config))
    # benchmarks outside a model's suites: its eval job wrote a not_run record (deltaflow.suites)
    not_run = {
        m: {b: rec["reason"] for b in config["benchmarks"] if (rec := _not_run_record(workdir, m, b))}
        for m in (left, right)
    }
    return comparison_table(results, [(left, right)], settings, not_run)


def _not_run_record(workdir: Path, model: str, bench: str) -> dict | None:
    for stage in ("evals", "judged"):
        path = workdir / f"results/{stage}/{model}/{bench}.json"
        if path.exists() and (rec := _load(path)).get("not_run"):
            return rec
    return None


def rescore(results: Path, config_path: Path, benchmark: str) -> list[dict]:
    """Re-score saved raw outputs of ``benchmark`` for every evaluated model (no model loaded)."""
    from .bench.from_config import benchmark_spec
    from .bench.scoring.metrics import score_all
    from .config import load_config
    from .io import read_jsonl

    config = load_config(config_path, check_files=False)
    if benchmark not in config["benchmarks"]:
        raise DeltaflowError(
            f"benchmark '{benchmark}' is not in {config_path}; "
            f"known: {', '.join(sorted(config['benchmarks']))}"
        )
    spec = benchmark_spec(config, benchmark)
    docs = read_jsonl(results / f"benchmarks/{benchmark}/docs.jsonl")
    rows = []
    for metrics_path in sorted((results / "evals").glob(f"*/{benchmark}.json")):
        old = _load(metrics_path)
        if old.get("not_run"):  # outside this model's suites (deltaflow.suites): nothing to re-score
            continue
        outputs = results / "evals/.cache" / old["cache"]["key"] / "outputs.jsonl"
        if not outputs.exists():
            raise DeltaflowError(f"{metrics_path}: its saved outputs {outputs} are gone; rerun the workflow")
        records, new = score_all(spec, docs, read_jsonl(outputs))
        rows.append(
            {
                "model": old["model"],
                "metric": new["metric"],
                "old": old["score"],
                "new": new["score"],
                "changed_items": sum(
                    a["score"] != b["score"]
                    for a, b in zip(read_jsonl(metrics_path.with_suffix(".jsonl")), records)
                ),
            }
        )
    if not rows:
        raise DeltaflowError(f"no results/evals/*/{benchmark}.json under {results}; run the workflow first")
    return rows


def _compare_trees(args, parser) -> int:
    """``compare --against``: the cells of this tree that differ from the other's."""
    from .bench.from_config import benchmark_axes
    from .config import load_config
    from .tables import TableSettings
    from .tree_diff import diff_trees, other_tree, tree_results

    if args.left or args.right:
        parser.error("compare --against compares whole trees; name models with --model")
    config = load_config(args.config, check_files=False)
    settings = TableSettings.from_config(config["tables"], benchmark_axes(config))
    here = tree_results(args.results)
    with other_tree(args.against, args.results.resolve().parent) as other:
        df = diff_trees(
            tree_results(other),
            here,
            settings,
            models=args.model,
            benchmarks=args.benchmark,
            every_cell=args.all,
        )
    if args.csv:
        print(df.to_csv(index=False), end="")
    else:
        print(df.to_markdown(index=False) if len(df) else "no cell changed")
        changed = int((df.status == "changed").sum())
        print(f"\n{changed} changed cell(s), {int(df.status.str.startswith('only').sum())} in one tree only")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deltaflow")
    sub = parser.add_subparsers(dest="command", required=True)
    audit = sub.add_parser("audit", help="trace a delta-table cell back to its data, recipe, model and code")
    audit.add_argument("model")
    audit.add_argument("benchmark")
    audit.add_argument("--results", default="results", type=Path)
    audit.add_argument(
        "--config",
        default="config/config.yaml",
        type=Path,
        help="the config the results were made with (its model graph)",
    )
    audit.add_argument("--json", action="store_true", help="print the chain as JSON")
    comp = sub.add_parser(
        "compare",
        help="paired comparison of two evaluated models from saved records, or (--against) of this "
        "results tree with another",
    )
    comp.add_argument("left", nargs="?")
    comp.add_argument("right", nargs="?")
    comp.add_argument(
        "--against",
        help="another results directory, or a git revision whose commit tracks results/: the same "
        "models and benchmarks compared item by item (this tree minus that one)",
    )
    comp.add_argument("--model", action="append", help="with --against: only this model (repeatable)")
    comp.add_argument("--all", action="store_true", help="with --against: unchanged cells too")
    comp.add_argument("--benchmark", action="append", help="only this benchmark (repeatable)")
    comp.add_argument("--results", default="results", type=Path)
    comp.add_argument("--config", default="config/config.yaml", type=Path)
    comp.add_argument("--csv", action="store_true", help="print CSV instead of a table")
    sub.add_parser(
        "status",
        help="which jobs a run would redo, and why (a Snakemake dry run); other "
        "arguments go to snakemake -n (default: --profile profiles/local)",
    )
    resc = sub.add_parser("rescore", help="re-score saved outputs of a benchmark (no model needed)")
    resc.add_argument("benchmark")
    resc.add_argument("--config", default="config/config.yaml", type=Path)
    resc.add_argument("--results", default="results", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "status":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "compare" and args.against:
            return _compare_trees(args, parser)
        if args.command == "compare":
            if not (args.left and args.right):
                parser.error("compare needs two models (LEFT RIGHT), or --against OTHER")
            from .config import load_config

            df = compare(
                args.results.resolve().parent,
                load_config(args.config, check_files=False),
                args.left,
                args.right,
                args.benchmark,
            )
            print(
                df.to_csv(index=False)
                if args.csv
                else df.drop(columns=["comparison"]).to_markdown(index=False)
            )
            return 0
        if args.command == "status":
            from .status import format_plan, plan

            print(format_plan(plan(extra or ["--profile", "profiles/local"])))
            return 0
        if args.command == "rescore":
            rows = rescore(args.results, args.config, args.benchmark)
            for r in rows:
                print(
                    f"{r['model']:<32} {r['metric']:<12} {r['old']:.4f} -> {r['new']:.4f} "
                    f"({r['changed_items']} items changed)"
                )
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
