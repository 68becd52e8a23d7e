"""Recipe -> PEFT/transformers settings (the training itself runs in the e2e tests)."""

import pytest
from conftest import save_tiny_llama

from deltaflow.config import schema_defaults
from deltaflow.errors import DeltaflowError
from deltaflow.training.args import _training_args, total_steps, train_precision
from deltaflow.training.data import split_validation
from deltaflow.training.model import load_base_for_training, peft_config_for
from deltaflow.training.runner import _best_by_val_loss


def recipe_of(**keys) -> dict:
    """A recipe as the validated config holds it: the schema's defaults filled in."""
    return schema_defaults("recipe", keys)


RECIPE = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"}


def test_lora_dora_rslora_configs():
    lora = peft_config_for(recipe_of(**RECIPE, method="lora"))
    assert not lora.use_dora and not lora.use_rslora and lora.target_modules == "all-linear"
    dora = peft_config_for(recipe_of(**RECIPE, method="dora", use_rslora=True))
    assert dora.use_dora and dora.use_rslora and dora.r == 4 and dora.lora_alpha == 8


def test_qlora_on_cpu_is_refused_before_loading_anything(tmp_path):
    # tmp_path holds no model: the error must come before any load is attempted
    with pytest.raises(DeltaflowError, match=r"QLoRA \(load_in_4bit\) needs a CUDA GPU.*train.device: cuda"):
        load_base_for_training(tmp_path, recipe_of(**RECIPE, load_in_4bit=True), "cpu")


def test_precision_auto_is_fp32_on_cpu_and_bf16_on_cuda(tmp_path):
    assert train_precision(recipe_of(), "cpu") == "fp32" and train_precision(recipe_of(), "cuda") == "bf16"
    assert train_precision(recipe_of(precision="bf16"), "cpu") == "bf16"
    with pytest.raises(DeltaflowError, match="fp16.*needs a CUDA GPU"):
        train_precision(recipe_of(precision="fp16"), "cpu")
    recipe = {
        "max_steps": 10,
        "epochs": None,
        "batch_size": 2,
        "grad_accum": 1,
        "learning_rate": 1e-3,
        "lr_scheduler": "linear",
        "warmup_ratio": 0.1,
        "logging_steps": 2,
        "max_length": 32,
        "seed": 0,
        "sampling": "random",
    }
    recipe = recipe_of(**recipe)
    cpu = _training_args({**recipe, "precision": "bf16"}, "cpu", tmp_path, False, 10, False)
    assert cpu["bf16"] and not cpu["fp16"] and cpu["use_cpu"] and cpu["warmup_steps"] == 1
    gpu = _training_args({**recipe, "precision": "fp16"}, "cuda", tmp_path, True, 10, True)
    assert gpu["fp16"] and not gpu["bf16"] and gpu["eval_strategy"] == "steps" and gpu["eval_steps"] == 2
    by_epoch = _training_args({**recipe, "max_steps": None, "epochs": 3}, "cpu", tmp_path, True, 30, False)
    assert by_epoch["max_steps"] == -1 and by_epoch["num_train_epochs"] == 3
    assert by_epoch["warmup_steps"] == 0.1 and by_epoch["save_steps"] == 6  # a ratio HF applies; 30 // 5


def test_total_steps_counts_epochs_like_hf():
    r = {"max_steps": None, "epochs": 2, "batch_size": 4, "grad_accum": 2}
    assert total_steps(r, 20) == 2 * 3  # ceil(20 / 4) = 5 batches -> ceil(5 / 2) = 3 steps per epoch
    assert total_steps({**r, "max_steps": 7, "epochs": None}, 20) == 7


def test_validation_holds_out_every_copy_of_a_row():
    rows = [{"id": f"r{i % 10}", "messages": []} for i in range(30)]  # 10 rows, 3 copies each
    train, val = split_validation(rows, 3, seed=0)
    held = {r["id"] for r in val}
    assert len(val) == 3 and len(held) == 3 and not held & {r["id"] for r in train}
    assert len(train) == 21
    assert split_validation(rows, 3, seed=0) == (train, val)  # seeded
    assert split_validation(rows, 0, seed=0) == (rows, [])
    with pytest.raises(DeltaflowError, match="val_rows 10 leaves no training rows.*10 distinct"):
        split_validation(rows, 10, seed=0)


