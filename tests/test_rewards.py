"""GRPO's rewards from the registry's scorers (deltaflow.training.rewards), the group statistics by hand,
and the config errors of a grpo recipe. The training itself: test_training."""

import json

import pytest
from conftest import config_errors, tiny_config

from deltaflow.errors import DataError
from deltaflow.training.grpo import grpo_rows
from deltaflow.training.rewards import GroupStats, check_reward_rows, reward_functions


def test_verifier_and_format_rewards_score_completions():
    arith, fmt = reward_functions(
        [
            {"verifier": {"benchmark": "arithmetic"}, "weight": 1.0},
            {"format": r"^\d+$", "name": "digits", "weight": 0.5},
        ]
    )
    assert arith.__name__ == "reward0" and fmt.__name__ == "digits"
    completions = [
        [{"role": "assistant", "content": "The answer is 12"}],
        [{"role": "assistant", "content": "13"}],
        "12",
    ]
    # the arithmetic benchmark's own scorer: its regex takes a number, exact match on the label
    assert arith(completions, answer=["12", "12", "12"], answer_from=["label"] * 3) == [1.0, 0.0, 1.0]
    assert fmt(completions) == [0.0, 1.0, 1.0]
    # a reference written as an answer goes through the same filter
    (own,) = reward_functions(
        [
            {
                "verifier": {"match": "numeric", "extract": {"regex": "(-?[0-9]+)", "group_select": -1}},
                "weight": 1.0,
            }
        ]
    )
    assert own(["so 4", "5"], answer=["It is 4.", "It is 4."], answer_from=["assistant"] * 2) == [1.0, 0.0]
    # a reference with no number in it: nothing passes (lm-eval's "[invalid]" on both sides is no match)
    assert own(["no number", "7"], answer=["Paris."] * 2, answer_from=["assistant"] * 2) == [0.0, 0.0]


def test_group_statistics_sort_groups_by_what_they_can_teach():
    stats = GroupStats(["a", "b"], [1.0, 0.5], group=2, near_zero=0.05)
    funcs = reward_functions(
        [{"format": "x", "name": "a"}, {"format": "y", "name": "b", "weight": 0.5}], stats=stats
    )
    completions = ["xy", "xy", "", "", "x", "", "x", "x"]  # all max, all zero, mixed, uniform (1.0 of 1.5)
    for f in funcs:
        f(completions)
    assert stats.take() == {"mixed": 1, "all_zero": 1, "all_max": 1, "uniform": 1, "mixed_share": 0.25}
    assert stats.take()["mixed_share"] is None  # counts are per logging interval


def test_grpo_recipe_config_errors():
    cfg = tiny_config()
    cfg["recipes"]["rl"] = {
        **cfg["recipes"]["tiny_lora"],
        "objective": "grpo",
        "num_generations": 1,
        "rewards": [
            {"verifier": {"benchmark": "arc_easy"}},
            {"format": "(", "verifier": {"match": "exact"}},
            {"format": "("},
        ],
    }
    cfg["runs"]["rl_run"] = {"mixture": "mix_a", "recipe": "rl", "init_from": "run_a"}
    text = config_errors(cfg)
    assert "recipes.rl.num_generations': GRPO compares completions within a group" in text
    assert "'arc_easy' is multiple_choice; a reward checks a completion against its prompt row" in text
    assert (
        "recipes.rl.rewards[1]': give exactly one of verifier, format or judge; got verifier, format" in text
    )
    assert "recipes.rl.rewards[2].format': not a regex" in text
    cfg["recipes"]["rl"].update(num_generations=3, rewards=[])
    text = config_errors(cfg)
    assert "objective grpo needs at least one reward" in text
    assert "batch_size': 4 completions per step do not split into groups of num_generations 3" in text


def _prompt_rows(**fields):
    return [
        {
            "id": f"r{i}",
            "messages": [{"role": "user", "content": f"Task {i}."}, {"role": "assistant", "content": "-"}],
            **{k: v[i] for k, v in fields.items()},
        }
        for i in range(len(next(iter(fields.values()))))
    ]


