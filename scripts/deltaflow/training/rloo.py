"""objective rloo: TRL's RLOOTrainer (REINFORCE Leave-One-Out), TRL's on-policy method beside
GRPO now that TRL 1.x ships no PPO. The same prompts, rewards, group statistics and rollouts as
``grpo`` (training.grpo.build_rl_trainer); each completion's baseline is the mean reward of the
other completions of its prompt."""

from __future__ import annotations

from .grpo import build_rl_trainer
from .objective import Objective


def build_trainer(
    model, tok, rows, val_rows, recipe, common, peft_config, callbacks, *, loss_cb, dirs=(), **_
):
    from trl import RLOOConfig, RLOOTrainer

    return build_rl_trainer(
        RLOOTrainer, RLOOConfig, model, tok, rows, recipe, common, peft_config, callbacks, loss_cb, dirs
    )


# RLOO samples completions from the model it trains: non-finite logits stop the run
OBJECTIVE = Objective(build_trainer, samples_completions=True)