def test_loss_plot_draws_train_validation_and_arms(tmp_path):
    from deltaflow.plots import loss_curves

    m = {
        "loss_curve": [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}],
        "eval_curve": [{"step": 2, "eval_loss": 1.7}],
        "checkpoints": [{"step": 1, "loss": 2.0, "val_loss": None}],
    }
    titles = loss_curves(
        {"run (sft)": m, "other (dpo)": {"loss_curve": [{"step": 1, "loss": 0.6}]}}, tmp_path / "l.png"
    )
    assert (tmp_path / "l.png").stat().st_size > 1000 and len(titles) == 1
    # a GRPO run adds the reward panel (reward per step, mixed-group share)
    rl = {
        "loss_curve": [{"step": 1, "loss": 0.0, "groups": {"mixed_share": 0.5}}],
        "reward_curve": [{"step": 1, "reward": 0.25}, {"step": 2, "reward": 0.75}],
    }
    titles = loss_curves({"run (sft)": m, "rl (grpo)": rl}, tmp_path / "r.png")
    assert titles[1].startswith("GRPO: mean reward") and (tmp_path / "r.png").stat().st_size > 1000


def test_best_checkpoint_by_validation_loss():
    arms = [{"tag": "epoch1", "step": 5}, {"tag": "epoch2", "step": 10}]
    curve = [
        {"step": 2, "eval_loss": 3.0},
        {"step": 5, "eval_loss": 2.0},
        {"step": 10, "eval_loss": 1.5},
        {"step": 15, "eval_loss": 1.7},
    ]
    assert _best_by_val_loss(arms, curve, 15) == {"tag": "epoch2", "step": 10, "val_loss": 1.5}
    assert _best_by_val_loss(arms, curve[:3] + [{"step": 15, "eval_loss": 1.0}], 15)["tag"] == "final"
    assert _best_by_val_loss(arms, [], 15) is None


def test_bf16_recipe_trains_on_cpu_with_fp32_adapter_weights(tmp_path):
    """precision: bf16 is allowed on CPU (slower there): the base loads in bf16, HF autocasts,
    and PEFT keeps the adapter's own weights in fp32."""
    from safetensors.torch import load_file

    from deltaflow.bench.synthetic_tasks import generate_task
    from deltaflow.training.runner import train_adapter

    save_tiny_llama(tmp_path / "base")
    rows = [
        r
        for r in generate_task("arithmetic", train_rows=24, eval_rows=0, seed=0, name="a")
        if r["split"] == "train"
    ]
    recipe = recipe_of(
        **RECIPE,
        learning_rate=1e-3,
        lr_scheduler="linear",
        warmup_ratio=0.0,
        max_steps=3,
        epochs=None,
        batch_size=4,
        grad_accum=1,
        max_length=64,
        sampling="random",
        assistant_only_loss=True,
        seed=0,
        logging_steps=1,
        precision="bf16",
    )
    m = train_adapter(tmp_path / "base", rows, recipe, tmp_path / "adapter", device="cpu")
    assert m["precision"] == "bf16" and m["steps"] == 3 and all(c["loss"] > 0 for c in m["loss_curve"])
    weights = load_file(tmp_path / "adapter/adapter_model.safetensors")
    assert weights and {str(v.dtype) for v in weights.values()} == {"torch.float32"}


class _Killed(Exception):
    pass


def _killed_after_checkpoint(monkeypatch, step: int, train) -> None:
    """Run ``train()`` and stop it (the "kill") right after its step-``step`` checkpoint is written."""
    from deltaflow.training import runner

    plain = runner._loss_callback

    def stopping(curve, eval_curve):
        cb = plain(curve, eval_curve)

        def on_save(args, state, control, **kw):
            if state.global_step >= step:
                raise _Killed

        cb.on_save = on_save
        return cb

    monkeypatch.setattr(runner, "_loss_callback", stopping)
    with pytest.raises(_Killed):
        train()
    monkeypatch.setattr(runner, "_loss_callback", plain)


