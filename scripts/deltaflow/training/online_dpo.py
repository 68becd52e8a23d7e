"""objective online_dpo: TRL's OnlineDPOTrainer, experimental in TRL 1.16
(``trl.experimental.online_dpo``; its API may change in a TRL release). For each prompt it samples
two completions from the model being trained, the recipe's rewards rank them (the higher is
chosen), and the DPO loss (``beta``) pulls toward the chosen one against the reference (the base:
adapters disabled). The prompts, rewards and group statistics (groups of two) are grpo's
(``grpo.build_rl_trainer``); TRL 1.x takes rewards as functions, not as a judge object."""

from __future__ import annotations

import dataclasses

from .grpo import rl_objective


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


# "experimental" is said once, in the docs and here: silence TRL's warning about it
OBJECTIVE = rl_objective(
    "trl.experimental.online_dpo",
    "OnlineDPOTrainer",
    "OnlineDPOConfig",
    args_of=online_dpo_args,
    group=2,
    env={"TRL_EXPERIMENTAL_SILENCE": "1"},
)
