#!/usr/bin/env bash
# The demo's adapter vs the base on the real model (SmolLM2-135M-Instruct) on what issue 16
# added: OpenBookQA and SciQ (declared in YAML only) and WritingBench's English prompts judged
# pairwise and on a rubric by the base model. The demo config plus bench/judged_overlay.yaml runs
# in its own working directory (bench/out/judged; the demo's results/ are not touched), for
# the base and arith_lora only; prints the paired comparison and the judged metrics.
#   bash bench/judged_eval.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$repo/bench/out/judged
mkdir -p "$out"
cd "$repo"
PY=.venv/bin/python
$PY - "$out/config.yaml" <<'PY'
import sys, yaml
cfg = yaml.safe_load(open("config/config.yaml"))
for k, v in yaml.safe_load(open("bench/judged_overlay.yaml")).items():
    cfg[k] = {**cfg.get(k, {}), **v}
open(sys.argv[1], "w").write(yaml.safe_dump(cfg, sort_keys=False))
PY
t0=$(date +%s)
$PY -m snakemake results/judged/base/summary.json results/judged/arith_lora/summary.json \
  --profile profiles/local --directory "$out" --configfile "$out/config.yaml" \
  >"$out/snakemake.log" 2>&1 || { tail -40 "$out/snakemake.log"; exit 1; }
t1=$(date +%s)
echo "workflow_s=$((t1 - t0))"
PYTHONPATH=scripts $PY -m deltaflow.cli compare base arith_lora --results "$out/results" --config "$out/config.yaml"
$PY - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1]) / "results"
for model in ("base", "arith_lora"):
    for bench in ("style_pairwise", "style_rubric", "style_rubric_expected"):
        m = json.loads((out / f"judged/{model}/{bench}.json").read_text())
        keep = {k: ([round(x, 4) for x in v] if isinstance(v, list) else round(v, 4) if isinstance(v, float) else v)
                for k, v in m["all_metrics"].items()}
        print(model, bench, f"n={m['n']}", f"score={m['score']:.4f}", f"unparsed={m['unparsed']}", json.dumps(keep))
    for bench in ("openbookqa", "sciq", "arc_easy"):
        m = json.loads((out / f"evals/{model}/{bench}.json").read_text())
        print(model, bench, f"n={m['n']}", m["metric"], round(m["score"], 4), f"eval_s={m['eval_s']}")
PY
