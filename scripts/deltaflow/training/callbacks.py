"""The trainer callbacks: the loss curve (validation losses, TRL's RL log keys, GRPO's group
statistics, the stop on a non-finite loss) and the checkpoint arms; the metrics they feed (the
RL block of metrics.json, peak memory)."""

from __future__ import annotations

import json
import logging
import math
import resource
import time
from pathlib import Path

from ..errors import DeltaflowError
from ..progress import meter, report
from .resume import _drop_checkpoints_after

log = logging.getLogger(__package__)  # one logger for the package: "deltaflow.training"


def peak_memory_mb(device: str) -> float:
    if device == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


RL_LOG_KEYS = (
    "reward",
    "rewards/",
    "kl",
    "completions/mean_length",
    "frac_reward_zero_std",
    "entropy",
    "objective/",  # online DPO's (objective/scores: the mean reward)
)


def _report_step(state, loss: float, start_step: int, start_time: float) -> None:
    """'step 5/100 loss 1.4795 [00:10<03:10, 0.50 steps/s]': the rate over this attempt's steps
    (a resumed run's later ones)."""
    done, todo = state.global_step - start_step, state.max_steps - start_step
    report(
        f"step {state.global_step}/{state.max_steps} loss {loss:.4f} {meter(done, todo, time.time() - start_time, 'steps')}",
        last=state.global_step >= state.max_steps,
    )


def _loss_callback(curve: list, eval_curve: list):
    from transformers import TrainerCallback

    class LossCurve(TrainerCallback):
        """Collect logged losses; stop with a clear error on a non-finite loss."""

        start_time = time.time()
        start_tokens = 0  # tokens seen before this attempt (restored from a checkpoint when resuming)
        record_eval = True  # off while DPO's margin is measured on the training pairs
        group_stats = None  # GRPO: rewards.GroupStats, read at every logging step

        start_step = 0

        def on_train_begin(self, args, state, control, **kw):
            self.start_time = time.time()
            self.start_tokens = state.num_input_tokens_seen
            self.start_step = state.global_step

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "eval_loss" in logs and self.record_eval:
                if eval_curve and eval_curve[-1]["step"] == state.global_step:
                    eval_curve.pop()  # an epoch arm at an eval_every step: evaluated twice, same weights
                eval_curve.append({"step": state.global_step, "eval_loss": float(logs["eval_loss"])})
                log.info(
                    "step %d/%d validation loss %.4f", state.global_step, state.max_steps, logs["eval_loss"]
                )
            if not logs or "loss" not in logs:
                return
            loss = float(logs["loss"])
            curve.append(
                {
                    "step": state.global_step,
                    "loss": loss,
                    "learning_rate": logs.get("learning_rate"),
                    "tokens_seen": state.num_input_tokens_seen,
                    "elapsed_s": round(time.time() - self.start_time, 3),
                }
            )
            # GRPO: TRL's reward per function, KL, completion length; our group statistics
            rl = {
                k: float(v)
                for k, v in logs.items()
                if k.startswith(RL_LOG_KEYS) and isinstance(v, (int, float))
            }
            if rl:
                curve[-1]["rl"] = rl
            if self.group_stats is not None:
                curve[-1]["groups"] = self.group_stats.take()
                curve[-1]["near_zero_groups"] = self.group_stats.take_near_zero()
                curve[-1]["reward_hacking"] = self.group_stats.take_hacked()
                if judged := self.group_stats.take_judged():
                    curve[-1]["judged"] = judged
                if curve[-1]["reward_hacking"]:
                    log.warning(
                        "step %d: %d completions gamed a code reward's tests (ended the run before "
                        "the tests finished, or compared an always-equal value); they scored 0",
                        state.global_step,
                        curve[-1]["reward_hacking"],
                    )
            _report_step(state, loss, self.start_step, self.start_time)
            if not math.isfinite(loss):
                good = max((c["step"] for c in curve if math.isfinite(c["loss"])), default=0)
                dropped = (
                    _drop_checkpoints_after(Path(args.output_dir), good)
                    if state.is_world_process_zero
                    else "by the main process"
                )
                raise DeltaflowError(
                    f"non-finite training loss {loss} at step {state.global_step} (the last finite "
                    f"loss was logged at step {good}); the run stops here. Checkpoints saved after "
                    f"step {good} were removed ({dropped or 'none'}); the last good one stays in "
                    f"{args.output_dir}. Lower the learning rate (a changed recipe starts over) or "
                    "check the data"
                )

    return LossCurve()