@pytest.mark.parametrize("sampling", ["group_by_length", "random"])
def test_resume_inside_a_later_epoch_repeats_the_uninterrupted_losses(tmp_path, monkeypatch, sampling):
    """70 rows in batches of 4 are 18 steps an epoch: a run stopped after its step-20 checkpoint
    (in the second epoch) and resumed logs, step for step, the losses of a run never stopped.
    (Length-grouped batches drew the second epoch's order from torch's global RNG, which a resume
    restores to the checkpoint's step, not to the epoch's start: the orders differed.)"""

    from deltaflow.bench.synthetic_tasks import generate_task
    from deltaflow.training import runner

    save_tiny_llama(tmp_path / "base")
    rows = [
        r
        for r in generate_task("arithmetic", train_rows=70, eval_rows=0, seed=0, name="a")
        if r["split"] == "train"
    ]
    recipe = recipe_of(
        **RECIPE,
        learning_rate=1e-3,
        max_steps=30,
        batch_size=4,
        max_length=64,
        sampling=sampling,
        logging_steps=1,
        resume_every=4,
        seed=0,
    )

    def train(name: str, resume: str):
        return runner.train_adapter(
            tmp_path / "base", rows, recipe, tmp_path / name, resume_dir=tmp_path / resume, resume_key="k"
        )

    clean = train("clean", "r0")
    _killed_after_checkpoint(monkeypatch, 20, lambda: train("killed", "r1"))
    resumed = train("resumed", "r1")
    assert resumed["resumed_from_step"] == 20 and clean["resumed_from_step"] is None
    expected = {c["step"]: c["loss"] for c in clean["loss_curve"] if c["step"] > 20}
    assert {c["step"]: c["loss"] for c in resumed["loss_curve"]} == pytest.approx(
        expected, rel=1e-5, abs=1e-6
    )


