"""objective online_dpo: TRL's OnlineDPOTrainer, experimental in TRL 1.16
(``trl.experimental.online_dpo``; its API may change in a TRL release). For each prompt it samples
two completions from the model being trained, the recipe's rewards rank them (the higher is
chosen), and the DPO loss (``beta``) pulls toward the chosen one against the reference (the base:
adapters disabled). The prompts, rewards and group statistics (groups of two) are grpo's
(``grpo.build_rl_trainer``); TRL 1.x takes rewards as functions, not as a judge object."""

from __future__ import annotations

import dataclasses
import os

from .grpo import build_rl_trainer
from .objective import Objective


def online_dpo_args(recipe: dict, common: dict, config_cls) -> dict:
    """OnlineDPOConfig's keyword arguments: the common ones it has, and the recipe's DPO beta,
    completion length, sampling temperature and reward weights."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    args = {k: v for k, v in common.items() if k in fields}
    args.update(
        train_sampling_strategy="random",
        eval_strategy="no",
        beta=[recipe["beta"]],
        max_new_tokens=recipe["max_completion_length"],
        temperature=recipe["temperature"],
        reward_weights=[s["weight"] for s in recipe["rewards"]],
    )
    return args


def build_trainer(
    model, tok, rows, val_rows, recipe, common, peft_config, callbacks, *, loss_cb, dirs=(), **_
):
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # said once, in the docs and here
    from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer

    return build_rl_trainer(
        OnlineDPOTrainer,
        OnlineDPOConfig,
        model,
        tok,
        rows,
        recipe,
        common,
        peft_config,
        callbacks,
        loss_cb,
        dirs,
        args_of=online_dpo_args,
        group=2,
    )


# online DPO samples its completions from the model it trains
OBJECTIVE = Objective(build_trainer, samples_completions=True)
