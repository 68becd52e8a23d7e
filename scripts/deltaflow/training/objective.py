"""What the runner needs from a training objective: each objective module (sft, dpo, cpt, grpo,
rloo, online_dpo) holds one ``Objective`` as ``OBJECTIVE``, and ``runner.OBJECTIVES`` maps the recipe's
``objective`` to it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# the objectives that sample completions per prompt and learn from their rewards: they read a
# row's prompt and reference answer only (rewards and rollouts apply; num_generations to grpo, rloo)
RL_OBJECTIVES = ("grpo", "rloo", "online_dpo")


def _nothing(trainer, loss_cb, extra: dict) -> None:
    """A hook with nothing to do."""


@dataclass(frozen=True)
class Objective:
    """``build_trainer(model, tok, rows, val_rows, recipe, common, peft_config, callbacks, *,
    chat_template_path, init_dir, loss_cb, dirs)`` returns ``(trainer, train_rows, extra)``:
    the TRL trainer, the rows it trains on and the objective's own metrics (``extra``, last in
    metrics.json); it takes the keywords it needs and ``**_``.

    ``before_train(trainer, loss_cb, extra)`` runs once the trainer is built, before any step;
    ``after_train(trainer, loss_cb, extra)`` after the training and its last validation; both
    add to ``extra``. ``samples_completions``: the trainer samples from the model it trains (RL),
    so non-finite logits while sampling stop the run as a non-finite loss does."""

    build_trainer: Callable
    before_train: Callable = _nothing
    after_train: Callable = _nothing
    samples_completions: bool = False