def test_continued_pretraining_lowers_the_held_out_loss_on_the_domain_text(tmp_path):
    """objective cpt: the loss on every token of raw text, packed; replay chat rows join as text.
    Real domain text (C4 rows from the llamafactory sdist); the held-out rows' loss falls."""
    import json

    from deltaflow import sources
    from deltaflow.training.runner import train_adapter

    save_tiny_llama(tmp_path / "base")
    c4 = sources.resolve_file(
        {"type": "sdist_file", "sdist": "llamafactory==0.9.5", "path": "data/c4_demo.jsonl"}
    )
    texts = [json.loads(line)["text"][:400] for line in c4.read_text().splitlines()[:40]]
    rows = [{"id": f"c4-{i}", "text": t, "messages": []} for i, t in enumerate(texts)]
    rows.append(
        {
            "id": "replay-0",
            "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
        }
    )
    recipe = recipe_of(
        **RECIPE,
        objective="cpt",
        learning_rate=5e-3,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        max_steps=12,
        epochs=None,
        batch_size=4,
        grad_accum=1,
        max_length=64,
        seed=0,
        logging_steps=2,
        val_rows=4,
        eval_every=4,
    )
    m = train_adapter(tmp_path / "base", rows, recipe, tmp_path / "adapter", device="cpu")
    assert m["objective"] == "cpt" and m["steps"] == 12 and m["replay_rows_as_text"] == 1
    losses = [c["eval_loss"] for c in m["eval_curve"]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    # packed (TRL's best-fit packing): sequences nearly full to max_length, not one short row each
    assert m["train_rows"] == 37 and 0.8 * 12 * 4 * 64 < m["tokens_seen"] <= 12 * 4 * 64


def _sharpened_tiny_base(tmp_path):
    """The tiny random model with sharpened output logits: random init gives near-uniform
    next-token logits, and a LoRA on the layers could not move the choice."""
    import torch
    from conftest import tiny_random_model
    from transformers import AutoModelForCausalLM

    base = tiny_random_model(tmp_path / "base")
    model = AutoModelForCausalLM.from_pretrained(base)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(8.0)
    model.save_pretrained(base)
    return base


@pytest.mark.parametrize("objective", ["grpo", "rloo"])
def test_grpo_raises_a_learnable_reward_and_logs_its_groups(tmp_path, objective):
    """objective grpo (and rloo, TRL's RLOOTrainer on the same prompts and rewards) on the tiny
    model: a format reward (the completion holds an "e") starts at 0 and reaches 1; metrics.json
    has the reward curve per function, and the group statistics move from all-zero groups
    (nothing to learn) through mixed ones to all-max ones."""
    from deltaflow.training.runner import train_adapter

    base = _sharpened_tiny_base(tmp_path)
    rows = [
        {
            "id": f"p{i}",
            "messages": [
                {"role": "user", "content": f"Say something about {w}."},
                {"role": "assistant", "content": "x"},
            ],
        }
        for i, w in enumerate(["cats", "dogs", "rain", "tea", "boats", "maps", "ink", "salt"])
    ]
    recipe = recipe_of(
        **RECIPE,
        objective=objective,
        learning_rate=0.05,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        max_steps=30,
        batch_size=16,
        num_generations=8,
        max_completion_length=2,
        max_length=64,
        seed=0,
        logging_steps=2,
        rewards=[{"format": "e", "name": "has_e"}],
    )
    m = train_adapter(base, rows, recipe, tmp_path / "adapter", device="cpu")
    curve = m["reward_curve"]
    assert m["objective"] == objective and len(curve) == 15 and "rewards/has_e/mean" in curve[0]
    assert m["reward_first"] == 0.0 and m["reward_last"] >= 0.9
    assert m["groups"]["all_zero"] > 0 and m["groups"]["mixed"] > 0 and m["groups"]["all_max"] > 0
    assert sum(v for k, v in m["groups"].items() if k != "mixed_share") == 30 * 16 // 8


def test_online_dpo_learns_the_rewards_preference_between_two_samples(tmp_path):
    """objective online_dpo (TRL's experimental OnlineDPOTrainer) on the prompts and format
    reward of the grpo test: two completions per prompt ranked by the reward, a DPO loss toward
    the better; the reward rises, the group statistics count pairs, TRL's own pair margins are
    in the curve."""
    from deltaflow.training.runner import train_adapter

    base = _sharpened_tiny_base(tmp_path)
    _, rows, _ = _grpo_setup(tmp_path / "unused")
    recipe = recipe_of(
        **RECIPE,
        objective="online_dpo",
        learning_rate=0.05,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        max_steps=20,
        batch_size=8,
        max_completion_length=2,
        max_length=64,
        seed=0,
        logging_steps=2,
        beta=0.1,
        rewards=[{"format": "e", "name": "has_e"}],
    )
    m = train_adapter(base, rows, recipe, tmp_path / "adapter", device="cpu")
    curve = m["reward_curve"]
    assert m["objective"] == "online_dpo" and m["num_generations"] == 2 and len(curve) == 10
    assert "rewards/margins" in curve[0] and "objective/scores" in curve[0]
    assert m["reward_last"] > m["reward_first"], [c["objective/scores"] for c in curve]
    # a batch is 8 prompts (two completions each): 8 pairs a step
    assert sum(v for k, v in m["groups"].items() if k != "mixed_share") == 20 * 8


def test_online_dpo_refuses_grpos_own_keys(tiny_cfg):
    from conftest import config_errors

    tiny_cfg["recipes"]["tiny_lora"].update(
        objective="online_dpo", num_generations=6, kl_beta=0.2, rewards=[{"format": "e"}]
    )
    tiny_cfg["runs"]["run_a"]["mixture"] = "mix_b"
    text = config_errors(tiny_cfg)
    assert "recipes.tiny_lora.num_generations': online DPO samples two completions" in text
    assert "recipes.tiny_lora.kl_beta': online DPO's pull toward the reference is DPO's `beta`" in text


def _grpo_setup(tmp_path, **keys):
    from conftest import tiny_random_model

    base = tiny_random_model(tmp_path / "base")
    rows = [
        {
            "id": f"p{i}",
            "messages": [
                {"role": "user", "content": f"Say something about {w}."},
                {"role": "assistant", "content": "x"},
            ],
        }
        for i, w in enumerate(["cats", "dogs", "rain", "tea", "boats", "maps", "ink", "salt"])
    ]
    recipe = recipe_of(
        **{
            **RECIPE,
            "objective": "grpo",
            "learning_rate": 0.05,
            "lr_scheduler": "constant",
            "warmup_ratio": 0.0,
            "max_steps": 10,
            "batch_size": 8,
            "num_generations": 4,
            "max_completion_length": 4,
            "max_length": 64,
            "seed": 0,
            "logging_steps": 1,
            "rewards": [{"format": "e", "name": "has_e"}],
            **keys,
        }
    )
    return base, rows, recipe


def test_grpo_resumed_after_a_kill_repeats_the_uninterrupted_rewards(tmp_path, monkeypatch):
    """GRPO samples its completions from torch's RNG: a run stopped after its step-6 checkpoint
    and resumed samples, scores and steps exactly as a run never stopped (HF restores the RNG).
    Step 6 is in the second epoch (8 prompts, 2 a step): the resumed run takes that epoch's
    prompts in the uninterrupted run's order (TRL's RepeatSampler draws a new order each epoch
    from its own generator, which a new trainer starts again; training.data reseeds it)."""
    from deltaflow.training import grpo, runner

    base, rows, recipe = _grpo_setup(tmp_path, resume_every=3)
    prompts: list[list[str]] = []  # the prompts of each reward call (one a step), in order
    plain_rewards = grpo.reward_functions

    def spying(*args, **kwargs):
        funcs = plain_rewards(*args, **kwargs)
        first = funcs[0]

        def spy(completions, **kw):
            prompts.append([str(p) for p in kw["prompts"]])
            return first(completions, **kw)

        spy.__name__ = first.__name__
        return [spy, *funcs[1:]]

    monkeypatch.setattr(grpo, "reward_functions", spying)

    def train(name: str, resume: str):
        prompts.clear()
        out = runner.train_adapter(
            base, rows, recipe, tmp_path / name, resume_dir=tmp_path / resume, resume_key="k"
        )
        return out, list(prompts)

    clean, clean_prompts = train("clean", "r0")
    _killed_after_checkpoint(monkeypatch, 6, lambda: train("killed", "r1"))
    resumed, resumed_prompts = train("resumed", "r1")
    assert resumed["resumed_from_step"] == 6 and resumed["steps"] == clean["steps"] == 10
    assert len(clean_prompts) == 10 and resumed_prompts == clean_prompts[6:]
    assert clean_prompts[4:8] != clean_prompts[:4]  # the second epoch's order is not the first's
    after = [c for c in clean["loss_curve"] if c["step"] > 6]
    assert [c["step"] for c in resumed["loss_curve"]] == [7, 8, 9, 10]
    for mine, ref in zip(resumed["loss_curve"], after):
        assert mine["loss"] == pytest.approx(ref["loss"], rel=1e-5, abs=1e-7)
        assert mine["rl"]["rewards/has_e/mean"] == ref["rl"]["rewards/has_e/mean"]
        assert mine["groups"] == ref["groups"]
    # the rewards moved over the run (the comparison is not of constant curves)
    assert len({c["rl"]["rewards/has_e/mean"] for c in clean["loss_curve"]}) > 1


def test_grpo_weights_that_overflow_stop_the_run_with_the_reason(tmp_path):
    """A learning rate this high overflows the weights in one step: the next step's sampling
    meets inf/NaN logits (before any loss is non-finite). The run stops with the reason, and the
    checkpoint holding the broken weights is removed so a rerun never resumes from it."""
    from deltaflow.training.runner import train_adapter

    base, rows, recipe = _grpo_setup(tmp_path, learning_rate=1.0e38, resume_every=1)
    with pytest.raises(
        DeltaflowError,
        match=r"non-finite model outputs while sampling the completions of step 2: "
        r"the weights after step 1 overflowed.*\['checkpoint-1'\].*Lower the "
        "learning rate",
    ):
        train_adapter(base, rows, recipe, tmp_path / "adapter", resume_dir=tmp_path / "r", resume_key="k")
    assert not list((tmp_path / "r").glob("checkpoint-*")) and not (tmp_path / "adapter").exists()


def test_grpo_vllm_rollouts_map_to_trls_colocated_vllm_seam_without_a_gpu(monkeypatch):
    """rollouts: vllm is TRL's colocated vLLM generation, a CUDA-only path that cannot run here:
    the GRPOConfig arguments it gives are checked (with vllm's presence faked), the missing
    package is a clear error, and rollouts: hf leaves TRL's generation as it is."""
    import importlib.util

    from trl import GRPOConfig

    from deltaflow.training.grpo import grpo_args

    recipe = recipe_of(
        **RECIPE, objective="grpo", max_steps=2, batch_size=4, num_generations=2, rewards=[{"format": "e"}]
    )
    common = {"output_dir": "/tmp/x", "max_steps": 2, "max_length": 64, "per_device_train_batch_size": 4}
    hf = grpo_args(recipe, common, GRPOConfig)
    assert "max_length" not in hf and "use_vllm" not in hf and hf["num_generations"] == 2
    vllm = {**recipe, "rollouts": "vllm"}
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(
            DeltaflowError, match="rollouts: vllm needs the vllm package in the training environment"
        ):
            grpo_args(vllm, common, GRPOConfig)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real_find_spec(name, *a)
    )
    args = grpo_args(vllm, common, GRPOConfig)
    assert (
        args["use_vllm"] is True
        and args["vllm_mode"] == "colocate"
        and args["vllm_gpu_memory_utilization"] == 0.3
    )
    assert {k: v for k, v in args.items() if not k.startswith(("use_vllm", "vllm_"))} == hf


