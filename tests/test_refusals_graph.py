"""Config refusals that follow the model graph and the schema: nothing silently dropped or
wrongly accepted, each a ConfigError at validation naming the key, the values and the fix."""

import hashlib
import math

import pytest
from conftest import config_errors, tiny_config, tiny_random_model

from deltaflow.bench.from_config import benchmark_spec
from deltaflow.config import validate_config


# 1. a sweep or merge over a run whose lineage is DoRA
def _dora_lineage(cfg):
    cfg["recipes"]["tiny_dora"].pop("save_every")
    cfg["runs"]["dora_more"] = {"mixture": "mix_a", "recipe": "tiny_dora", "init_from": "run_b"}
    cfg["runs"]["dora_deep"] = {"mixture": "mix_a", "recipe": "tiny_dora", "init_from": "dora_more"}
    cfg["sweeps"]["dora_deep"] = [0.5]
    cfg["merges"]["with_dora"] = {"method": "cat", "adapters": {"run_a": 0.5, "dora_more": 0.5}}
    return cfg


def test_sweep_and_merge_over_a_run_continuing_a_dora_run_are_refused():
    text = config_errors(_dora_lineage(tiny_config()))
    assert (
        "config key 'sweeps.dora_deep': a DoRA adapter (the adapter run 'run_b' created, continued "
        "through init_from); scaling its factors does not scale its weight delta"
    ) in text
    assert (
        "config key 'merges.with_dora.adapters.dora_more': a DoRA adapter (the adapter run 'run_b' created"
        in text
    )
    # the same continued DoRA recipe is no PEFT mismatch: only the lineage refusals
    assert "differs from" not in text


def test_vllm_backend_refuses_a_run_continuing_a_dora_run():
    cfg = _dora_lineage(tiny_config())
    del cfg["sweeps"]["dora_deep"], cfg["merges"]["with_dora"]
    cfg["eval"]["backend"] = "vllm"
    assert (
        "vllm cannot serve run 'dora_deep', a DoRA adapter (the adapter run 'run_b' created"
        in config_errors(cfg)
    )


# 2. init_from with PEFT keys that differ from the adapter it continues
def test_init_from_refuses_recipe_peft_keys_that_differ_from_the_parent():
    cfg = tiny_config()
    cfg["recipes"]["tiny_dpo"].update(r=16, target_modules=["q_proj", "v_proj"], use_rslora=True)
    text = config_errors(cfg)
    assert (
        "config key 'runs.run_dpo.recipe': recipe 'tiny_dpo': r 16 differs from 4; target_modules "
        "['q_proj', 'v_proj'] differs from 'all-linear'; use_rslora true differs from false of the "
        "adapter it continues ('run_a', runs.run_a.recipe 'tiny_lora'); the parent adapter is continued "
        "as it is"
    ) in text
    assert "or train from the base (no init_from)" in text


@pytest.mark.parametrize(
    "key, value, shown",
    [
        ("method", "dora", "method 'dora' differs from 'lora'"),
        ("alpha", 32, "alpha 32 differs from 8"),
        ("dropout", 0.1, "dropout 0.1 differs from 0.0"),
    ],
)
def test_each_peft_key_is_compared(key, value, shown):
    cfg = tiny_config()
    cfg["recipes"]["tiny_dpo"][key] = value
    assert shown in config_errors(cfg)


def test_peft_keys_compare_after_defaults_and_through_the_chain():
    cfg = tiny_config()
    # the parent spells out the defaults the child leaves to the schema: the same settings
    cfg["recipes"]["tiny_lora"].update(
        method="lora", dropout=0.0, use_rslora=False, target_modules="all-linear"
    )
    cfg["runs"]["third"] = {"mixture": "mix_a", "recipe": "tiny_lora", "init_from": "run_dpo"}
    validate_config(cfg)
    # a third stage is compared with the adapter's creator (run_a), named as such
    cfg = tiny_config()
    cfg["recipes"]["r8"] = {**cfg["recipes"]["tiny_lora"], "r": 8}
    cfg["runs"]["third"] = {"mixture": "mix_a", "recipe": "r8", "init_from": "run_dpo"}
    assert (
        "recipe 'r8': r 8 differs from 4 of the adapter it continues ('run_dpo', first trained by "
        "runs.run_a.recipe 'tiny_lora')"
    ) in config_errors(cfg)


