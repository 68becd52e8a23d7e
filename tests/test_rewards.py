"""GRPO's rewards from the registry's scorers (deltaflow.rewards), the group statistics by hand,
and the config errors of a grpo recipe. The training itself: test_training."""
from deltaflow.rewards import GroupStats, reward_functions

from conftest import config_errors, tiny_config


def test_verifier_and_format_rewards_score_completions():
    arith, fmt = reward_functions([{"verifier": {"benchmark": "arithmetic"}, "weight": 1.0},
                                   {"format": r"^\d+$", "name": "digits", "weight": 0.5}])
    assert arith.__name__ == "reward0" and fmt.__name__ == "digits"
    completions = [[{"role": "assistant", "content": "The answer is 12"}], [{"role": "assistant", "content": "13"}],
                   "12"]
    # the arithmetic benchmark's own scorer: its regex takes a number, exact match on the label
    assert arith(completions, answer=["12", "12", "12"], answer_from=["label"] * 3) == [1.0, 0.0, 1.0]
    assert fmt(completions) == [0.0, 1.0, 1.0]
    # a reference written as an answer goes through the same filter
    own, = reward_functions([{"verifier": {"match": "numeric", "extract": {"regex": "(-?[0-9]+)", "group_select": -1}},
                              "weight": 1.0}])
    assert own(["so 4", "5"], answer=["It is 4.", "It is 4."], answer_from=["assistant"] * 2) == [1.0, 0.0]
    # a reference with no number in it: nothing passes (lm-eval's "[invalid]" on both sides is no match)
    assert own(["no number", "7"], answer=["Paris."] * 2, answer_from=["assistant"] * 2) == [0.0, 0.0]


def test_group_statistics_sort_groups_by_what_they_can_teach():
    stats = GroupStats(["a", "b"], [1.0, 0.5], group=2)
    funcs = reward_functions([{"format": "x", "name": "a"}, {"format": "y", "name": "b", "weight": 0.5}], stats=stats)
    completions = ["xy", "xy", "", "", "x", "", "x", "x"]  # all max, all zero, mixed, uniform (1.0 of 1.5)
    for f in funcs:
        f(completions)
    assert stats.take() == {"mixed": 1, "all_zero": 1, "all_max": 1, "uniform": 1, "mixed_share": 0.25}
    assert stats.take()["mixed_share"] is None  # counts are per logging interval


def test_grpo_recipe_config_errors():
    cfg = tiny_config()
    cfg["recipes"]["rl"] = {**cfg["recipes"]["tiny_lora"], "objective": "grpo", "num_generations": 1,
                            "rewards": [{"verifier": {"benchmark": "humaneval"}}, {"format": "(", "verifier": {"match": "exact"}},
                                        {"format": "("}]}
    cfg["runs"]["rl_run"] = {"mixture": "mix_a", "recipe": "rl", "init_from": "run_a"}
    text = config_errors(cfg)
    assert "recipes.rl.num_generations': GRPO compares completions within a group" in text
    assert "'humaneval' is code; a reward checks a completion against the prompt row's reference" in text
    assert "recipes.rl.rewards[1]': give exactly one of verifier or format" in text
    assert "recipes.rl.rewards[2].format': not a regex" in text
    cfg["recipes"]["rl"].update(num_generations=3, rewards=[])
    text = config_errors(cfg)
    assert "objective grpo needs at least one reward" in text
    assert "batch_size': 4 completions per step do not split into groups of num_generations 3" in text
