"""``train_adapter``: a PEFT adapter trained on a mixture's rows with the TRL trainer of the
recipe's objective (``OBJECTIVES``), saved with its checkpoint arms, and the run's metrics."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

from ..errors import DeltaflowError
from ..tracking import tracker_callback, training_setup
from ..vocab import expose_token_rows_to_fused_head
from . import cpt, dpo, grpo, online_dpo, rloo, sft
from .args import _training_args, total_steps, train_precision
from .callbacks import (
    _checkpoint_callback,
    _loss_callback,
    early_stopping_callbacks,
    peak_memory_mb,
    rl_summary,
)
from .data import _examples_used, split_validation
from .model import _prepare_model
from .objective import Objective
from .resume import _drop_checkpoints_after, prepare_resume_dir
from .world import world_size

log = logging.getLogger(__package__)  # one logger for the package: "deltaflow.training"

# recipe objective -> its module's Objective (the trainer builder and its hooks)
OBJECTIVES: dict[str, Objective] = {
    "sft": sft.OBJECTIVE,
    "dpo": dpo.OBJECTIVE,
    "cpt": cpt.OBJECTIVE,
    "grpo": grpo.OBJECTIVE,
    "rloo": rloo.OBJECTIVE,
    "online_dpo": online_dpo.OBJECTIVE,
}

# what torch.multinomial raises when the logits it samples from are inf/NaN
_NONFINITE_SAMPLING = "probability tensor contains either `inf`, `nan` or element < 0"


def _train(trainer, samples_completions: bool, scratch: Path, resume_step: int | None):
    """trainer.train, resumed from ``checkpoint-<resume_step>`` when given. A trainer that
    samples completions (GRPO) samples before it computes a loss: weights that overflowed at
    step N show first as non-finite logits while the completions of step N+1 are sampled, not as
    a non-finite loss. That is stopped like a non-finite loss (a clear error; checkpoints from
    step N on removed, as their weights are the broken ones) instead of torch's bare
    RuntimeError and a resume from broken weights."""
    try:
        return trainer.train(
            resume_from_checkpoint=str(scratch / f"checkpoint-{resume_step}") if resume_step else None
        )
    except RuntimeError as err:
        if not samples_completions or _NONFINITE_SAMPLING not in str(err):
            raise
        step = trainer.state.global_step
        good = max(0, step - 1)
        dropped = (
            _drop_checkpoints_after(scratch, good)
            if trainer.is_world_process_zero()
            else "by the main process"
        )
        raise DeltaflowError(
            f"non-finite model outputs while sampling the completions of step {step + 1}: the weights "
            f"after step {step} overflowed (inf/NaN logits); the run stops here. Checkpoints saved after "
            f"step {good} were removed ({dropped or 'none'}). Lower the learning rate (a changed recipe "
            "starts over) or check the rewards"
        ) from err


def _best_by_val_loss(arms: list[dict], eval_curve: list[dict], final_step: int) -> dict | None:
    """The saved adapter (arm tag, or "final") whose step has the lowest validation loss."""
    at = {c["step"]: c["eval_loss"] for c in eval_curve}
    cands = [(at[a["step"]], a["step"], a["tag"]) for a in arms if a["step"] in at]
    if final_step in at:
        cands.append((at[final_step], final_step, "final"))
    if not cands:
        return None
    loss, step, tag = min(cands)
    return {"tag": tag, "step": step, "val_loss": loss}


def _collect_arms(arms_dir: Path, out_dir: Path | None) -> list[dict]:
    """The checkpoint arms saved during training (save_every), copied under the adapter
    (``out_dir``; None: only listed, on processes other than the main one)."""
    saved = sorted(
        (
            {**json.loads((d / "arm.json").read_text()), "tag": d.name}
            for d in arms_dir.glob("*")
            if (d / "arm.json").exists()
        ),
        key=lambda a: a["step"],
    )
    for arm in saved if out_dir is not None else []:
        shutil.copytree(arms_dir / arm["tag"], out_dir / "checkpoints" / arm["tag"])
    return saved


def _scratch(out_dir: Path, resume_dir: Path | None, resume_key: str) -> tuple[Path, int | None]:
    """The trainer's checkpoint folder and the step to resume from (None: from the start)."""
    # TRL's checkpoints (adapter, optimizer, scheduler, RNG states, data position) go to a
    # folder beside the adapter, outside its atomic temporary folder: a killed job's next
    # attempt resumes from the last one (HF Trainer restores the RNG and skips the batches
    # already seen, so the data order is the same). The caller removes it once the adapter
    # is in place.
    scratch = resume_dir or out_dir / "_trainer"
    resume_step = prepare_resume_dir(scratch, resume_key) if resume_dir else None
    return scratch, resume_step