def test_a_grid_continuing_a_run_cannot_vary_a_peft_key():
    cfg = tiny_config()
    cfg["grids"] = {
        "g": {
            "mixtures": ["mix_a"],
            "recipes": ["tiny_lora"],
            "init_from": "run_a",
            "vary": {"r": [4, 16], "learning_rate": [0.01]},
        }
    }
    text = config_errors(cfg)
    assert (
        "runs.g-mix_a-tiny_lora-r16-learning_rate0p01.recipe': recipe 'tiny_lora-r16-learning_rate0p01': r 16"
        in text
    )
    assert "g-mix_a-tiny_lora-r4" not in text  # the same rank continues fine


# 3. benchmarks.<name>.metric on a packaged benchmark is the headline
def _sampled_gsm8k(metric=None):
    cfg = tiny_config()
    cfg["benchmarks"]["gsm8k"].update(
        decoding={"samples": 8, "temperature": 0.7}, **({"metric": metric} if metric else {})
    )
    return cfg


def test_packaged_benchmark_metric_pass_at_8_is_the_headline_score():
    from deltaflow.bench.scoring.metrics import primary_metric, score_all

    cfg = validate_config(_sampled_gsm8k("pass@8"))
    spec = benchmark_spec(cfg, "gsm8k")
    assert primary_metric(spec) == "pass@8"
    docs = [{"doc_id": f"d{i}", "answer": "7"} for i in range(3)]
    answers = [["7"] + ["3"] * 7, ["3"] * 8, ["7"] * 2 + ["5"] * 6]
    raws = [
        {
            "doc_id": d["doc_id"],
            "prompt": "q",
            "prompt_hash": "h",
            "decoding_hash": "x",
            "responses": [f"The answer is {a}" for a in ans],
        }
        for d, ans in zip(docs, answers)
    ]
    records, metrics = score_all(spec, docs, raws)
    assert metrics["metric"] == "pass@8"
    assert [r["score"] for r in records] == [r["pass@8"] for r in records] == [1.0, 0.0, 1.0]
    assert math.isclose(metrics["score"], metrics["all_metrics"]["pass@8"])
    assert not math.isclose(metrics["score"], metrics["all_metrics"]["mean@8"])
    # without the key the headline stays mean@8
    default = benchmark_spec(validate_config(_sampled_gsm8k()), "gsm8k")
    assert primary_metric(default) == "mean@8" and default.headline is None


def test_recorded_metrics_are_the_keys_the_records_carry():
    from deltaflow.bench.from_config import recorded_metrics
    from deltaflow.bench.scoring.metrics import score_output

    spec = benchmark_spec(validate_config(_sampled_gsm8k()), "gsm8k")
    raw = {"doc_id": "d", "prompt": "q", "prompt_hash": "h", "decoding_hash": "x", "responses": ["7"] * 8}
    rec = score_output(spec, {"doc_id": "d", "answer": "7"}, raw)
    assert set(recorded_metrics(spec)) <= set(rec)
    arc = benchmark_spec(validate_config(tiny_config()), "arc_easy")
    rec = score_output(
        arc, {"doc_id": "d", "gold": 0, "choices": ["a", "bb"]}, {**raw, "loglikelihoods": [-1.0, -3.0]}
    )
    assert set(recorded_metrics(arc)) <= set(rec)


def test_an_unknown_headline_metric_lists_what_the_benchmark_records():
    text = config_errors(_sampled_gsm8k("pass@4"))
    assert (
        "config key 'benchmarks.gsm8k.metric': 'pass@4' is not a metric 'gsm8k' records (generate_until, "
        "8 samples per item); it records: exact_match, mean@8, pass@1, pass@8, maj@8"
    ) in text
    cfg = tiny_config()
    cfg["benchmarks"]["arc_easy"]["metric"] = "f1"
    assert (
        "'f1' is not a metric 'arc_easy' records (multiple_choice); it records: acc, acc_norm"
        in config_errors(cfg)
    )
    cfg = tiny_config()
    cfg["benchmarks"]["arc_easy"]["metric"] = "acc_norm"
    from deltaflow.bench.scoring.metrics import primary_metric

    assert primary_metric(benchmark_spec(validate_config(cfg), "arc_easy")) == "acc_norm"