def test_code_rewards_run_each_rows_tests_in_the_sandbox():
    """verifier {benchmark: mbpp}: MBPP's scorer (the completion is the program, the row's
    asserts after it, run in deltaflow's sandbox); a chat model's fenced block is the program."""
    rows = grpo_rows(
        _prompt_rows(
            tests=[
                "assert add(2, 3) == 5",
                "assert add(2, 3) == 5",
                "assert add(2, 3) == 5",
                "assert double(4) == 8",
            ]
        )
    )
    (mbpp,) = reward_functions([{"verifier": {"benchmark": "mbpp"}, "weight": 1.0}])
    completions = [
        "def add(a, b):\n    return a + b",
        "def add(a, b):\n    return a - b",
        [{"role": "assistant", "content": "Here:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."}],
        "def double(x):\n    return x * 3",
    ]
    cols = {k: [r[k] for r in rows] for k in ("answer", "answer_from", "verify")}
    assert mbpp(completions, **cols) == [1.0, 0.0, 1.0, 0.0]


def test_instruction_rewards_apply_each_rows_checkers():
    """verifier {benchmark: ifbench}: IFBench's checkers with the row's instruction ids and
    kwargs; the completion passes when it follows every one (prompt-level strict)."""
    words = [{"id": "count:word_count_range", "kwargs": {"min_words": 2, "max_words": 3}}]
    both = words + [{"id": "format:no_whitespace", "kwargs": {}}]
    rows = grpo_rows(_prompt_rows(instructions=[words, words, both]))
    (ifb,) = reward_functions([{"verifier": {"benchmark": "ifbench"}, "weight": 1.0}])
    cols = {k: [r[k] for r in rows] for k in ("answer", "answer_from", "verify")}
    assert ifb(["two words", "far too many words here", "two words"], **cols) == [1.0, 0.0, 0.0]
    assert json.loads(rows[2]["verify"])["checks"] == json.dumps(both)


def test_prompts_without_what_the_reward_checks_are_a_data_error():
    rows = grpo_rows(_prompt_rows(tests=["assert f() == 1", None]))
    with pytest.raises(
        DataError,
        match=r"reward 'reward0' \(mbpp, code\) checks completions with each prompt row's "
        r"tests, and row 'r1' has none: the prompts do not fit this reward",
    ):
        check_reward_rows([{"verifier": {"benchmark": "mbpp"}}], rows)
    with pytest.raises(DataError, match=r"row's code_prompt, entry_point, and row 'r0' has none"):
        check_reward_rows([{"verifier": {"benchmark": "humaneval"}}], rows)
    with pytest.raises(
        DataError, match=r"\(ifbench, instruction\) checks completions with each prompt row's instructions"
    ):
        check_reward_rows([{"verifier": {"benchmark": "ifbench"}}], rows)
    check_reward_rows(
        [{"verifier": {"benchmark": "arithmetic"}}, {"format": "x"}], rows
    )  # nothing per row needed


def test_code_or_instruction_rewards_on_task_pack_prompts_are_a_config_error():
    """Code tests for math prompts: a task pack's rows (and model-written rows) never carry tests
    or instructions, so a GRPO run over them with such a reward is refused before any job."""
    cfg = tiny_config()
    cfg["recipes"]["rl"] = {
        **cfg["recipes"]["tiny_lora"],
        "objective": "grpo",
        "num_generations": 2,
        "rewards": [
            {"verifier": {"benchmark": "mbpp"}},
            {"verifier": {"benchmark": "ifbench"}},
            {"verifier": {"benchmark": "arithmetic"}},
        ],
    }
    cfg["runs"]["rl_run"] = {"mixture": "mix_a", "recipe": "rl", "init_from": "run_a"}
    text = config_errors(cfg)
    assert (
        "config key 'mixtures.mix_a.components[0]': run 'rl_run' rewards completions with rewards[0] (mbpp) of "
        "recipe 'rl', which checks each prompt row's tests; 'arithmetic' is a task pack's rows and has none: "
        "the prompts do not fit the reward"
    ) in text
    assert "rewards[1] (ifbench) of recipe 'rl', which checks each prompt row's instructions" in text
    assert "components[1]" not in text  # alpaca is a file: its rows are checked when the run starts