def _split_validation(
    rows: list[dict], recipe: dict, given: list[dict] | None
) -> tuple[list[dict], list[dict]]:
    """The recipe's validation rows: a separate set (``given``: val_dataset's), or held-out
    rows of the mixture (val_rows): (train, validation), logged."""
    if given:
        log.info("validation: %d rows of val_dataset %s", len(given), recipe["val_dataset"]["dataset"])
        return rows, given
    rows, val_rows = split_validation(rows, recipe["val_rows"], recipe["seed"])
    if val_rows:
        log.info(
            "validation: %d held-out rows (every copy left out of the %d training rows)",
            len(val_rows),
            len(rows),
        )
    return rows, val_rows


def _fit(trainer, objective: Objective, scratch: Path, resume_step, val_rows, eval_curve) -> tuple:
    """The training, resumed from ``resume_step`` when given, then the validation loss of the
    adapter that is saved: (TRL's train output, seconds the training took)."""
    train_start = time.time()
    if resume_step:
        log.info("resuming from step %d (%s)", resume_step, scratch)
    result = _train(trainer, objective.samples_completions, scratch, resume_step)
    train_s = time.time() - train_start
    if val_rows and (not eval_curve or eval_curve[-1]["step"] != trainer.state.global_step):
        # the loss of the adapter actually saved (the last eval_every may fall before the end)
        trainer.evaluate()
    return result, train_s


def _save(
    trainer, save_adapter, out_dir: Path, scratch: Path, resume_dir: Path | None, best=None
) -> list[dict]:
    """The adapter and its checkpoint arms written to ``out_dir`` by the main process, the
    trainer's scratch folder removed unless it is the resume folder: the arms saved. With early
    stopping (``best``: its KeepBest callback), the adapter kept at the lowest validation loss."""
    main = trainer.is_world_process_zero()
    if main and best is not None and best.best is not None and best.best[0] != trainer.state.global_step:
        log.info("early stopping: the saved adapter is step %d's (lowest validation loss)", best.best[0])
        for f in (scratch / "best").iterdir():
            shutil.copy2(f, out_dir / f.name)
    elif main:
        save_adapter(trainer.model, out_dir, selected_adapters=["default"])
    saved = _collect_arms(scratch / "arms", out_dir if main else None)
    if resume_dir is None and main:
        shutil.rmtree(scratch, ignore_errors=True)
    return saved


def _progress_metrics(
    trainer, result, curve: list, loss_cb, train_s: float, wall0: float, device: str
) -> dict:
    """What the training did and took: steps, losses, tokens and tokens/s (of this attempt),
    times, peak memory, trainable parameters."""
    tokens = int(trainer.state.num_input_tokens_seen)
    tokens_this_attempt = tokens - int(loss_cb.start_tokens)
    return {
        "steps": int(trainer.state.global_step),
        "train_loss": float(result.training_loss),
        "final_loss": curve[-1]["loss"] if curve else None,
        "loss_curve": curve,
        "tokens_seen": tokens,
        "tokens_per_s": round(tokens_this_attempt / train_s, 2) if train_s > 0 else None,
        "train_s": round(train_s, 2),
        "wall_s": round(time.time() - wall0, 2),
        "peak_memory_mb": round(peak_memory_mb(device), 1),
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
    }