def test_demo_headline_metrics_are_unchanged(repo, monkeypatch):
    from deltaflow.bench.scoring.metrics import primary_metric
    from deltaflow.config import load_config

    monkeypatch.chdir(repo)
    cfg = load_config(repo / "config/config.yaml")
    specs = {b: benchmark_spec(cfg, b) for b in cfg["benchmarks"]}
    assert {b: primary_metric(s) for b, s in specs.items()} == {
        "arithmetic": "exact_match",
        "arc_easy": "acc",
        "gsm8k": "exact_match",
    }
    assert not any(s.headline for s in specs.values())  # the eval jobs' params are as they were


# 4. lr_scheduler against transformers' own names and arguments
def test_scheduler_names_are_transformers_own():
    from transformers.trainer_utils import SchedulerType

    from deltaflow.training.checks import scheduler_names

    assert list(scheduler_names()) == [s.value for s in SchedulerType]


@pytest.mark.parametrize(
    "name, words",
    [
        (
            "cosien",
            "'cosien' is not a transformers scheduler (did you mean 'cosine'?); transformers has: linear, cosine",
        ),
        (
            "cosine_with_min_lr",
            (
                "'cosine_with_min_lr' needs min_lr or min_lr_rate: give it in "
                "recipes.tiny_lora.trainer_args.lr_scheduler_kwargs (e.g. {min_lr_rate: 0.1})"
            ),
        ),
        ("warmup_stable_decay", "'warmup_stable_decay' needs num_decay_steps: give it in"),
        (
            "reduce_lr_on_plateau",
            "adapts the learning rate to the validation loss, and this recipe has none; set val_rows",
        ),
    ],
)
def test_bad_lr_scheduler_is_refused(name, words):
    cfg = tiny_config()
    cfg["recipes"]["tiny_lora"]["lr_scheduler"] = name
    text = config_errors(cfg)
    assert f"config key 'recipes.tiny_lora.lr_scheduler': '{name}" in text and words in text


def test_good_lr_schedulers_validate():
    cfg = tiny_config()
    cfg["recipes"]["tiny_lora"]["lr_scheduler"] = "cosine"
    cfg["recipes"]["tiny_dpo"].update(lr_scheduler="reduce_lr_on_plateau", val_rows=4)
    validate_config(cfg)


# 5. known-but-unsupported keys vs typos
@pytest.mark.parametrize(
    "where, key, words",
    [
        (
            "recipe",
            "early_stopping_patience",
            "early stopping is its own key: early_stopping: {patience: <n>, min_delta: <loss>}",
        ),
        (
            "recipe",
            "max_grad_norm",
            "it is a setting of the objective's TRL config: give it under trainer_args",
        ),
        (
            "recipe",
            "warmup_steps",
            "give the warmup as warmup_ratio (a fraction of the steps), or as trainer_args",
        ),
    ],
)
def test_known_unsupported_keys_say_so(where, key, words):
    cfg = tiny_config()
    (cfg["recipes"]["tiny_lora"] if where == "recipe" else cfg["base_model"])[key] = 3
    text = config_errors(cfg)
    prefix = "recipes.tiny_lora" if where == "recipe" else "base_model"
    assert (
        f"config key '{prefix}.{key}': '{key}' is a known setting that deltaflow does not support "
        f"(not a misspelling): {words}"
    ) in text
    assert "spelling against" not in text and "Additional properties" not in text


def test_ppo_names_what_trl_ships_and_what_deltaflow_runs():
    cfg = tiny_config()
    cfg["recipes"]["tiny_lora"]["objective"] = "ppo"
    text = config_errors(cfg)
    assert (
        "config key 'recipes.tiny_lora.objective': 'ppo' is not supported: TRL 1.x no longer ships PPO; its "
        "trainers are SFT, DPO, GRPO, RLOO, KTO, Reward and Distillation. deltaflow trains sft, dpo, cpt, "
        "grpo, rloo, online_dpo: for on-policy RL from a reward use rloo"
    ) in text