def test_grpo_vllm_rollouts_on_cpu_are_a_config_error(tiny_cfg):
    from conftest import config_errors

    tiny_cfg["recipes"]["tiny_lora"]["rollouts"] = "vllm"
    assert (
        "config key 'recipes.tiny_lora.rollouts': vllm samples GRPO's or RLOO's completions through TRL's "
        "colocated vLLM, which needs objective grpo or rloo and a CUDA GPU"
    ) in config_errors(tiny_cfg)


def test_grpo_with_code_and_instruction_rewards_reads_each_prompt_rows_checks(tmp_path):
    """Code tests and instruction checkers as GRPO rewards through TRL: each completion is
    checked with its own prompt row's tests (run in the sandbox) and instructions. The tests
    here can never pass (assert False) and the instruction always holds (at most 10,000 words),
    so the two reward curves are 0 and 1 at every step whatever the tiny model writes."""
    from deltaflow.training.runner import train_adapter

    base, rows, recipe = _grpo_setup(
        tmp_path,
        max_steps=2,
        rewards=[
            {"verifier": {"benchmark": "mbpp"}, "name": "tests"},
            {"verifier": {"benchmark": "ifbench"}, "name": "words", "weight": 0.5},
        ],
    )
    for r in rows:
        r.update(
            tests="assert False",
            instructions=[{"id": "count:word_count_range", "kwargs": {"min_words": 0, "max_words": 10000}}],
        )
    m = train_adapter(base, rows, recipe, tmp_path / "adapter", device="cpu")
    assert [c["rl"]["rewards/tests/mean"] for c in m["loss_curve"]] == [0.0, 0.0]
    assert [c["rl"]["rewards/words/mean"] for c in m["loss_curve"]] == [1.0, 1.0]
    assert m["groups"]["uniform"] == 2 * 8 // 4  # every group: 0.5 of a possible 1.5