def _setup_metrics(recipe: dict, device: str, strategy: str, resume_step: int | None, new_ids: list) -> dict:
    """How the run was set up: device, processes, strategy, the step it resumed from, the PEFT
    method and the new tokens' ids."""
    return {
        "device": device,
        "processes": world_size(),
        "strategy": strategy if world_size() > 1 else None,
        "resumed_from_step": resume_step,
        "peft": {
            "method": recipe["method"],
            "use_rslora": recipe["use_rslora"],
            "load_in_4bit": recipe["load_in_4bit"],
        }
        if recipe["method"] != "full"
        else None,
        "method": recipe["method"],
        "new_tokens": dict(zip(recipe["new_tokens"] or [], new_ids)),
    }


def _checkpoint_metrics(trainer, recipe: dict, device: str, saved, curve, eval_curve, val_rows) -> dict:
    """The checkpoint arms with the losses at their steps, the epochs and precision, the
    validation curve and the saved adapter with the lowest validation loss."""
    return {
        "checkpoints": [
            {
                **arm,
                "path": f"checkpoints/{arm['tag']}",
                "loss": next((c["loss"] for c in reversed(curve) if c["step"] <= arm["step"]), None),
                "val_loss": next((c["eval_loss"] for c in eval_curve if c["step"] == arm["step"]), None),
            }
            for arm in saved
        ],
        "epochs": round(float(trainer.state.epoch or 0), 4),
        "precision": train_precision(recipe, device),
        "eval_curve": eval_curve,
        "val_rows": len(val_rows),
        "val_loss": eval_curve[-1]["eval_loss"] if eval_curve else None,
        # the "selected" adapter: the one saved (a checkpoint arm or the final one)
        # with the lowest validation loss; the tables' selection decides on benchmarks
        "best_by_val_loss": _best_by_val_loss(saved, eval_curve, int(trainer.state.global_step)),
    }


def train_adapter(
    base_dir: Path,
    rows: list[dict],
    recipe: dict,
    out_dir: Path,
    *,
    device: str = "cpu",
    chat_template_path: str | None = None,
    init_dir: Path | None = None,
    resume_dir: Path | None = None,
    resume_key: str = "",
    strategy: str = "ddp",
    benchmark_dirs: tuple = (),
    val_rows: list[dict] | None = None,
    judging: dict | None = None,
    tracking: dict | None = None,
) -> dict:
    """Train a PEFT adapter on a mixture's rows and save it to ``out_dir``.

    Run under torchrun (training.launch), every process calls this: the batch is split over
    them (``strategy`` ddp or fsdp) and the main process writes the adapter.

    ``recipe`` is a validated config's recipe (defaults filled: config.schema_defaults); its
    ``objective`` picks the trainer from ``OBJECTIVES`` (sft, dpo, cpt, grpo: one module each,
    its docstring says what it trains on). ``init_dir``: continue that adapter (``init_from``).
    ``val_rows``: the recipe's ``val_dataset`` rows (None: held-out ``val_rows``, if any).
    ``judging``: its judge rewards' models and cache (judge_reward.judge_rewards). ``tracking``:
    {settings, run, key, hashes} for an experiment tracker (deltaflow.tracking). Returns the
    metrics (loss curve, tokens seen, tokens/s, peak memory, wall time, ...).
    """
    wall0 = time.time()
    tok, model, peft_config, new_ids, save_adapter = _prepare_model(base_dir, recipe, device, init_dir)
    scratch, resume_step = _scratch(out_dir, resume_dir, resume_key)
    rows, val_rows = _split_validation(rows, recipe, val_rows)
    common, tracked, tracker_cb = _args_and_tracking(
        recipe, device, scratch, resume_dir, rows, val_rows, strategy, tracking
    )
    curve: list = []
    eval_curve: list = []
    loss_cb = _loss_callback(curve, eval_curve)
    callbacks, best = _callbacks(recipe, scratch, save_adapter, loss_cb)
    callbacks += [tracker_cb] if tracker_cb else []
    objective = OBJECTIVES[recipe["objective"]]
    trainer, train_rows, extra = objective.build_trainer(
        model,
        tok,
        rows,
        val_rows,
        recipe,
        common,
        peft_config,
        callbacks,
        chat_template_path=chat_template_path,
        init_dir=init_dir,
        base_dir=base_dir,
        loss_cb=loss_cb,
        dirs=benchmark_dirs,
        judging=judging,
    )
    _check_sharded(trainer, strategy)
    expose_token_rows_to_fused_head(trainer.model)  # a no-op without new-token rows
    objective.before_train(trainer, loss_cb, extra)
    used = _rows_used(trainer, train_rows, recipe)
    result, train_s = _fit(trainer, objective, scratch, resume_step, val_rows, eval_curve)
    objective.after_train(trainer, loss_cb, extra)
    saved = _save(trainer, save_adapter, out_dir, scratch, resume_dir, best)
    return {
        "objective": recipe["objective"],
        "init_from": str(init_dir) if init_dir else None,
        **_progress_metrics(trainer, result, curve, loss_cb, train_s, wall0, device),
        **_setup_metrics(recipe, device, strategy, resume_step, new_ids),
        **_checkpoint_metrics(trainer, recipe, device, saved, curve, eval_curve, val_rows),
        **used,
        **rl_summary(curve),
        **_stopping_metrics(best),
        **({"tracking": tracked} if tracked else {}),
        **extra,
    }