def test_rloo_takes_grpos_keys_but_not_its_loss_type():
    cfg = tiny_config()
    cfg["recipes"]["tiny_lora"].update(objective="rloo", loss_type="dr_grpo", num_generations=1)
    cfg["runs"]["run_a"]["mixture"] = "mix_b"  # prompts with reference answers
    text = config_errors(cfg)
    assert (
        "config key 'recipes.tiny_lora.loss_type': a GRPO loss type, and RLOOTrainer has no loss_type" in text
    )
    assert "config key 'recipes.tiny_lora.rewards': objective rloo needs at least one reward" in text
    assert "config key 'recipes.tiny_lora.num_generations': RLOO compares completions within a group" in text


def test_a_typo_gets_the_closest_key_also_in_a_grid():
    cfg = tiny_config()
    cfg["recipes"]["tiny_lora"]["lerning_rate"] = 0.1
    cfg["benchmarks"]["gsm8k"]["max_gen_tokens"] = 3
    text = config_errors(cfg)
    assert (
        "config key 'recipes.tiny_lora.lerning_rate': unknown key 'lerning_rate' — did you mean "
        "'learning_rate'? (check the spelling against config/README.md)"
    ) in text
    assert (
        "config key 'benchmarks.gsm8k.max_gen_tokens': unknown key 'max_gen_tokens' — did you mean 'max_gen_toks'?"
        in text
    )
    cfg = tiny_config()
    cfg["grids"] = {"g": {"mixtures": ["mix_a"], "recipes": ["tiny_lora"], "vary": {"max_grad_norm": [1.0]}}}
    assert (
        "max_grad_norm: 'max_grad_norm' is a known setting that deltaflow does not support"
        in config_errors(cfg)
    )


# 6. enum errors are short
def test_enum_errors_name_the_value_and_choices_without_the_description():
    cfg = tiny_config()
    cfg["recipes"]["tiny_lora"]["objective"] = "sfft"
    cfg["datasets"]["alpaca"]["format"] = "alpacca"
    text = config_errors(cfg)
    lines = [line.strip() for line in text.splitlines()[1:]]
    assert (
        "config key 'recipes.tiny_lora.objective': 'sfft' is not one of sft, dpo, cpt, grpo, rloo, online_dpo"
        in lines
    )
    assert (
        "config key 'datasets.alpaca.format': 'alpacca' is not one of messages, alpaca, sharegpt, "
        "sharegpt_preference, text"
    ) in lines
    assert "TRL SFTTrainer" not in text and all(len(line) < 200 for line in lines)


# 7. the GRPO no-reward message
def test_grpo_without_rewards_shows_a_valid_example():
    cfg = tiny_config()
    cfg["recipes"]["rl"] = {**cfg["recipes"]["tiny_lora"], "objective": "grpo", "num_generations": 2}
    text = config_errors(cfg)
    assert (
        "objective grpo needs at least one reward: a verifier ({verifier: {benchmark: arithmetic}}), "
        "a format regex ({format: '...'}) or a judge ({judge: {kind: rubric, path: ...}})"
    ) in text
    assert "}}}" not in text


# 8. a QLoRA run exports: its adapter merged into the full-precision base
def test_a_qlora_run_can_be_exported():
    cfg = tiny_config()
    cfg["train"] = {"device": "cuda"}
    cfg["recipes"]["tiny_lora"]["load_in_4bit"] = True
    cfg["recipes"]["tiny_dpo"]["load_in_4bit"] = True
    cfg["export"] = {"models": ["run_a", "run_dpo"], "gguf_types": ["f16"]}
    validate_config(cfg)