def test_early_stopping_stops_on_the_validation_loss_and_keeps_the_best_adapter(tmp_path):
    """early_stopping with a min_delta no decrease can reach: the first validation (step 2) stays
    the best, the run stops after `patience` more validations (step 6 of 20), metrics.json says
    so, and the saved adapter is step 2's (the same as a 2-step run's, on a constant schedule)."""
    import torch
    from safetensors.torch import load_file

    from deltaflow.bench.synthetic_tasks import generate_task
    from deltaflow.training.runner import train_adapter

    save_tiny_llama(tmp_path / "base")
    rows = [r for r in generate_task("arithmetic", train_rows=24, eval_rows=0, seed=0, name="a")]
    keys = dict(
        **RECIPE,
        learning_rate=1e-2,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        batch_size=4,
        max_length=64,
        seed=0,
        logging_steps=2,
        val_rows=4,
        eval_every=2,
    )
    stopping = {"patience": 2, "min_delta": 10.0}
    m = train_adapter(
        tmp_path / "base",
        rows,
        recipe_of(**keys, max_steps=20, early_stopping=stopping),
        tmp_path / "stopped",
        device="cpu",
    )
    es = m["early_stopping"]
    assert m["steps"] == 6 and es["stopped_early"] and es["stopped_at_step"] == 6 and es["best_step"] == 2
    assert "did not improve by more than 10.0 for 2 validation(s) in a row after step 2" in es["reason"]
    assert [c["step"] for c in m["eval_curve"]] == [2, 4, 6] and m["val_loss"] == m["eval_curve"][0][
        "eval_loss"
    ]
    short = train_adapter(
        tmp_path / "base", rows, recipe_of(**keys, max_steps=2), tmp_path / "two", device="cpu"
    )
    assert short["steps"] == 2 and "early_stopping" not in short
    kept, two = (load_file(tmp_path / d / "adapter_model.safetensors") for d in ("stopped", "two"))
    assert kept.keys() == two.keys() and all(torch.equal(kept[k], two[k]) for k in kept)


