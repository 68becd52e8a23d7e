"""Prompt sets: a dataset used only for its prompts (a generation's prompt set, a mixture only GRPO
runs train) keeps rows without an assistant turn; training on such a dataset with SFT, DPO or CPT
is refused, naming the component and the dataset."""

import json

import pytest
from conftest import build_mixture, config_errors

from deltaflow.datasets import NO_ANSWER, dataset_uses, normalize_dataset, prompt_sets
from deltaflow.errors import DataError

PROMPTS = [
    {"messages": [{"role": "user", "content": "What is 2 + 3?"}]},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]},
    {"messages": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "hi"}]},
    {"messages": [{"role": "user", "content": "   "}]},
]


@pytest.fixture
def prompts_file(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in PROMPTS))
    return path


def test_a_prompt_set_keeps_rows_without_an_answer_and_counts_the_rest(prompts_file):
    spec = {"type": "file", "path": str(prompts_file), "format": "messages", "max_reject_fraction": 0.5}
    out = normalize_dataset("p", {**spec, "prompts_only": True})
    assert [r["messages"][-1]["content"] for r in out.rows] == ["What is 2 + 3?", "Name a colour.", "hi"]
    # an empty prompt is still a rejected row, counted with its reason
    assert [r["reason"] for r in out.rejected] == [
        "empty user turn (a prompt set's row ends with the prompt)"
    ]
    # read as training rows, the same file keeps only the answered row and says why
    with pytest.raises(DataError) as err:
        normalize_dataset("p", spec)
    msg = str(err.value)
    assert "3 of 4 records rejected" in msg and f"'{NO_ANSWER}': 3" in msg
    assert "datasets.p.prompts_only: true" in msg and "a generation's prompt set" in msg


def test_an_alpaca_prompt_set_needs_no_output(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(
        json.dumps(
            [
                {"instruction": "Name a colour."},
                {"instruction": "Add", "input": "2 3", "output": "5"},
                {"instruction": "Empty answer", "output": " "},
            ]
        )
    )
    out = normalize_dataset(
        "a",
        {
            "type": "file",
            "path": str(path),
            "format": "alpaca",
            "prompts_only": True,
            "max_reject_fraction": 0.5,
        },
    )
    assert [r["messages"] for r in out.rows] == [
        [{"role": "user", "content": "Name a colour."}],
        [{"role": "user", "content": "Add\n\n2 3"}, {"role": "assistant", "content": "5"}],
    ]
    assert [r["reason"] for r in out.rejected] == ["missing or empty 'output' (empty assistant turn)"]


def _with_prompts(cfg, prompts_file, **ds):
    cfg["datasets"]["prompts"] = {"type": "file", "path": str(prompts_file), "format": "messages", **ds}
    cfg["recipes"]["rl"] = {
        **cfg["recipes"]["tiny_lora"],
        "objective": "grpo",
        "rewards": [{"format": "e", "name": "has_e"}],
    }
    cfg["mixtures"]["rl_mix"] = {"components": [{"dataset": "prompts", "multiplier": 1}]}
    cfg["runs"]["run_rl"] = {"mixture": "rl_mix", "recipe": "rl"}
    return cfg


def test_a_dataset_used_only_for_its_prompts_is_a_prompt_set(tiny_cfg, prompts_file):
    from deltaflow.config import validate_config

    cfg = validate_config(_with_prompts(tiny_cfg, prompts_file))
    assert dataset_uses(cfg)["prompts"]["prompts"] == ["mixtures.rl_mix.components[0]"]
    assert prompt_sets(cfg) == {"prompts"}
    # the same dataset also trained with SFT: its rows need answers again
    cfg["mixtures"]["mix_b"]["components"].append({"dataset": "prompts", "multiplier": 1})
    assert dataset_uses(cfg)["prompts"]["training"] == ["mixtures.mix_b.components[2]"]
    assert prompt_sets(cfg) == set()


def test_training_sft_on_a_declared_prompt_set_is_refused_naming_component_and_dataset(
    tiny_cfg, prompts_file
):
    cfg = _with_prompts(tiny_cfg, prompts_file, prompts_only=True)
    cfg["mixtures"]["mix_b"]["components"].append({"dataset": "prompts", "multiplier": 1})
    msg = config_errors(cfg)
    assert (
        "config key 'mixtures.mix_b.components[2].dataset': dataset 'prompts' is a prompt set "
        "(datasets.prompts.prompts_only: true: user turns, no answers) and run 'run_b' (sft) trains on "
        "mixture 'mix_b', which needs an answer in every row"
    ) in msg
    assert "rl_mix" not in msg  # the GRPO mixture on it is fine


def test_a_grpo_mixture_is_built_from_prompt_only_rows(prompts_file):
    rows = normalize_dataset(
        "prompts",
        {
            "type": "file",
            "path": str(prompts_file),
            "format": "messages",
            "prompts_only": True,
            "max_reject_fraction": 0.5,
        },
    ).rows
    spec = {"components": [{"dataset": "prompts", "multiplier": 1}], "seed": 0}
    result = build_mixture("rl_mix", spec, {"prompts": rows}, lambda r: 4)
    assert sorted(r["id"] for r in result.rows) == ["prompts-0", "prompts-1", "prompts-2"]
    from deltaflow.training.grpo import grpo_rows

    assert sorted(r["prompt"][0]["content"] for r in grpo_rows(result.rows)) == [
        "Name a colour.",
        "Say hi.",
        "What is 2 + 3?",
    ]
