"""objective sft: TRL's SFTTrainer on the rows' chat ``messages``, the loss on the assistant
turns (the patched chat template)."""

from __future__ import annotations

from pathlib import Path

from ..chat_template import training_template
from ..errors import DeltaflowError
from .data import _epoch_seeded
from .objective import Objective


def build_trainer(
    model, tok, rows, val_rows, recipe, common, peft_config, callbacks, *, chat_template_path, **_
):
    """TRL's SFTTrainer on the rows' chat ``messages`` (assistant-only loss via the patched template)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    if recipe["assistant_only_loss"]:
        override = Path(chat_template_path).read_text() if chat_template_path else None
        tok.chat_template = training_template(tok, override)
    train_rows = [{"messages": r["messages"]} for r in rows if r.get("messages")]
    if not train_rows:
        raise DeltaflowError("the mixture has no chat rows to train on")
    val = [{"messages": r["messages"]} for r in val_rows if r.get("messages")]
    # packing: false, true (TRL's default strategy) or a TRL strategy name (bfd, bfd_split, wrapped)
    packing = recipe["packing"]
    strategy = {"packing_strategy": packing} if isinstance(packing, str) else {}
    args = SFTConfig(
        **common, assistant_only_loss=recipe["assistant_only_loss"], packing=bool(packing), **strategy
    )
    trainer = _epoch_seeded(SFTTrainer)(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(val) if val else None,
        processing_class=tok,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    return trainer, train_rows, {}


OBJECTIVE = Objective(build_trainer)
