"""objective grpo: TRL's GRPOTrainer, ``num_generations`` sampled completions per prompt scored
by the recipe's rewards (training.rewards), the group statistics recorded at every log. The
prompts, rewards, arguments and statistics here are shared with the other on-policy objective
that samples groups of completions (``rloo``): ``build_rl_trainer`` takes the TRL trainer."""

from __future__ import annotations

import functools
import json
import os

from ..errors import DeltaflowError
from ..generation import prompt_text, reference, verification_doc
from .data import _epoch_seeded
from .judge_reward import judge_rewards
from .objective import Objective
from .rewards import GroupStats, check_reward_rows, judge_specs, reward_functions, reward_name


def grpo_rows(rows: list[dict]) -> list[dict]:
    """Mixture rows -> GRPO prompts: the first user turn (conversational, TRL applies the chat
    template) and the reference answer the verifier rewards check against."""
    out = []
    for r in rows:
        text = prompt_text(r)
        if text is None:
            continue
        answer = reference(r)
        out.append(
            {
                "prompt": [{"role": "user", "content": text}],
                "answer": "" if answer is None else str(answer),
                "answer_from": "label" if r.get("label") is not None else "assistant",
                "verify": json.dumps(verification_doc(r, text)),
                "row_id": str(r.get("id")),
            }
        )
    return out


def grpo_args(recipe: dict, common: dict, config_cls) -> dict:
    """GRPOConfig's (or RLOOConfig's) keyword arguments: the common training arguments it has (an
    SFT-only one such as max_length is left out by the config's own fields, not by a list here)
    and the recipe's RL keys (``loss_type`` is GRPO's own: training.checks refuses it for rloo).
    ``rollouts: vllm`` is TRL's colocated vLLM generation (CUDA only; the config refuses it
    elsewhere), so this is where that path is checked without a GPU."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(config_cls)}
    args = {k: v for k, v in common.items() if k in fields}
    args.update(
        train_sampling_strategy="random",
        eval_strategy="no",
        num_generations=recipe["num_generations"],
        beta=recipe["kl_beta"],
        max_completion_length=recipe["max_completion_length"],
        temperature=recipe["temperature"],
        reward_weights=[s["weight"] for s in recipe["rewards"]],
    )
    if "loss_type" in fields:
        args["loss_type"] = recipe["loss_type"]
    if recipe["rollouts"] == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise DeltaflowError(
                "recipe rollouts: vllm needs the vllm package in the training environment "
                "(TRL colocates it with the trainer); install vllm there or use rollouts: hf"
            )
        args.update(
            use_vllm=True,
            vllm_mode="colocate",
            vllm_gpu_memory_utilization=recipe["vllm_gpu_memory_utilization"],
        )
    return args


def build_rl_trainer(
    model,
    tok,
    rows,
    val_rows,
    recipe,
    common,
    peft_config,
    callbacks,
    *,
    loss_cb,
    dirs=(),
    judging: dict | None = None,
    module: str,
    trainer: str,
    config: str,
    args_of=grpo_args,
    group: int | None = None,
    env: dict | None = None,
    **_,
):
    """A TRL trainer that samples ``num_generations`` completions per prompt (GRPOTrainer,
    RLOOTrainer; OnlineDPOTrainer: two, ``group``), rewards from the registry's scorers and judges
    (training.rewards, training.judge_reward: ``judging`` is what the adapter job resolved for the
    judges), the group statistics recorded at every log. ``module``.``trainer`` and its ``config``
    class are imported here (``env`` set first); ``args_of(recipe, common, config_cls)``: the
    config's keyword arguments (default grpo_args)."""
    import importlib

    from datasets import Dataset

    for k, v in (env or {}).items():
        os.environ.setdefault(k, v)
    mod = importlib.import_module(module)
    trainer_cls, config_cls = getattr(mod, trainer), getattr(mod, config)

    train_rows = grpo_rows(rows)
    if not train_rows:
        raise DeltaflowError(
            f"the mixture has no prompts (rows with a user turn) for objective {recipe['objective']}"
        )
    specs = recipe["rewards"]
    check_reward_rows(specs, train_rows, dirs)
    stats = GroupStats(
        [reward_name(i, s) for i, s in enumerate(specs)],
        [s["weight"] for s in specs],
        group or recipe["num_generations"],
        near_zero=recipe["near_zero"],
    )
    loss_cb.group_stats = stats
    judges = judge_rewards(judge_specs(specs), judging)
    args = config_cls(**args_of(recipe, common, config_cls))
    built = _epoch_seeded(trainer_cls)(
        model=model,
        reward_funcs=reward_functions(specs, dirs, stats, judges),
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        processing_class=tok,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    extra = {
        "rewards": [{**s, "name": reward_name(i, s)} for i, s in enumerate(specs)],
        "num_generations": group or recipe["num_generations"],
        "near_zero_spread": stats.near_zero,  # a group whose totals spread less is near_zero
    }
    if judges:
        extra["judges"] = {name: j.describe() for name, j in judges.items()}
    return built, train_rows, extra


def record_judges(trainer, loss_cb, extra: dict) -> None:
    """After the training: what each judge reward did over this attempt (judge_reward.COUNTS; a
    resumed run's cache_hits are the judgments its killed attempt had already made)."""
    for name, judge in loss_cb.group_stats.judges.items():
        extra["judges"][name].update(judge.counts)


def rl_objective(
    module: str,
    trainer: str,
    config: str,
    *,
    args_of=grpo_args,
    group: int | None = None,
    env: dict | None = None,
) -> Objective:
    """The Objective of a TRL trainer that samples completions and learns from the rewards
    (``module``.``trainer`` with its ``config`` class, imported when a run builds it; ``env``: set
    first): grpo, rloo and online_dpo differ only in these, so each is one line."""

    build = functools.partial(
        build_rl_trainer, module=module, trainer=trainer, config=config, args_of=args_of, group=group, env=env
    )
    # they sample completions from the model they train: non-finite logits stop the run
    return Objective(build, after_train=record_judges, samples_completions=True)


# TRL's GRPOTrainer: each completion's advantage is its reward against its group's
OBJECTIVE = rl_objective("trl", "GRPOTrainer", "GRPOConfig")
