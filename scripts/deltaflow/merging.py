"""Adapter arithmetic with PEFT: coefficient sweeps, weighted combinations, full merges.

- ``combine_adapters``: PEFT's ``add_weighted_adapter`` (linear, cat, TIES, DARE, ...) over
  any number of LoRA adapters, written as a new adapter folder. A coefficient sweep arm is
  the one-adapter case: PEFT's linear combination of a single adapter scales both factors
  by sqrt(coef * scaling), so the weight delta is exactly ``coef`` times the original's.
- ``merge_full``: ``merge_and_unload`` of an adapter into a full safetensors model (what the
  GGUF converter reads).
- ``merge_models``: merges and sweep arms of whole models (``method: full`` runs) in weight
  space with mergekit, the maintained library for it (task arithmetic, TIES, DARE, SLERP): no
  merge maths here.

Every output gets a manifest (written by the rule) naming its inputs, weights and method.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .errors import DeltaflowError
from .vocab import adapter_has_tokenizer, load_base_for_adapter

log = logging.getLogger(__name__)


def _load_base(base_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)


def _fix_rslora_scaling(model, adapter_name: str) -> None:
    """PEFT 0.21's add_weighted_adapter copies the first input's config with r = alpha = new
    rank, so the new adapter's scaling should be 1 — but it keeps ``use_rslora``, which makes
    the scaling alpha/sqrt(r) = sqrt(r) and multiplies the merged delta by sqrt(r). The merged
    factors already carry every input's scaling, so the result is a plain LoRA with scaling 1."""
    from peft.tuners.lora import LoraLayer

    cfg = model.peft_config[adapter_name]
    if not cfg.use_rslora:
        return
    cfg.use_rslora = False
    for module in model.modules():
        if isinstance(module, LoraLayer) and adapter_name in module.scaling:
            module.scaling[adapter_name] = cfg.lora_alpha / cfg.r


def combine_adapters(
    base_dir: Path,
    adapters: dict[str, Path],
    weights: dict[str, float],
    out_dir: Path,
    *,
    method: str = "linear",
    density: float | None = None,
    majority_sign_method: str = "total",
    svd_rank: int | None = None,
    seed: int = 0,
) -> dict:
    """Write ``sum_i weights[i] * adapters[i]`` (by ``method``) as one adapter in ``out_dir``."""
    import torch
    from peft import PeftModel

    names = list(adapters)
    if not names:
        raise DeltaflowError("combine_adapters needs at least one adapter")
    for name, path in adapters.items():
        if not (Path(path) / "adapter_config.json").exists():
            raise DeltaflowError(
                f"{path} is not a PEFT adapter folder (no adapter_config.json); "
                f"rerun the job that writes '{name}'"
            )
        if adapter_has_tokenizer(path):
            raise DeltaflowError(
                f"adapter '{name}' adds new tokens; weighted combinations and sweeps "
                "need plain LoRA factors (merge or sweep runs without new_tokens)"
            )
    model = PeftModel.from_pretrained(_load_base(base_dir), str(adapters[names[0]]), adapter_name="in0")
    for i, name in enumerate(names[1:], start=1):
        model.load_adapter(str(adapters[name]), adapter_name=f"in{i}")
    for i, name in enumerate(names):
        if getattr(model.peft_config[f"in{i}"], "use_dora", False):
            raise DeltaflowError(f"adapter '{name}' is DoRA; weighted combinations need LoRA factors")
    # DARE prunes at random: seeding makes the merge reproducible (same seed, same tensors)
    torch.manual_seed(seed)
    kwargs = {"combination_type": method}
    if method not in ("linear", "cat", "svd"):
        kwargs.update(density=density, majority_sign_method=majority_sign_method)
    if method.endswith("svd") and svd_rank:
        kwargs["svd_rank"] = svd_rank
    model.add_weighted_adapter(
        [f"in{i}" for i in range(len(names))],
        [float(weights[n]) for n in names],
        adapter_name="default",
        **kwargs,
    )
    _fix_rslora_scaling(model, "default")
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), selected_adapters=["default"])
    cfg = model.peft_config["default"]
    log.info(
        "combined %s with weights %s by %s into %s (rank %d)",
        names,
        [weights[n] for n in names],
        method,
        out_dir,
        cfg.r,
    )
    return {
        "method": method,
        "weights": {n: float(weights[n]) for n in names},
        "density": density if "density" in kwargs else None,
        "majority_sign_method": majority_sign_method if "density" in kwargs else None,
        "svd_rank": kwargs.get("svd_rank"),
        "seed": seed,
        "rank": cfg.r,
    }