def _check_sharded(trainer, strategy: str) -> None:
    """train.strategy fsdp on several processes: accelerate must have turned FSDP on. Where it
    cannot (a CPU: accelerate then sets up plain multi-CPU DDP, every process holding the whole
    model), the setting would be dropped without a word; it is refused instead."""
    if strategy != "fsdp" or world_size() == 1 or trainer.is_fsdp_enabled:
        return
    raise DeltaflowError(
        f"train.strategy: fsdp, but accelerate set up {trainer.accelerator.distributed_type} (FSDP "
        "needs GPUs): the model would be copied whole to every process instead of sharded; "
        "use strategy: ddp here, or train on CUDA GPUs"
    )


def _args_and_tracking(recipe, device, scratch, resume_dir, rows, val_rows, strategy, tracking) -> tuple:
    """(the TrainingArguments every objective shares, metrics.json's tracker record, the tracker
    config callback). The tracker is set up on the main process only: the integrations log
    from it, and other ranks would open duplicate tracker runs."""
    common = _training_args(
        recipe,
        device,
        scratch,
        resumable=resume_dir is not None,
        steps=total_steps(recipe, len(rows)),
        validate=bool(val_rows),
        world=world_size(),
        strategy=strategy,
    )
    if not tracking or int(os.environ.get("RANK", "0")) != 0:
        return common, None, None
    args, record = training_setup(tracking["settings"], tracking["run"], tracking["key"], tracking["hashes"])
    return {**common, **args}, record, tracker_callback(record, tracking["hashes"])


def _rows_used(trainer, train_rows: list[dict], recipe: dict) -> dict:
    """The rows the trainer was given and the examples TRL kept of them (data._examples_used)."""
    used = _examples_used(trainer, train_rows, recipe)
    return {
        "train_rows": len(train_rows),
        "train_examples_used": used,
        "train_examples_dropped_no_target_tokens": len(train_rows) - used,
    }


def _callbacks(recipe: dict, scratch: Path, save_adapter, loss_cb) -> tuple[list, object]:
    """The trainer's callbacks: the loss curve, the checkpoint arms and, with early stopping,
    the best-adapter keeper (also returned: None without early stopping) and the stopper."""
    callbacks = [loss_cb, _checkpoint_callback(scratch / "arms", recipe["save_every"], save_adapter)]
    if not recipe.get("early_stopping"):
        return callbacks, None
    keep, stopper = early_stopping_callbacks(recipe.get("early_stopping"), scratch / "best", save_adapter)
    return [*callbacks, keep, stopper], keep


def _stopping_metrics(best) -> dict:
    """With early stopping: whether and where it stopped, and the best step, whose adapter was
    saved (its validation loss is then the saved adapter's val_loss)."""
    if best is None:
        return {}
    out = {"early_stopping": dict(best.summary)}
    if best.best is not None:
        out["val_loss"] = best.best[1]
    return out
