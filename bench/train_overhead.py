"""Training throughput: our adapter trainer vs a bare TRL script, and packing on vs off.

    .venv/bin/python bench/train_overhead.py [--steps 30] [--rounds 2]

Needs the demo's base model and mixture (`make demo` first): results/models/base and
results/mixtures/arith_replay/train.jsonl. Same data, recipe and seed on both sides;
rounds alternate (bare, ours, bare, ours, ...) so machine noise hits both.

1. overhead: tokens/s of deltaflow.training.runner.train_adapter (our callbacks, resumable trainer
   checkpoints every max_steps/5, metrics) over a bare TRL SFTTrainer + LoRA script. Goal >= 0.95.
2. packing: tokens/s with TRL packing on over off (our trainer both times). Goal >= 1.3
   where rows are short. "Off" is measured twice: with our default length-grouped batches
   (group_by_length, little padding left to remove) and with random batches (TRL's default,
   where short rows are padded to the longest in the batch).
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

from deltaflow.chat_template import training_template
from deltaflow.config import validate_config
from deltaflow.io import read_jsonl
from deltaflow.training.runner import train_adapter

BASE = Path("results/models/base")
MIX = Path("results/mixtures/arith_replay/train.jsonl")


def demo_recipe(steps: int) -> dict:
    cfg = validate_config(yaml.safe_load(Path("config/config.yaml").read_text()), check_files=False)
    recipe = dict(cfg["recipes"]["lora_r8"])
    recipe.update(max_steps=steps, logging_steps=5)
    return recipe


def bare_trl(rows: list[dict], recipe: dict, out: Path, base: Path = BASE, device: str = "cpu") -> float:
    """A plain TRL script: SFTTrainer + LoraConfig with the same hyperparameters; tokens/s.
    (bench/train_shapes.py runs it on a model shape and a GPU too.)"""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(base)
    tok.chat_template = training_template(tok, None)  # the same assistant-only-loss template
    model = AutoModelForCausalLM.from_pretrained(base, dtype="bfloat16" if device == "cuda" else "float32")
    args = SFTConfig(
        output_dir=str(out),
        max_steps=recipe["max_steps"],
        per_device_train_batch_size=recipe["batch_size"],
        learning_rate=recipe["learning_rate"],
        lr_scheduler_type=recipe["lr_scheduler"],
        warmup_steps=int(recipe["warmup_ratio"] * recipe["max_steps"]),
        logging_steps=5,
        max_length=recipe["max_length"],
        assistant_only_loss=True,
        seed=recipe["seed"],
        data_seed=recipe["seed"],
        bf16=device == "cuda",
        gradient_checkpointing=False,
        use_cpu=device == "cpu",
        save_strategy="no",
        report_to=[],
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
        train_sampling_strategy=recipe["sampling"],
    )
    peft = LoraConfig(
        r=recipe["r"],
        lora_alpha=recipe["alpha"],
        lora_dropout=recipe["dropout"],
        target_modules=recipe["target_modules"],
        task_type="CAUSAL_LM",
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        processing_class=tok,
        peft_config=peft,
        train_dataset=Dataset.from_list([{"messages": r["messages"]} for r in rows]),
    )
    t0 = time.time()
    trainer.train()
    return trainer.state.num_input_tokens_seen / (time.time() - t0)


def ours(rows: list[dict], recipe: dict, out: Path) -> float:
    metrics = train_adapter(
        BASE, rows, recipe, out / "adapter", resume_dir=out / "resume", resume_key="bench"
    )
    return metrics["tokens_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    if not (BASE.exists() and MIX.exists()):
        sys.exit("run `make demo` first: this bench trains on the demo's base model and mixture")
    rows = read_jsonl(MIX)
    recipe = demo_recipe(a.steps)
    print(
        f"{len(rows)} rows, {a.steps} steps, batch {recipe['batch_size']}, max_length {recipe['max_length']}, "
        f"{a.rounds} alternating rounds",
        flush=True,
    )
    runs = {"bare": [], "ours": [], "packed": [], "random": []}
    for r in range(a.rounds):
        for name, fn, rec in (
            ("bare", bare_trl, recipe),
            ("ours", ours, recipe),
            ("packed", ours, {**recipe, "packing": True}),
            ("random", ours, {**recipe, "sampling": "random"}),
        ):
            with tempfile.TemporaryDirectory() as tmp:
                tps = fn(rows, rec, Path(tmp))
            runs[name].append(tps)
            print(f"round {r + 1} {name:>6}: {tps:8.1f} tokens/s", flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(
        f"overhead: ours / bare TRL tokens/s = {med['ours'] / med['bare']:.3f} (goal >= 0.95); "
        f"per round: {', '.join(f'{o / b:.3f}' for o, b in zip(runs['ours'], runs['bare']))}"
    )
    print(
        f"packing: on / off tokens/s = {med['packed'] / med['ours']:.3f} (goal >= 1.3; off = length-grouped "
        f"batches); per round: {', '.join(f'{p / o:.3f}' for p, o in zip(runs['packed'], runs['ours']))}"
    )
    print(
        f"packing: on / off tokens/s = {med['packed'] / med['random']:.3f} (goal >= 1.3; off = random "
        f"batches); per round: {', '.join(f'{p / o:.3f}' for p, o in zip(runs['packed'], runs['random']))}"
    )


if __name__ == "__main__":
    main()
