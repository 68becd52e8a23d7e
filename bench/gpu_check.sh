#!/usr/bin/env bash
# The GPU checks in one run, for a machine with one CUDA GPU (the `device` tool): within ~8 min
# after setup it prints
#   1. LoRA and QLoRA tokens/s and peak memory on the Qwen2.5-0.5B shape, ours vs a bare TRL
#      script, and packing vs not (bench/train_shapes.py; bf16, sdpa attention);
#   2. HF generate vs vLLM generated tokens/s on the same prompts (bench/eval_throughput.py), a
#      benchmark's and the generation stage's (the demo's self-replay prompts);
#   3. the demo's eval job for the base model on the GPU (the workflow's own rule);
#   4. 8 adapter arms: one process vs one per arm (HF), one multi-LoRA vLLM engine vs one per arm;
#   5. a served model's requests/s at concurrency 1, 8, 32 (`vllm serve`, bench/served_throughput.py).
#   bash bench/gpu_check.sh           on the GPU machine (runs `make setup` / `make vllm-env` if needed)
#   bash bench/gpu_check.sh --smoke   CPU-sized: the same steps on the tiny shape, no vLLM, no
#                                     workflow run (what tests/test_bench.py runs)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if [ "${1:-}" = "--smoke" ]; then
  DEV=cpu; SHAPE=tiny; STEPS=4; BATCH=4; SMOKE=1
else
  DEV=cuda; SHAPE=qwen2.5-0.5b; STEPS=30; BATCH=8; SMOKE=0
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  t0=$(date +%s)
  make setup >/tmp/gpu_check_setup.log 2>&1 || { tail -20 /tmp/gpu_check_setup.log; exit 1; }
  echo "setup: $(( $(date +%s) - t0 )) s"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1

echo "== 1. training on the $SHAPE shape ($DEV): ours (LoRA, packed, QLoRA) vs bare TRL =="
$PY bench/train_shapes.py --shape "$SHAPE" --device "$DEV" --steps "$STEPS" --batch-size "$BATCH" \
  --save-base "$work/base"

echo "== 2. generation: HF generate vs vLLM, greedy, same prompts =="
if [ "$SMOKE" = 1 ]; then
  $PY bench/eval_throughput.py "$work/base" --n 4 --max-gen-toks 8 --device cpu --batch-size 4 --skip-vllm
  $PY bench/eval_throughput.py "$work/base" --generation --n 2 --max-gen-toks 8 --device cpu --batch-size 4 --skip-vllm
else
  make vllm-env >/tmp/gpu_check_vllm.log 2>&1 || { tail -20 /tmp/gpu_check_vllm.log; exit 1; }
  $PY bench/eval_throughput.py "$work/base" --n 64 --max-gen-toks 128 --device cuda --batch-size 64
  $PY bench/eval_throughput.py "$work/base" --generation --n 64 --max-gen-toks 256 --device cuda --batch-size 64
fi

if [ "$SMOKE" = 0 ]; then
  echo "== 2b. GRPO (HF generation) and CPT on the $SHAPE shape =="
  $PY bench/rl_cpt.py "$work/base" --grpo-steps 10 --cpt-steps 20 --device cuda
  echo "== 2c. GRPO with TRL's colocated vLLM generation (recipes.<r>.rollouts: vllm) =="
  if $PY -c "import vllm" 2>/dev/null; then
    $PY bench/rl_cpt.py "$work/base" --grpo-steps 10 --device cuda --rollouts vllm --skip-cpt
  else
    echo "skipped: vllm is not importable in $PY (TRL colocates it with the trainer; the eval backend's .venv-vllm is another environment)"
  fi
  echo "== 3. the demo's eval job for the base model on the GPU =="
  t0=$(date +%s)
  $PY -m snakemake --profile profiles/local --directory "$work/demo" --configfile config/config.yaml \
    --config 'eval={device: cuda, batch_size: 64}' -s Snakefile results/evals/base/summary.json \
    >"$work/demo.log" 2>&1 || { tail -40 "$work/demo.log"; exit 1; }
  echo "demo eval job (base model, all benchmarks, with its upstream jobs): $(( $(date +%s) - t0 )) s"
  cat "$work/demo/results/evals/base/summary.json" 2>/dev/null | head -c 2000; echo
  echo "== 4. 8 adapter arms of the base: one process vs one per arm (HF), one vLLM engine (multi-LoRA) vs one per arm =="
  $PY bench/multi_arm_eval.py --results "$work/demo/results" --arms 8 --docs 64 --threads 4
  $PY bench/multi_arm_eval.py --results "$work/demo/results" --arms 8 --docs 64 --backend vllm
  echo "== 5. a served model's throughput (vllm serve), requests/s at the client's concurrency =="
  $PY bench/served_throughput.py --vllm "$work/demo/results/models/base" \
    --docs "$work/demo/results/benchmarks/gsm8k/docs.jsonl" --n 128 --max-gen-toks 128 --concurrency 1 8 32
fi
echo "gpu_check: done ($DEV)"