@pytest.mark.parametrize(
    ("val", "extra", "message"),
    [
        ({"dataset": "arithmetic", "split": "eval"}, {"val_rows": 4}, "give one of the two"),
        ({"dataset": "nope"}, {}, "val_dataset.dataset': unknown dataset 'nope'"),
        ({"dataset": "arithmetic", "split": "test"}, {}, "has splits ['train', 'eval'], not 'test'"),
    ],
)
def test_val_dataset_is_checked_before_any_job(tiny_cfg, val, extra, message):
    from conftest import config_errors

    tiny_cfg["recipes"]["tiny_lora"].update(val_dataset=val, **extra)
    assert message in config_errors(tiny_cfg)


def test_a_val_dataset_is_the_validation_set_and_early_stopping_reads_it(tmp_path, tiny_cfg):
    """The rows given as val_dataset are validated on (all training rows kept); a recipe with
    val_dataset and early stopping is a valid config."""
    from deltaflow.bench.synthetic_tasks import generate_task
    from deltaflow.config import validate_config
    from deltaflow.training.runner import train_adapter

    tiny_cfg["recipes"]["tiny_lora"].update(
        val_dataset={"dataset": "arithmetic", "split": "eval"},
        eval_every=2,
        early_stopping={"patience": 1, "min_delta": 0.0},
    )
    validate_config(tiny_cfg)
    save_tiny_llama(tmp_path / "base")
    rows = generate_task("arithmetic", train_rows=12, eval_rows=4, seed=0, name="a")
    train = [r for r in rows if r["split"] == "train"]
    val = [r for r in rows if r["split"] == "eval"]
    recipe = recipe_of(
        **RECIPE, max_steps=4, batch_size=4, max_length=64, eval_every=2, val_dataset={"dataset": "a"}
    )
    m = train_adapter(tmp_path / "base", train, recipe, tmp_path / "out", device="cpu", val_rows=val)
    assert m["val_rows"] == 4 and m["train_rows"] == 12 and [c["step"] for c in m["eval_curve"]] == [2, 4]


@pytest.mark.parametrize("packing", [True, "bfd", "bfd_split", "wrapped"])
def test_packing_takes_trls_strategy_names(tmp_path, packing):
    from deltaflow.training.sft import build_trainer

    save_tiny_llama(tmp_path / "base")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    recipe = recipe_of(**RECIPE, max_steps=1, batch_size=2, max_length=32, packing=packing)
    common = _training_args(
        recipe, "cpu", tmp_path / "out", resumable=False, steps=1, validate=False, world=1
    )
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}] * 4
    trainer, _, _ = build_trainer(
        AutoModelForCausalLM.from_pretrained(tmp_path / "base"),
        AutoTokenizer.from_pretrained(tmp_path / "base"),
        rows,
        [],
        recipe,
        common,
        None,
        [],
        chat_template_path=None,
    )
    assert trainer.args.packing is True
    assert trainer.args.packing_strategy == (packing if isinstance(packing, str) else "bfd")


def test_packing_is_refused_for_objectives_that_do_not_pack(tiny_cfg):
    from conftest import config_errors

    tiny_cfg["recipes"]["tiny_dpo"]["packing"] = "wrapped"
    assert "recipes.tiny_dpo.packing': packing is TRL's SFT option" in config_errors(tiny_cfg)


@pytest.mark.parametrize(
    ("recipe", "val", "message"),
    [
        ("tiny_lora", {"dataset": "arithmetic"}, "has splits ['train', 'eval']; name the validation one"),
        (
            "tiny_lora",
            {"dataset": "dpo"},
            "objective sft validates on chat rows; 'dpo' holds sharegpt_preference rows",
        ),
        (
            "tiny_dpo",
            {"dataset": "alpaca"},
            "objective dpo validates on chosen/rejected pairs; 'alpaca' has none",
        ),
    ],
)
def test_val_dataset_must_fit_the_objective(tiny_cfg, recipe, val, message):
    from conftest import config_errors

    tiny_cfg["recipes"][recipe]["val_dataset"] = val
    assert message in config_errors(tiny_cfg)
