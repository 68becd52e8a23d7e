"""GPU memory a PEFT run needs per strategy, from the model's shapes (no weights, no GPU).

    .venv/bin/python bench/memory_plan.py [--shape qwen2.5-32b | --config path/config.json]
        [--method dora] [--r 16] [--seq 2048] [--batch 1] [--gpu-gb 80]

The model is built on PyTorch's meta device (shapes only) and wrapped by PEFT with the
recipe's method and rank on all linear layers, so the parameter counts are exact; the memory
model on top of them is an estimate, each term printed:

- base weights: bf16, 2 bytes a parameter (QLoRA: NF4 with double quantization, ~0.52 bytes
  for the quantized linear weights, bf16 for the rest);
- adapter state: fp32 weights + fp32 gradients + AdamW's two fp32 moments, 16 bytes a
  trainable parameter;
- activations with gradient checkpointing: each layer's input kept (batch x seq x hidden,
  bf16), one layer recomputed at a time (~ batch x seq x (10 hidden + 4 intermediate) bf16),
  and the fp32 logits with their gradient (2 x batch x seq x vocab x 4 bytes);
- FSDP (full_shard over N GPUs): weights and adapter state / N, plus two layers gathered at
  once (the one computing and the one prefetched);
- a GPU's usable memory: 90% of --gpu-gb less 1.5 GB for the CUDA context and kernels.

Prints per strategy: GB per GPU, the GPUs it takes at --gpu-gb, and the config that asks the
workflow for them (train.gpus -> SLURM --gpus).
"""

import argparse
import math

SHAPES = {
    # Qwen2.5-32B's published config.json (the 27-32B dense class of the design documents'
    # 27B DoRA run; pass --config for another model's own file)
    "qwen2.5-32b": {
        "hidden_size": 5120,
        "intermediate_size": 27648,
        "num_hidden_layers": 64,
        "num_attention_heads": 40,
        "num_key_value_heads": 8,
        "vocab_size": 152064,
        "tie_word_embeddings": False,
    },
    "qwen2.5-0.5b": {
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
    },
}
GB = 1e9


def counts(cfg, method: str, r: int) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    total = sum(p.numel() for p in model.parameters())
    linear = sum(
        m.weight.numel()
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head")
    )
    peft = get_peft_model(
        model,
        LoraConfig(
            r=r,
            lora_alpha=2 * r,
            target_modules="all-linear",
            use_dora=method == "dora",
            task_type="CAUSAL_LM",
        ),
    )
    trainable = sum(p.numel() for p in peft.parameters() if p.requires_grad)
    return {"total": total, "linear": linear, "trainable": trainable}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=sorted(SHAPES), default="qwen2.5-32b")
    ap.add_argument("--config", help="a model's config.json (overrides --shape)")
    ap.add_argument("--method", choices=["lora", "dora"], default="dora")
    ap.add_argument("--r", type=int, default=16)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=1, help="rows per GPU per micro-batch")
    ap.add_argument("--gpu-gb", type=float, default=80.0)
    a = ap.parse_args()
    from transformers import AutoConfig, Qwen2Config

    cfg = AutoConfig.from_pretrained(a.config) if a.config else Qwen2Config(**SHAPES[a.shape])
    c = counts(cfg, a.method, a.r)
    h, i, L, V = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.vocab_size
    bs = a.batch * a.seq
    weights = {"bf16": 2 * c["total"], "nf4": 0.52 * c["linear"] + 2 * (c["total"] - c["linear"])}
    adapter = 16 * c["trainable"]
    acts = L * bs * h * 2 + bs * (10 * h + 4 * i) * 2 + 2 * bs * V * 4
    layer = (c["linear"] / L) * 2  # one decoder layer's weights, bf16
    print(
        f"{a.config or a.shape}: {c['total'] / 1e9:.2f}B parameters ({c['linear'] / 1e9:.2f}B in linear layers); "
        f"{a.method} r={a.r} all-linear: {c['trainable'] / 1e6:.1f}M trainable"
    )
    print(
        f"terms (GB): weights bf16 {weights['bf16'] / GB:.1f}, NF4 {weights['nf4'] / GB:.1f}; adapter state "
        f"{adapter / GB:.2f}; activations (batch {a.batch} x seq {a.seq}, checkpointed) {acts / GB:.2f}; "
        f"one layer gathered {layer / GB:.2f}"
    )
    usable = (0.9 * a.gpu_gb - 1.5) * GB
    print(
        f"{'strategy':<28} {'GB per GPU':>10} {'GPUs @' + format(a.gpu_gb, 'g') + ' GB':>12}   workflow config"
    )
    rows = [
        ("bf16 copy per GPU (1 or DDP)", weights["bf16"] + adapter + acts, None, "ddp"),
        ("QLoRA, 1 process (NF4)", weights["nf4"] + adapter + acts, None, None),
    ]
    for name, need, _, strategy in rows:
        fits = need <= usable
        gpus = 1 if fits else "does not fit"
        conf = (
            "train: {device: cuda, gpus: 1}" + ("" if strategy else "; recipe load_in_4bit: true")
            if fits
            else "-"
        )
        print(f"{name:<28} {need / GB:10.1f} {gpus!s:>12}   {conf}")
    for n in (2, 4, 8):
        need = (weights["bf16"] + adapter) / n + 2 * layer + acts
        ok = need <= usable
        print(
            f"{'FSDP full_shard x' + str(n):<28} {need / GB:10.1f} {(str(n) if ok else 'too small'):>12}   "
            + (f"train: {{device: cuda, gpus: {n}, strategy: fsdp}}" if ok else "-")
        )
    n_min = next(
        (n for n in range(2, 65) if (weights["bf16"] + adapter) / n + 2 * layer + acts <= usable), None
    )
    print(
        f"usable per GPU: {usable / GB:.1f} GB; fewest GPUs for bf16 {a.method} with FSDP: {n_min}; "
        f"a bf16 copy per GPU needs {math.ceil((weights['bf16'] + adapter + acts) / GB)} GB on each"
    )


if __name__ == "__main__":
    main()