def test_merge_full_folds_an_adapter_into_the_full_precision_base(tmp_path):
    """What a QLoRA adapter's export does: the base loaded in full precision (not 4-bit), the
    adapter applied and merge_and_unload'ed; the merged weights are base + the LoRA delta."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from deltaflow.merging import merge_full

    base_dir = tiny_random_model(tmp_path / "base")
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    peft = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], init_lora_weights=False)
    )
    layer = peft.base_model.model.model.layers[0].self_attn.q_proj
    delta = (layer.lora_B["default"].weight @ layer.lora_A["default"].weight) * layer.scaling["default"]
    peft.save_pretrained(tmp_path / "adapter")
    merge_full(base_dir, tmp_path / "adapter", tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    w = merged.state_dict()["model.layers.0.self_attn.q_proj.weight"]
    assert w.dtype == torch.float32
    assert torch.allclose(w, before["model.layers.0.self_attn.q_proj.weight"] + delta.detach(), atol=1e-6)
    k = "model.layers.0.mlp.up_proj.weight"
    assert (
        hashlib.sha256(merged.state_dict()[k].numpy().tobytes()).digest()
        == hashlib.sha256(before[k].numpy().tobytes()).digest()
    )


# 9. local files that do not exist
def test_missing_local_base_folder_is_refused(tmp_path, monkeypatch):
    cfg = tiny_config()
    cfg["base_model"]["source"] = {"type": "local", "path": "no/such/model"}
    monkeypatch.chdir(tmp_path)
    text = config_errors(cfg)
    assert (
        f"config key 'base_model.source.path': 'no/such/model' does not exist (paths are relative to the "
        f"working directory {tmp_path})"
    ) in text
    (tmp_path / "empty").mkdir()
    cfg["base_model"]["source"] = {"type": "local", "path": "empty"}
    assert "config key 'base_model.source.path': 'empty' holds no config.json" in config_errors(cfg)
    cfg["base_model"]["source"] = {"type": "local", "path": "empty", "file": "model.gguf"}
    assert "config key 'base_model.source.file': 'model.gguf' is not in the folder 'empty'" in config_errors(
        cfg
    )
    (tmp_path / "empty" / "model.gguf").write_bytes(b"GGUF")
    validate_config(cfg)
    # check_files=False (the CLI's read-only commands) does not look
    cfg = tiny_config()
    cfg["base_model"]["source"] = {"type": "local", "path": "no/such/model"}
    validate_config(cfg, check_files=False)


def test_a_local_base_folder_validates(tmp_path):
    cfg = tiny_config()
    base = tiny_random_model(tmp_path / "base")
    cfg["base_model"]["source"] = {"type": "local", "path": str(base)}
    validate_config(cfg)


def test_missing_chat_template_and_teacher_folder_are_refused(tmp_path):
    cfg = tiny_config()
    cfg["base_model"]["chat_template_path"] = str(tmp_path / "nope.jinja")
    cfg["generations"] = {
        "teacher_rows": {"model": {"path": str(tmp_path / "teacher")}, "prompts": {"dataset": "alpaca"}}
    }
    text = config_errors(cfg)
    assert (
        f"config key 'base_model.chat_template_path': file '{tmp_path / 'nope.jinja'}' does not exist" in text
    )
    assert (
        f"config key 'generations.teacher_rows.model.path': '{tmp_path / 'teacher'}' is not a transformers model folder"
        in text
    )


def test_missing_local_hf_dataset_folder_is_refused(tmp_path):
    cfg = tiny_config()
    cfg["datasets"]["local_hf"] = {
        "type": "hf",
        "id": str(tmp_path / "saved"),
        "revision": "local",
        "format": "messages",
    }
    assert (
        f"config key 'datasets.local_hf.id': local dataset folder '{tmp_path / 'saved'}' does not exist"
        in config_errors(cfg)
    )
    (tmp_path / "saved").mkdir()
    validate_config(cfg)


def test_early_stopping_needs_a_validation_loss_and_no_declared_arms_past_it():
    cfg = tiny_config()
    cfg["recipes"]["tiny_lora"]["early_stopping"] = {"patience": 2}
    cfg["recipes"]["tiny_dora"]["early_stopping"] = {"patience": 2}
    cfg["recipes"]["tiny_dora"]["val_rows"] = 4
    text = config_errors(cfg)
    assert (
        "config key 'recipes.tiny_lora.early_stopping': it stops on the validation loss, and this recipe has "
        "none; set val_rows"
    ) in text
    assert (
        "config key 'recipes.tiny_dora.early_stopping': with save_every, the checkpoint arms are declared "
        "before the run"
    ) in text
    cfg = tiny_config()
    cfg["recipes"]["tiny_lora"].update(val_rows=4, early_stopping={"patience": 2, "min_delta": 0.01})
    validate_config(cfg)
    assert cfg["recipes"]["tiny_lora"]["early_stopping"] == {"patience": 2, "min_delta": 0.01}
