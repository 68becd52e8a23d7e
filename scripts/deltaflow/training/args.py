"""The TrainingArguments every objective shares: precision, steps, each process's share of the
global batch, the multi-process (DDP / FSDP) settings, checkpoints, validation and logging."""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import DeltaflowError
from . import trainer_args
from .resume import resume_every


def train_precision(recipe: dict, device: str) -> str:
    """fp32 | bf16 | fp16: the recipe's precision, ``auto`` = fp32 on CPU and bf16 on CUDA."""
    precision = recipe["precision"]
    if precision == "auto":
        return "bf16" if device == "cuda" else "fp32"
    if precision == "fp16" and device != "cuda":
        raise DeltaflowError(
            "precision fp16 (mixed precision with a loss scaler) needs a CUDA GPU; "
            f"this job runs on {device}. Use auto, fp32 or bf16"
        )
    return precision


def total_steps(recipe: dict, n_examples: int) -> int:
    """Optimizer steps of a run: max_steps, or epochs x batches per epoch (as HF Trainer counts
    them: ceil(examples / batch) batches, an optimizer step every grad_accum of them)."""
    if recipe["max_steps"]:
        return recipe["max_steps"]
    batches = math.ceil(n_examples / recipe["batch_size"])
    return recipe["epochs"] * max(1, math.ceil(batches / recipe["grad_accum"]))


def per_process_batch(recipe: dict, world: int) -> int:
    """Each process's share of the recipe's (global) batch."""
    if recipe["batch_size"] % world:
        raise DeltaflowError(
            f"batch_size {recipe['batch_size']} does not split over {world} processes; "
            "make it a multiple of train.processes"
        )
    return recipe["batch_size"] // world


def _parallel_args(device: str, world: int, strategy: str) -> dict:
    """TrainingArguments for a job on ``world`` processes (training.launch)."""
    if world == 1:
        return {}
    args = {
        "ddp_backend": "gloo" if device == "cpu" else "nccl",
        # PEFT freezes the base: every trainable parameter gets a gradient each step
        "ddp_find_unused_parameters": False,
    }
    if strategy == "fsdp":  # parameters, gradients and optimizer state sharded over the GPUs
        args.update(
            fsdp="full_shard auto_wrap",
            fsdp_config={
                "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                "use_orig_params": False,
                "cpu_ram_efficient_loading": True,
                "sync_module_states": True,
            },
        )
    return args


def _training_args(
    recipe: dict,
    device: str,
    scratch: Path,
    resumable: bool,
    steps: int,
    validate: bool,
    world: int = 1,
    strategy: str = "ddp",
) -> dict:
    """TrainingArguments shared by the SFT and DPO configs. ``steps``: the run's optimizer
    steps (total_steps); ``validate``: a validation set is passed (val_rows); ``world``: the
    processes the job trains on (the batch is global: each takes its share). The recipe's
    ``trainer_args`` go on top (training.trainer_args)."""
    precision = train_precision(recipe, device)
    epochs = recipe["epochs"]
    checkpoint_every = resume_every(recipe, steps)
    eval_every = recipe["eval_every"] or recipe["logging_steps"]
    args = dict(
        **_parallel_args(device, world, strategy),
        output_dir=str(scratch),
        max_steps=-1 if epochs else recipe["max_steps"],
        num_train_epochs=epochs or 1,
        per_device_train_batch_size=per_process_batch(recipe, world),
        per_device_eval_batch_size=per_process_batch(recipe, world),
        gradient_accumulation_steps=recipe["grad_accum"],
        learning_rate=recipe["learning_rate"],
        lr_scheduler_type=recipe["lr_scheduler"],
        # with epochs, a ratio (< 1) that HF applies to the step count it computes itself
        warmup_steps=(min(recipe["warmup_ratio"], 0.9999) if epochs else int(recipe["warmup_ratio"] * steps)),
        logging_steps=recipe["logging_steps"],
        # HF's default filter drops NaN/inf step losses from the logged average (a NaN run
        # logs 0.0): the non-finite-loss stop must see them.
        logging_nan_inf_filter=False,
        max_length=recipe["max_length"],
        seed=recipe["seed"],
        data_seed=recipe["seed"],
        # TRL's bf16 + gradient checkpointing defaults are 2x slower on CPU (FACTS.md).
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        gradient_checkpointing=False,
        use_cpu=device == "cpu",
        save_strategy="steps" if resumable else "no",
        save_steps=checkpoint_every,
        # A resume needs only the newest checkpoint, but the loss is seen at logging steps
        # only: keep every checkpoint since the last one logged, so that when a non-finite
        # loss shows up the last checkpoint before it (the last good one) is still there.
        save_total_limit=1 + math.ceil(recipe["logging_steps"] / checkpoint_every),
        eval_strategy="steps" if validate else "no",
        eval_steps=eval_every,
        # early stopping compares each validation loss with the best so far (state.best_metric)
        **(
            {"metric_for_best_model": "eval_loss", "greater_is_better": False}
            if recipe.get("early_stopping")
            else {}
        ),
        report_to=[],
        # real tokens, not padding: what tokens/s and the packing comparison should count
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
        dataloader_num_workers=0,
        # Batches of similar length: on CPU the cost is padded tokens, and a mix of short
        # task rows with long replay rows otherwise pads most batches to the longest row.
        train_sampling_strategy=recipe["sampling"],
    )
    return trainer_args.apply(args, recipe)
