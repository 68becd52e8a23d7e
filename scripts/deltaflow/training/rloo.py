"""objective rloo: TRL's RLOOTrainer (REINFORCE Leave-One-Out), TRL's on-policy method beside
GRPO now that TRL 1.x ships no PPO. The same prompts, rewards, group statistics and rollouts as
``grpo`` (training.grpo.build_rl_trainer); each completion's baseline is the mean reward of the
other completions of its prompt."""

from __future__ import annotations

from .grpo import rl_objective

OBJECTIVE = rl_objective("trl", "RLOOTrainer", "RLOOConfig")
