"""``recipes.<r>.trainer_args``: any setting of the recipe objective's TRL config (``SFTConfig``,
``DPOConfig``, ``GRPOConfig``; CPT trains with ``SFTConfig``) without a deltaflow key of its own,
e.g. ``max_grad_norm``, ``weight_decay``, ``adam_beta2``, ``lr_scheduler_kwargs``,
``neftune_noise_alpha``.

Checked before any job against the config dataclass's own fields and their type hints (so a
TRL upgrade that adds a field needs no change here); a field deltaflow sets itself is refused
with the key that sets it. The values join the TrainingArguments last (``apply``), and, being
recipe keys, the recipe's params, hash and manifest.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import importlib
import types
import typing

CONFIG_CLASS = {
    "sft": "SFTConfig",
    "cpt": "SFTConfig",
    "dpo": "DPOConfig",
    "grpo": "GRPOConfig",
    "rloo": "RLOOConfig",
    "online_dpo": "trl.experimental.online_dpo.OnlineDPOConfig",  # experimental in TRL 1.16
}

_PRECISION = "recipes.<r>.precision"
_STRATEGY = "train.strategy"
_CHECKPOINTS = "recipes.<r>.save_every / resume_every"
_VALIDATION = "recipes.<r>.val_rows / eval_every"
# TRL/transformers fields that deltaflow sets from its own keys (training.args and the objective
# modules), each with the key to use instead
OWNED = {
    "output_dir": "none: deltaflow writes results/adapters/<run>/",
    "overwrite_output_dir": "none: deltaflow writes results/adapters/<run>/",
    "seed": "recipes.<r>.seed",
    "data_seed": "recipes.<r>.seed",
    "max_steps": "recipes.<r>.max_steps",
    "num_train_epochs": "recipes.<r>.epochs",
    "per_device_train_batch_size": "recipes.<r>.batch_size (global; split over train.processes)",
    "per_device_eval_batch_size": "recipes.<r>.batch_size",
    "gradient_accumulation_steps": "recipes.<r>.grad_accum",
    "learning_rate": "recipes.<r>.learning_rate",
    "lr_scheduler_type": "recipes.<r>.lr_scheduler",
    "warmup_ratio": "recipes.<r>.warmup_ratio",
    "logging_steps": "recipes.<r>.logging_steps",
    "logging_strategy": "recipes.<r>.logging_steps",
    "logging_nan_inf_filter": "none: the non-finite-loss stop needs every step's loss",
    "max_length": "recipes.<r>.max_length",
    "bf16": _PRECISION,
    "fp16": _PRECISION,
    "bf16_full_eval": _PRECISION,
    "fp16_full_eval": _PRECISION,
    "use_cpu": "train.device",
    "save_strategy": _CHECKPOINTS,
    "save_steps": _CHECKPOINTS,
    "save_total_limit": _CHECKPOINTS,
    "save_only_model": _CHECKPOINTS,
    "load_best_model_at_end": "recipes.<r>.early_stopping (which keeps the best adapter)",
    "metric_for_best_model": "recipes.<r>.early_stopping (on the validation loss)",
    "greater_is_better": "recipes.<r>.early_stopping (on the validation loss)",
    "eval_strategy": _VALIDATION,
    "eval_steps": _VALIDATION,
    "report_to": "tracking.backend (trackio, mlflow or wandb, beside metrics.json's curves)",
    "run_name": "none: the run's name is its key under runs: (the tracker's run is <run>-<key>)",
    "project": "tracking.project",
    "disable_tqdm": "none: the job log records the loss at logging_steps",
    "include_num_input_tokens_seen": "none: tokens/s counts real tokens",
    "train_sampling_strategy": "recipes.<r>.sampling",
    "ddp_backend": _STRATEGY,
    "ddp_find_unused_parameters": _STRATEGY,
    "fsdp": _STRATEGY,
    "fsdp_config": _STRATEGY,
    "deepspeed": _STRATEGY,
    "resume_from_checkpoint": "recipes.<r>.resume_every (a killed job resumes by itself)",
    "push_to_hub": "none: releases go through release:",
    "hub_model_id": "none: releases go through release:",
    # the objectives' own keys
    "packing": "recipes.<r>.packing",
    "assistant_only_loss": "recipes.<r>.assistant_only_loss",
    "completion_only_loss": "recipes.<r>.assistant_only_loss",
    "dataset_text_field": "none: deltaflow builds the training rows",
    "packing_strategy": "recipes.<r>.packing (false, true, or TRL's strategy: bfd, bfd_split, wrapped)",
    "beta": "recipes.<r>.beta (dpo) or kl_beta (grpo, rloo)",
    "num_generations": "recipes.<r>.num_generations",
    "loss_type": "recipes.<r>.loss_type",
    "max_completion_length": "recipes.<r>.max_completion_length",
    "max_new_tokens": "recipes.<r>.max_completion_length",
    "temperature": "recipes.<r>.temperature",
    "reward_weights": "recipes.<r>.rewards[].weight",
    "use_vllm": "recipes.<r>.rollouts",
    "vllm_mode": "recipes.<r>.rollouts",
    "vllm_gpu_memory_utilization": "recipes.<r>.vllm_gpu_memory_utilization",
}

# schedulers whose required arguments come through lr_scheduler_kwargs: any one of the names
SCHEDULER_KWARGS = {
    "cosine_with_min_lr": ("min_lr", "min_lr_rate"),
    "cosine_warmup_with_min_lr": ("min_lr", "min_lr_rate"),
    "warmup_stable_decay": ("num_decay_steps",),
}


@functools.cache
def config_fields(objective: str) -> dict[str, object]:
    """The TRL config dataclass's fields and their resolved type hints. Imports TRL (seconds):
    called only for a recipe that has trainer_args."""
    module, _, name = CONFIG_CLASS[objective].rpartition(".")
    cls = getattr(importlib.import_module(module or "trl"), name)
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, typing.Any) for f in dataclasses.fields(cls) if f.init}


def fits(value, hint) -> bool:
    """Whether a YAML value fits a dataclass field's type hint. Hints this does not know
    (a callable, a class of its own) accept any value: the config class's own checks run when the
    job builds it."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any or hint is object:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return value in {m.value for m in hint} or isinstance(value, hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple) or hint in (list, tuple):
        item = args[0] if args else typing.Any  # list[X], tuple[X, ...]
        return isinstance(value, list) and all(fits(v, item) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True


def _show(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def check(rname: str, recipe: dict):
    """Config errors of one recipe's ``trainer_args``: owned fields, unknown names (with close
    matches), values of the wrong type, and a warmup given twice."""
    given = recipe.get("trainer_args") or {}
    if not given:
        return
    objective = recipe["objective"]
    cls = CONFIG_CLASS[objective].rpartition(".")[2]
    fields = config_fields(objective)
    for name, value in given.items():
        key = f"config key 'recipes.{rname}.trainer_args.{name}'"
        if name in OWNED:
            use = OWNED[name].replace("<r>", rname)
            yield (
                f"{key}: deltaflow sets {name} itself; "
                + (f"use {use}" if not use.startswith("none") else f"it cannot be set ({use[6:]})")
            )
        elif name not in fields:
            close = difflib.get_close_matches(name, list(fields), n=3)
            yield (
                f"{key}: {cls} (objective {objective}) has no field '{name}'"
                + (f"; did you mean {', '.join(close)}?" if close else "")
            )
        elif not fits(value, fields[name]):
            yield f"{key}: {value!r} is not a {_show(fields[name])} ({cls}.{name})"
    if "warmup_steps" in given and recipe["warmup_ratio"]:
        yield (
            f"config key 'recipes.{rname}.trainer_args.warmup_steps': the recipe also sets "
            f"warmup_ratio {recipe['warmup_ratio']}; give one of them"
        )


def scheduler_kwargs_missing(recipe: dict) -> tuple[str, ...]:
    """The argument names the recipe's scheduler needs (any one of them) when its
    ``trainer_args.lr_scheduler_kwargs`` gives none; () when nothing is missing."""
    needs = SCHEDULER_KWARGS.get(recipe["lr_scheduler"], ())
    given = (recipe.get("trainer_args") or {}).get("lr_scheduler_kwargs") or {}
    return () if not needs or any(n in given for n in needs) else needs


def apply(args: dict, recipe: dict) -> dict:
    """The TrainingArguments ``args`` with the recipe's trainer_args on top (checked: none of
    them is a field deltaflow sets)."""
    return {**args, **(recipe.get("trainer_args") or {})}
