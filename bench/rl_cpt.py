"""GRPO and continued pretraining on the real model, through the workflow's own training code
(training.runner.train_adapter, the function the adapter rule calls). Prints, from one run each:

- GRPO: arithmetic prompts (the generated task's train rows), the arithmetic benchmark's own
  answer check as the reward; the reward curve, its first and last logged values, the share of
  mixed groups, and completion tokens/s;
- CPT: C4 text rows from the llamafactory sdist, the held-out rows' loss at four points, tokens/s.

    .venv/bin/python bench/rl_cpt.py [MODEL_DIR] [--grpo-steps 10] [--cpt-steps 20] [--init-adapter DIR]
        [--rollouts hf|vllm] [--skip-cpt]

MODEL_DIR: a HF folder (default: the demo's base, results/models/base).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from deltaflow import sources
from deltaflow.bench.synthetic_tasks import generate_task
from deltaflow.config import schema_defaults
from deltaflow.training.runner import train_adapter

ROOT = Path(__file__).resolve().parents[1]
LORA = {
    "r": 8,
    "alpha": 16,
    "dropout": 0.0,
    "target_modules": "all-linear",
    "lr_scheduler": "constant",
    "warmup_ratio": 0.0,
    "seed": 0,
    "logging_steps": 1,
}


def grpo(
    model: Path, steps: int, out: Path, init: Path | None = None, device: str = "cpu", rollouts: str = "hf"
) -> None:
    rows = [
        r
        for r in generate_task("arithmetic", train_rows=64, eval_rows=0, seed=0, name="arith")
        if r["split"] == "train"
    ]
    recipe = schema_defaults(
        "recipe",
        {
            **LORA,
            "objective": "grpo",
            "learning_rate": 2e-4,
            "max_steps": steps,
            "batch_size": 8,
            "num_generations": 4,
            "max_completion_length": 16,
            "max_length": 256,
            "temperature": 1.0,
            "rollouts": rollouts,
            "rewards": [{"verifier": {"benchmark": "arithmetic"}, "name": "exact"}],
        },
    )
    t0 = time.time()
    m = train_adapter(model, rows, recipe, out / "grpo", device=device, init_dir=init)
    wall = time.time() - t0
    rewards = [round(c.get("reward", float("nan")), 3) for c in m["reward_curve"]]
    lengths = [c.get("completions/mean_length", 0.0) for c in m["reward_curve"]]
    completion_tokens = sum(lengths) * recipe["batch_size"]  # one logged step per optimizer step
    print(
        f"grpo ({rollouts} rollouts): {steps} steps x {recipe['batch_size']} completions ({recipe['num_generations']} per prompt), "
        f"{wall:.1f} s ({m['train_s']:.1f} s training)"
    )
    print(f"grpo: reward per step {rewards}")
    half = max(1, len(rewards) // 2)
    print(
        f"grpo: mean reward first half {sum(rewards[:half]) / half:.3f}, second half "
        f"{sum(rewards[half:]) / max(1, len(rewards) - half):.3f}; groups {json.dumps(m['groups'])}"
    )
    print(
        f"grpo: {completion_tokens:.0f} completion tokens, {completion_tokens / m['train_s']:.1f} completion tokens/s"
    )


def cpt(model: Path, steps: int, out: Path, device: str = "cpu") -> None:
    c4 = sources.resolve_file(
        {"type": "sdist_file", "sdist": "llamafactory==0.9.5", "path": "data/c4_demo.jsonl"}
    )
    rows = [
        {"id": f"c4-{i}", "text": json.loads(line)["text"], "messages": []}
        for i, line in enumerate(c4.read_text().splitlines()[:120])
    ]
    recipe = schema_defaults(
        "recipe",
        {
            **LORA,
            "objective": "cpt",
            "learning_rate": 5e-4,
            "max_steps": steps,
            "batch_size": 4,
            "max_length": 256,
            "val_rows": 10,
            "eval_every": max(1, steps // 4),
        },
    )

    m = train_adapter(model, rows, recipe, out / "cpt", device=device)
    print(
        f"cpt: {steps} steps x {recipe['batch_size']} packed sequences of {recipe['max_length']} tokens, "
        f"{m['tokens_seen']} tokens in {m['train_s']:.1f} s = {m['tokens_per_s']:.1f} tokens/s"
    )
    print(f"cpt: held-out loss (10 C4 rows) {json.dumps(m['eval_curve'])}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", type=Path, default=ROOT / "results/models/base")
    ap.add_argument("--grpo-steps", type=int, default=10)
    ap.add_argument(
        "--init-adapter",
        type=Path,
        default=None,
        help="GRPO continues this SFT adapter (e.g. the demo's results/adapters/arith_lora)",
    )
    ap.add_argument("--cpt-steps", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--rollouts",
        choices=["hf", "vllm"],
        default="hf",
        help="who samples GRPO's completions: HF generate, or TRL's colocated vLLM (CUDA)",
    )
    ap.add_argument("--skip-cpt", action="store_true")
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="rl_cpt_"))
    print(f"model {args.model}")
    print(f"grpo continues {args.init_adapter or 'a fresh adapter on the base'}")
    grpo(args.model, args.grpo_steps, out, args.init_adapter, args.device, args.rollouts)
    if not args.skip_cpt:
        cpt(args.model, args.cpt_steps, out, args.device)


if __name__ == "__main__":
    sys.exit(main())