def merge_full(base_dir: Path, adapter_dir: Path | None, out_dir: Path) -> dict:
    """``merge_and_unload`` the adapter into the base weights; save model + tokenizer."""
    import torch
    from peft import PeftModel

    # an adapter with new tokens: the base extended to its vocabulary, and its tokenizer
    model, tok = load_base_for_adapter(base_dir, adapter_dir, dtype=torch.float32)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tok.save_pretrained(str(out_dir))  # writes the chat template too
    return {"parameters": sum(p.numel() for p in model.parameters())}


def weight_deltas(base_dir: Path, adapter_dir: Path) -> dict:
    """Per-module merged weight delta (W_merged - W_base) of an adapter: for checks and tests."""
    from peft import PeftModel

    base = _load_base(base_dir)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    return {
        k: v - before[k]
        for k, v in merged.state_dict().items()
        if k in before and not bool((v == before[k]).all())
    }


# a merge's method -> mergekit's: PEFT's linear sums adapter deltas, which for whole models is
# task arithmetic (base + sum_i w_i (model_i - base)); slerp is mergekit's own (two models)
MERGEKIT_METHODS = {
    "linear": "task_arithmetic",
    "ties": "ties",
    "dare_ties": "dare_ties",
    "dare_linear": "dare_linear",
    "slerp": "slerp",
}


def mergekit_config(
    base_dir: Path, models: dict[str, Path], weights: dict[str, float], method: str, density
) -> dict:
    """The mergekit configuration of a merge of whole models (absolute paths: mergekit looks a
    relative one up on the hub)."""
    names = list(models)
    if method == "slerp":
        a, b = names
        return {
            "merge_method": "slerp",
            "base_model": str(Path(models[a]).resolve()),
            "models": [{"model": str(Path(models[m]).resolve())} for m in names],
            "parameters": {"t": float(weights[b])},
            "dtype": "float32",
        }
    kit = MERGEKIT_METHODS[method]
    params = {"density": float(density)} if density is not None and kit != "task_arithmetic" else {}
    return {
        "merge_method": kit,
        "base_model": str(Path(base_dir).resolve()),
        "models": [
            {"model": str(Path(models[m]).resolve()), "parameters": {**params, "weight": float(weights[m])}}
            for m in names
        ],
        # the weights as given (PEFT's combinations do not rescale them either)
        "parameters": {"normalize": False},
        "dtype": "float32",
        "tokenizer_source": "base",
    }


def merge_models(
    base_dir: Path,
    models: dict[str, Path],
    weights: dict[str, float],
    out_dir: Path,
    *,
    method: str = "linear",
    density: float | None = None,
    seed: int = 0,
) -> dict:
    """Write the mergekit merge of whole models ``models`` (by ``method``, see MERGEKIT_METHODS)
    as a model folder in ``out_dir``; a one-model linear merge is a sweep arm: base + w (model -
    base)."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    for name, path in models.items():
        if not (Path(path) / "config.json").exists():
            raise DeltaflowError(
                f"{path} is not a model folder (no config.json); rerun the job that writes '{name}'"
            )
    if method not in MERGEKIT_METHODS:
        raise DeltaflowError(
            f"merge method {method} is for adapters; whole models: {', '.join(MERGEKIT_METHODS)}"
        )
    cfg = mergekit_config(base_dir, models, weights, method, density)
    log.info("mergekit %s of %s with weights %s into %s", cfg["merge_method"], list(models), weights, out_dir)
    # random_seed: DARE prunes at random (mergekit seeds torch and transformers with it)
    options = MergeOptions(
        copy_tokenizer=True, quiet=True, random_seed=seed, write_model_card=False, device="cpu"
    )
    run_merge(MergeConfiguration.model_validate(cfg), str(out_dir), options)
    return {
        "method": method,
        "mergekit": cfg,
        "weights": {n: float(weights[n]) for n in models},
        "seed": seed,
    }
