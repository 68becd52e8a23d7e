"""recipes.<r>.trainer_args: checked against the objective's TRL config dataclass before any job,
passed to it, and honoured by the training (a scheduler's arguments change the learning rates)."""

import pytest
from conftest import config_errors, save_tiny_llama, tiny_config

from deltaflow.config import schema_defaults, validate_config
from deltaflow.training.args import _training_args
from deltaflow.training.trainer_args import fits


def _with(**trainer_args) -> dict:
    cfg = tiny_config()
    cfg["recipes"]["tiny_lora"]["trainer_args"] = trainer_args
    return cfg


def test_trl_settings_validate_and_reach_the_trl_config(tmp_path):
    from trl import SFTConfig

    args = {
        "max_grad_norm": 0.5,
        "weight_decay": 0.01,
        "adam_beta2": 0.95,
        "neftune_noise_alpha": 5,
        "lr_scheduler_kwargs": {"min_lr_rate": 0.1},
        "optim": "adamw_torch",
    }
    cfg = validate_config({**_with(**args)})
    recipe = cfg["recipes"]["tiny_lora"]
    config = SFTConfig(**_training_args(recipe, "cpu", tmp_path, resumable=False, steps=4, validate=False))
    assert config.max_grad_norm == 0.5 and config.weight_decay == 0.01 and config.adam_beta2 == 0.95
    assert config.neftune_noise_alpha == 5 and config.lr_scheduler_kwargs == {"min_lr_rate": 0.1}
    # a recipe without trainer_args has none in its (hashed) params
    assert "trainer_args" not in validate_config(tiny_config())["recipes"]["tiny_lora"]


def test_unknown_owned_and_mistyped_settings_are_refused_with_what_to_do():
    text = config_errors(
        _with(max_grad_nrom=1.0, seed=3, learning_rate=0.1, max_grad_norm="big", label_smoothing=1.0)
    )
    key = "config key 'recipes.tiny_lora.trainer_args"
    assert (
        f"{key}.max_grad_nrom': SFTConfig (objective sft) has no field 'max_grad_nrom'; did you mean max_grad_norm"
        in text
    )
    assert f"{key}.seed': deltaflow sets seed itself; use recipes.tiny_lora.seed" in text
    assert (
        f"{key}.learning_rate': deltaflow sets learning_rate itself; use recipes.tiny_lora.learning_rate"
        in text
    )
    assert f"{key}.max_grad_norm': 'big' is not a float (SFTConfig.max_grad_norm)" in text
    # a DPO field on an SFT recipe is not a field of SFTConfig
    assert f"{key}.label_smoothing': SFTConfig (objective sft) has no field 'label_smoothing'" in text


def test_a_field_of_the_recipes_own_objective_is_checked_against_that_config():
    cfg = tiny_config()
    cfg["recipes"]["tiny_dpo"]["trainer_args"] = {"label_smoothing": 1.0, "beta": 0.3}
    text = config_errors(cfg)
    assert "label_smoothing" not in text  # DPOConfig has it
    assert (
        "config key 'recipes.tiny_dpo.trainer_args.beta': deltaflow sets beta itself; "
        "use recipes.tiny_dpo.beta (dpo) or kl_beta (grpo, rloo)"
    ) in text


def test_warmup_steps_replaces_warmup_ratio_not_both():
    cfg = _with(warmup_steps=2)
    cfg["recipes"]["tiny_lora"]["warmup_ratio"] = 0.1
    assert (
        "config key 'recipes.tiny_lora.trainer_args.warmup_steps': the recipe also sets warmup_ratio 0.1; "
        "give one of them"
    ) in config_errors(cfg)
    validate_config(_with(warmup_steps=2))


def test_a_scheduler_with_its_arguments_validates():
    cfg = _with(lr_scheduler_kwargs={"min_lr_rate": 0.1})
    cfg["recipes"]["tiny_lora"]["lr_scheduler"] = "cosine_with_min_lr"
    validate_config(cfg)
    cfg = _with(lr_scheduler_kwargs={"num_cycles": 0.5})
    cfg["recipes"]["tiny_lora"]["lr_scheduler"] = "cosine_with_min_lr"
    assert "'cosine_with_min_lr' needs min_lr or min_lr_rate" in config_errors(cfg)


@pytest.mark.parametrize(
    "value, hint, ok",
    [
        (1, float, True),
        (True, float, False),
        (1.5, int, False),
        ("x", "str | None", True),
        (None, "float | None", True),
        ([0.9, 0.95], "list[float]", True),
        (["a"], "list[float]", False),
        ({"a": 1}, "dict | str | None", True),
    ],
)
def test_values_against_type_hints(value, hint, ok):
    assert fits(value, eval(hint) if isinstance(hint, str) else hint) is ok


def test_a_scheduler_minimum_learning_rate_holds_in_training(tmp_path):
    """cosine_with_min_lr with min_lr_rate 0.5 through trainer_args: the learning rate never
    falls below half the peak, where plain cosine decays towards 0."""
    from deltaflow.bench.synthetic_tasks import generate_task
    from deltaflow.training.runner import train_adapter

    save_tiny_llama(tmp_path / "base")
    rows = [
        r
        for r in generate_task("arithmetic", train_rows=16, eval_rows=0, seed=0, name="a")
        if r["split"] == "train"
    ]
    lrs = {}
    for name, extra in {
        "cosine": {"lr_scheduler": "cosine"},
        "min_lr": {
            "lr_scheduler": "cosine_with_min_lr",
            "trainer_args": {"lr_scheduler_kwargs": {"min_lr_rate": 0.5}},
        },
    }.items():
        recipe = schema_defaults(
            "recipe",
            {
                "r": 4,
                "alpha": 8,
                "learning_rate": 1e-3,
                "max_steps": 6,
                "batch_size": 4,
                "max_length": 64,
                "logging_steps": 1,
                **extra,
            },
        )
        m = train_adapter(tmp_path / "base", rows, recipe, tmp_path / name, device="cpu")
        lrs[name] = [c["learning_rate"] for c in m["loss_curve"]]
    assert len(lrs["min_lr"]) == 6 and min(lrs["min_lr"]) >= 0.5e-3 - 1e-9, lrs
    assert min(lrs["cosine"]) < 0.5e-3, lrs
