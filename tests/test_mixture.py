from collections import Counter

import pytest

from deltaflow.errors import ConfigError
from deltaflow.mixture import build_mixture


def rows(name, n, split="train"):
    return [{"id": f"{name}-{i}", "split": split, "messages": [
        {"role": "user", "content": f"{name} q{i}"}, {"role": "assistant", "content": "a" * (i % 3 + 1)}]}
        for i in range(n)]


def one_token_per_char(row):
    return sum(len(m["content"]) for m in row["messages"])


DATA = {"task": rows("task", 10) + rows("task", 4, split="eval"), "chat": rows("chat", 20)}


def build(components, seed=0, shuffle=True):
    return build_mixture("m", {"seed": seed, "shuffle": shuffle, "components": components},
                         DATA, one_token_per_char)


def test_integer_multiplier_repeats_every_row():
    out, man = build([{"dataset": "task", "multiplier": 5}])
    counts = Counter(r["id"] for r in out)
    assert len(counts) == 10 and set(counts.values()) == {5}
    assert man.rows == 50 and man.components[0].available_rows == 10


def test_fractional_multiplier_adds_a_seeded_partial_copy():
    out, _ = build([{"dataset": "task", "multiplier": 2.5}])
    counts = Counter(r["id"] for r in out)
    assert len(out) == 25
    assert sorted(Counter(counts.values()).items()) == [(2, 5), (3, 5)]


def test_fraction_and_rows():
    out, man = build([{"dataset": "chat", "fraction": 0.25}, {"dataset": "task", "rows": 23}])
    comp = {c.name: c for c in man.components}
    assert comp["chat"].rows == 5 and comp["task"].rows == 23
    task_counts = Counter(r["id"] for r in out if r["mixture_component"] == "task")
    assert sorted(Counter(task_counts.values()).items()) == [(2, 7), (3, 3)]


def test_tags_shares_and_tokens():
    out, man = build([{"dataset": "task", "multiplier": 2}, {"name": "replay", "dataset": "chat", "rows": 5}])
    assert {r["mixture"] for r in out} == {"m"}
    assert Counter(r["mixture_component"] for r in out) == {"task": 20, "replay": 5}
    comp = {c.name: c for c in man.components}
    assert comp["task"].row_share == 0.8 and comp["replay"].row_share == 0.2
    assert man.tokens == sum(one_token_per_char(r) for r in out)
    assert comp["task"].tokens == sum(one_token_per_char(r) for r in out if r["mixture_component"] == "task")
    assert abs(sum(c.token_share for c in man.components) - 1) < 1e-5
    assert [r["mixture_row"] for r in out] == list(range(25))


def test_split_selection():
    out, man = build([{"dataset": "task", "split": "eval", "multiplier": 1}])
    assert len(out) == 4 and all(r["split"] == "eval" for r in out)


def test_deterministic_and_seed_sensitive():
    spec = [{"dataset": "chat", "fraction": 0.5}, {"dataset": "task", "multiplier": 1.5}]
    a, _ = build(spec, seed=1)
    b, _ = build(spec, seed=1)
    c, _ = build(spec, seed=2)
    assert a == b
    assert [r["id"] for r in a] != [r["id"] for r in c]


def test_editing_one_component_leaves_the_others_sample_alone():
    a, _ = build([{"dataset": "chat", "fraction": 0.5}, {"dataset": "task", "multiplier": 1.5}], shuffle=False)
    b, _ = build([{"dataset": "chat", "fraction": 0.5}, {"dataset": "task", "multiplier": 3.5}], shuffle=False)
    assert [r["id"] for r in a if r["mixture_component"] == "chat"] == \
        [r["id"] for r in b if r["mixture_component"] == "chat"]


def test_fraction_rounding_to_zero_is_an_error():
    with pytest.raises(ConfigError, match=r"components\[0\].fraction.*rounds to 0 rows"):
        build([{"dataset": "task", "fraction": 0.01}])


def test_bad_multiplier_is_an_error():
    with pytest.raises(ConfigError, match="multiplier: must be > 0"):
        build([{"dataset": "task", "multiplier": 0}])