def _checkpoint_callback(arms_dir: Path, every: int | str | None, save_adapter):
    """Save the adapter every ``every`` steps to ``arms_dir/step<N>``, or after each epoch but
    the last to ``arms_dir/epoch<N>`` with ``every == "epoch"`` (eval arms).

    Only the adapter weights are written (what evaluation needs), not optimizer state, plus
    ``arm.json`` with the step and epoch. ``arms_dir`` lives in the resume folder, so arms
    saved before a kill survive the resume.
    """
    from transformers import TrainerCallback

    def save(model, state, tag):
        if not state.is_world_process_zero:  # one writer when training on several processes
            return
        save_adapter(model, arms_dir / tag)
        (arms_dir / tag / "arm.json").write_text(
            json.dumps({"step": state.global_step, "epoch": round(float(state.epoch or 0), 4)})
        )
        log.info("saved checkpoint %s (step %d)", tag, state.global_step)

    class SaveAdapter(TrainerCallback):
        # With a validation set, every arm also gets its validation loss (HF evaluates right
        # after these callbacks when control.should_evaluate is set).
        def on_step_end(self, args, state, control, model=None, **kw):
            step = state.global_step
            if isinstance(every, int) and step % every == 0 and step < state.max_steps:
                save(model, state, f"step{step}")
                control.should_evaluate = args.eval_strategy != "no"
            return control

        def on_epoch_end(self, args, state, control, model=None, **kw):
            epoch = round(float(state.epoch or 0))
            if every == "epoch" and epoch < args.num_train_epochs:
                save(model, state, f"epoch{epoch}")
                control.should_evaluate = args.eval_strategy != "no"
            return control

    return SaveAdapter()


def rl_summary(curve: list[dict]) -> dict:
    """metrics.json's RL block: the reward curve per reward function, KL and completion length
    per logging step, and the group statistics summed over the run: the four kinds of group
    (``groups``) and, beside them since they overlap those, the near-zero ones."""
    rl = [c for c in curve if "rl" in c]
    if not rl:
        return {}
    groups: dict = {}
    for c in curve:
        for k, v in (c.get("groups") or {}).items():
            if k != "mixed_share":
                groups[k] = groups.get(k, 0) + v
    total = sum(groups.values())
    near = sum(c.get("near_zero_groups", 0) for c in curve)
    key = "reward" if "reward" in rl[0]["rl"] else "objective/scores"  # grpo/rloo's, online DPO's
    first, last = rl[0]["rl"].get(key), rl[-1]["rl"].get(key)
    return {
        "reward_curve": [
            {
                "step": c["step"],
                **c["rl"],
                **({"reward_hacking": c["reward_hacking"]} if "reward_hacking" in c else {}),
                **({"near_zero_groups": c["near_zero_groups"]} if "near_zero_groups" in c else {}),
                **({"judged": c["judged"]} if "judged" in c else {}),
            }
            for c in rl
        ],
        "reward_first": first,
        "reward_last": last,
        "reward_hacking": sum(c.get("reward_hacking", 0) for c in curve),
        "groups": {**groups, "mixed_share": round(groups.get("mixed", 0) / total, 4) if total else None},
        "near_zero_groups": {"groups": near, "share": round(near / total, 4) if total else None},
    }


def early_stopping_callbacks(spec: dict, best_dir: Path, save_adapter) -> list:
    """transformers' EarlyStoppingCallback on the validation loss, and a callback that keeps the
    adapter at each new best validation loss in ``best_dir`` (what the run saves at the end)
    and records, as ``.summary``, the best step and where and why the run stopped."""
    from transformers import EarlyStoppingCallback, TrainerCallback

    stopper = EarlyStoppingCallback(
        early_stopping_patience=spec["patience"], early_stopping_threshold=spec["min_delta"]
    )

    class KeepBest(TrainerCallback):
        def __init__(self):
            self.summary = {**spec, "stopped_early": False, "stopped_at_step": None, "reason": None}
            self.best: tuple[int, float] | None = None  # (step, validation loss)

        def on_evaluate(self, args, state, control, metrics=None, model=None, **kw):
            loss = (metrics or {}).get("eval_loss")
            if loss is None:
                return
            if self.best is None or loss < self.best[1] - spec["min_delta"]:
                self.best = (state.global_step, float(loss))
                if state.is_world_process_zero:
                    save_adapter(model, best_dir, selected_adapters=["default"])
            self.summary.update(best_step=self.best[0], best_val_loss=self.best[1])

        def on_train_end(self, args, state, control, **kw):
            if state.global_step < state.max_steps and self.best is not None:
                self.summary.update(
                    stopped_early=True,
                    stopped_at_step=state.global_step,
                    reason=(
                        f"the validation loss did not improve by more than {spec['min_delta']} for "
                        f"{spec['patience']} validation(s) in a row after step {self.best[0]}"
                    ),
                )

    # KeepBest first: it sees each validation before the stopper decides
    return [KeepBest(), stopper]
