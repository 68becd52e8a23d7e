"""objective dpo: TRL's DPOTrainer on chosen/rejected pairs. The reference is the base model
(adapters disabled, no second copy in memory) or, with ``reference: init``, the adapter the run
starts from. The reward margin on the training pairs is measured before and after the training."""

from __future__ import annotations

import logging

from ..errors import DeltaflowError
from .objective import Objective

log = logging.getLogger(__package__)  # one logger for the package: "deltaflow.training"


def preference_rows(rows: list[dict]) -> list[dict]:
    """Mixture preference rows -> TRL's conversational prompt / chosen / rejected."""
    out = []
    for r in rows:
        if not (r.get("chosen") and r.get("rejected") and r.get("messages")):
            continue
        out.append(
            {
                "prompt": r["messages"],
                "chosen": [{"role": "assistant", "content": r["chosen"]}],
                "rejected": [{"role": "assistant", "content": r["rejected"]}],
            }
        )
    return out


def _margin(trainer, dataset, loss_cb) -> dict:
    """TRL's own implicit-reward statistics on ``dataset`` (chosen vs rejected)."""
    loss_cb.record_eval = False  # not a validation loss
    try:
        m = trainer.evaluate(eval_dataset=dataset)
    finally:
        loss_cb.record_eval = True
    return {
        k.removeprefix("eval_"): round(float(v), 6)
        for k, v in m.items()
        if k.startswith("eval_rewards/") or k == "eval_loss"
    }


def _full_reference(recipe: dict, init_dir, base_dir, device: str):
    """``method: full``: the reference model TRL needs beside the trained one. None lets TRL copy
    the model as it starts (the base, or with ``reference: init`` the run continued); a run that
    continues another full model with ``reference: base`` gets the base itself."""
    if init_dir is None or recipe["reference"] == "init":
        return None
    from .model import load_base_for_training

    return load_base_for_training(base_dir, recipe, device)  # extended to the vocabulary below


def build_trainer(
    model, tok, rows, val_rows, recipe, common, peft_config, callbacks, *, init_dir, base_dir=None, **_
):
    """TRL's DPOTrainer on chosen/rejected pairs, the reference being the base (adapters
    disabled, or a copy for a full fine-tune) or, with ``reference: init``, the model the run
    continues."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    train_rows = preference_rows(rows)
    if not train_rows:
        raise DeltaflowError(
            "the mixture has no chosen/rejected pairs to train DPO on (use a `kind: preference` mixture)"
        )
    # HF's group_by_length sampler reads `input_ids`, which DPO's pair rows do not have
    args = DPOConfig(**{**common, "train_sampling_strategy": "random"}, beta=recipe["beta"])
    val = preference_rows(val_rows)
    full = recipe["method"] == "full"
    ref = (
        _full_reference(recipe, init_dir, base_dir, "cpu" if common["use_cpu"] else "cuda") if full else None
    )
    if ref is not None:  # the run it continues may have added tokens: the base embeds every id
        from ..vocab import extend_embeddings

        extend_embeddings(ref, len(tok))
    trainer = DPOTrainer(
        model=model,
        ref_model=ref,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(val) if val else None,
        processing_class=tok,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    # Continuing an adapter, TRL keeps a frozen copy of it ("ref") as the reference. The
    # default anchors to the base instead: without the "ref" adapter TRL computes the
    # reference log-probs with adapters disabled, i.e. from the base model.
    if init_dir is not None and recipe["reference"] == "base" and not full:
        trainer.model.delete_adapter("ref")
    return (
        trainer,
        train_rows,
        {"reference": "init" if init_dir is not None and recipe["reference"] == "init" else "base"},
    )


def before_train(trainer, loss_cb, extra: dict) -> None:
    """The implicit-reward statistics on the training pairs before any step."""
    extra["preference_before"] = _margin(trainer, trainer.train_dataset, loss_cb)


def after_train(trainer, loss_cb, extra: dict) -> None:
    """The same statistics after training, and the margin's change in the log."""
    extra["preference_after"] = _margin(trainer, trainer.train_dataset, loss_cb)
    log.info(
        "reward margin on the training pairs: %.4f -> %.4f",
        extra["preference_before"].get("rewards/margins", float("nan")),
        extra["preference_after"].get("rewards/margins", float("nan")),
    )


OBJECTIVE = Objective(build_trainer, before_train=before_train, after_train=after_train)
