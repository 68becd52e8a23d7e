"""objective cpt: continued pretraining, TRL's SFTTrainer on raw ``text`` (the loss on every
token), packed into max_length sequences."""

from __future__ import annotations

from ..errors import DeltaflowError
from .objective import Objective


def build_trainer(model, tok, rows, val_rows, recipe, common, peft_config, callbacks, **_):
    """Continued pretraining: TRL's SFTTrainer in language-modeling form (a ``text`` field: the
    loss on every token), rows packed into max_length sequences. Replay rows with chat
    ``messages`` are rendered to text with the tokenizer's chat template."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    def text_of(row):
        if row.get("text"):
            return row["text"]
        return tok.apply_chat_template(row["messages"], tokenize=False) if row.get("messages") else ""

    train_rows = [{"text": t} for t in map(text_of, rows) if t.strip()]
    if not train_rows:
        raise DeltaflowError("the mixture has no text to continue pretraining on")
    val = [{"text": t} for t in map(text_of, val_rows) if t.strip()]
    # packed sequences have no per-row lengths to group by
    # bfd_split (unless the recipe names a strategy): a document longer than max_length continues
    # in the next sequences (chunked), where TRL's default bfd would cut it off and drop the rest
    args = SFTConfig(
        **{**common, "train_sampling_strategy": "random"},
        packing=True,
        packing_strategy=recipe["packing"] if isinstance(recipe["packing"], str) else "bfd_split",
        dataset_text_field="text",
        assistant_only_loss=False,
        completion_only_loss=False,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(val) if val else None,
        processing_class=tok,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    return (
        trainer,
        train_rows,
        {
            "text_rows": sum(1 for r in rows if r.get("text")),
            "replay_rows_as_text": sum(1 for r in rows if not r.get("text") and r.get("messages")),
        },
    )


OBJECTIVE = Objective(build_trainer)
