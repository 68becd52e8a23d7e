from collections import Counter

import pytest
from conftest import build_mixture

from deltaflow.errors import ConfigError, DataError
from deltaflow.mixture import realized_shares


def rows(name, n, split="train"):
    return [
        {
            "id": f"{name}-{i}",
            "split": split,
            "messages": [
                {"role": "user", "content": f"{name} q{i}"},
                {"role": "assistant", "content": "a" * (i % 3 + 1)},
            ],
        }
        for i in range(n)
    ]


def one_token_per_char(row):
    return sum(len(m["content"]) for m in row["messages"])


DATA = {"task": rows("task", 10) + rows("task", 4, split="eval"), "chat": rows("chat", 20)}


def build(components, seed=0, shuffle=True, data=DATA, **spec):
    res = build_mixture(
        "m", {"seed": seed, "shuffle": shuffle, "components": components, **spec}, data, one_token_per_char
    )
    return res.rows, res.manifest


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
    out, _man = build([{"dataset": "task", "split": "eval", "multiplier": 1}])
    assert len(out) == 4 and all(r["split"] == "eval" for r in out)


def test_deterministic_and_seed_sensitive():
    spec = [{"dataset": "chat", "fraction": 0.5}, {"dataset": "task", "multiplier": 1.5}]
    a, _ = build(spec, seed=1)
    b, _ = build(spec, seed=1)
    c, _ = build(spec, seed=2)
    assert a == b
    assert [r["id"] for r in a] != [r["id"] for r in c]


def test_editing_one_component_leaves_the_others_sample_alone():
    a, _ = build(
        [{"dataset": "chat", "fraction": 0.5}, {"dataset": "task", "multiplier": 1.5}], shuffle=False
    )
    b, _ = build(
        [{"dataset": "chat", "fraction": 0.5}, {"dataset": "task", "multiplier": 3.5}], shuffle=False
    )
    assert [r["id"] for r in a if r["mixture_component"] == "chat"] == [
        r["id"] for r in b if r["mixture_component"] == "chat"
    ]


def test_fraction_rounding_to_zero_is_an_error():
    with pytest.raises(ConfigError, match=r"components\[0\].fraction.*rounds to 0 rows"):
        build([{"dataset": "task", "fraction": 0.01}])


def test_bad_multiplier_is_an_error():
    with pytest.raises(
        ConfigError, match=r"components\[0\].multiplier: 0 is less than or equal to the minimum of 0"
    ):
        build([{"dataset": "task", "multiplier": 0}])


# --- share targets -----------------------------------------------------------------------


def test_row_share_target_is_realized_beside_fixed_components():
    # 20 chat rows fixed; task must be 20% of the final mix -> 5 task rows (25 total)
    _out, man = build([{"dataset": "chat", "multiplier": 1}, {"dataset": "task", "share": 0.2}])
    comp = {c.name: c for c in man.components}
    assert comp["task"].rows == 5 and man.rows == 25
    assert comp["task"].row_share == 0.2 and comp["task"].target_share == 0.2


def test_share_target_larger_than_the_source_repeats_rows():
    out, _man = build([{"dataset": "chat", "multiplier": 2}, {"dataset": "task", "share": 0.5}])
    assert Counter(r["mixture_component"] for r in out) == {"chat": 40, "task": 40}
    assert set(Counter(r["id"] for r in out if r["mixture_component"] == "task").values()) == {4}


def test_token_share_target_is_close():
    out, man = build(
        [{"dataset": "chat", "multiplier": 1}, {"dataset": "task", "share": 0.3}], share_basis="tokens"
    )
    comp = {c.name: c for c in man.components}
    assert abs(comp["task"].token_share - 0.3) < 0.02
    assert comp["task"].tokens == sum(one_token_per_char(r) for r in out if r["mixture_component"] == "task")


def test_all_share_components_need_a_total():
    out, _man = build([{"dataset": "chat", "share": 0.75}, {"dataset": "task", "share": 0.25}], total_rows=40)
    assert Counter(r["mixture_component"] for r in out) == {"chat": 30, "task": 10}
    with pytest.raises(ConfigError, match="set total_rows"):
        build([{"dataset": "chat", "share": 0.75}, {"dataset": "task", "share": 0.25}])


# --- profiles and bounds -----------------------------------------------------------------


def test_profiles_tag_rows_and_sum_shares():
    out, man = build(
        [
            {"dataset": "task", "multiplier": 1, "profile": "capability", "benchmark_profile": "arith"},
            {"name": "chat1", "dataset": "chat", "rows": 5, "profile": "release"},
            {"name": "chat2", "dataset": "chat", "fraction": 0.25, "profile": "release"},
        ],
        dedup="off",
    )
    assert {(r["mixture_component"], r["mixture_profile"]) for r in out} == {
        ("task", "capability"),
        ("chat1", "release"),
        ("chat2", "release"),
    }
    assert all(r["mixture_benchmark_profile"] == "arith" for r in out if r["mixture_component"] == "task")
    assert man.profiles["release"]["rows"] == 10 and man.profiles["release"]["row_share"] == 0.5
    assert realized_shares(man)["capability"] == 0.5


def test_violated_min_share_fails_with_realized_shares():
    # a known failure: task data below 5% of the mix
    with pytest.raises(
        DataError, match=r"task share 0\.0476 violates min_share 0\.2.*Realized shares: chat 0\.9524"
    ):
        build(
            [{"dataset": "chat", "multiplier": 10}, {"dataset": "task", "multiplier": 1}],
            min_share={"task": 0.2},
        )


def test_bounds_that_hold_are_recorded():
    _, man = build(
        [{"dataset": "chat", "rows": 14, "profile": "replay"}, {"dataset": "task", "share": 0.3}],
        min_share={"task": 0.2},
        max_share={"replay": 0.75},
    )
    assert man.bounds["min_share.task"]["ok"] and man.bounds["max_share.replay"]["realized"] == 0.7


# --- filters, dedup, rejection accounting --------------------------------------------------


def labeled(n_per_class):
    out = []
    for label, n in n_per_class.items():
        out += [
            {
                "id": f"{label}-{i}",
                "split": "train",
                "label": label,
                "messages": [
                    {"role": "user", "content": f"classify text {label} {i}"},
                    {"role": "assistant", "content": label},
                ],
            }
            for i in range(n)
        ]
    return out


def test_cap_per_class_and_balancing():
    data = {"cls": labeled({"pos": 30, "neg": 5, "neu": 12})}
    out, man = build([{"dataset": "cls", "multiplier": 1, "cap_per_class": 10}], data=data)
    assert Counter(r["label"] for r in out) == {"pos": 10, "neg": 5, "neu": 10}
    assert man.components[0].capped == {"pos": 20, "neu": 2}
    out, man = build([{"dataset": "cls", "multiplier": 1, "balance_classes": True}], data=data)
    assert Counter(r["label"] for r in out) == {"pos": 5, "neg": 5, "neu": 5}


def test_max_tokens_rejects_and_counts():
    res = build_mixture(
        "m",
        {"components": [{"dataset": "chat", "multiplier": 1, "max_tokens": 8}], "max_reject_fraction": 1.0},
        DATA,
        one_token_per_char,
    )
    # one token per character: "chat q0".."chat q9" + a 1-3 char answer are 8-10 tokens
    assert res.manifest.rows == 4
    over = [r for r in res.removed if r["reason"].startswith("over-length")]
    assert len(over) == res.manifest.components[0].rejected["over-length"]
    assert len(over) + res.manifest.rows == 20
    assert all("tokens > max_tokens 8" in r["reason"] for r in over)


def test_max_reject_fraction_turns_a_bad_source_into_an_error():
    with pytest.raises(DataError, match=r"20 of 20 rows.*max_reject_fraction 0.5"):
        build([{"dataset": "chat", "multiplier": 1, "max_tokens": 2}])


def test_exact_and_normalized_duplicates_are_removed_and_counted():
    base = rows("chat", 5)
    dup_exact = [dict(base[0], id="copy-0")]
    dup_norm = [
        {
            "id": "norm-1",
            "split": "train",
            "messages": [{"role": "user", "content": "  CHAT   q1!"}, {"role": "assistant", "content": "aa"}],
        }
    ]
    data = {"chat": base + dup_exact + dup_norm, "more": [dict(base[2], id="other-2")] + rows("more", 1)}
    res = build_mixture(
        "m",
        {"components": [{"dataset": "chat", "multiplier": 2}, {"dataset": "more", "rows": 1}]},
        data,
        one_token_per_char,
    )
    comps = {c.name: c for c in res.manifest.components}
    assert comps["chat"].duplicates == {"exact": 1, "normalized": 1} and comps["chat"].unique_rows == 5
    assert comps["more"].duplicates == {"exact": 1} and comps["more"].unique_rows == 1
    assert {r["id"] for r in res.removed} == {"copy-0", "norm-1", "other-2"}
    assert (
        next(r for r in res.removed if r["id"] == "norm-1")["reason"]
        == "duplicate (normalized) of row chat-1"
    )
    assert Counter(r["id"] for r in res.rows)["chat-0"] == 2  # the multiplier still repeats on purpose


def test_label_strings_must_parse_like_the_benchmark():
    from deltaflow.bench.scoring.parsers import answer_parser
    from deltaflow.bench.spec import BenchmarkSpec

    letters = answer_parser(
        BenchmarkSpec.from_dict({"name": "letters", "extract": {"regex": "\\b([ABCD])\\b"}})
    )
    good = labeled({"A": 3, "B": 3})
    bad = good + [
        {
            "id": "bad-0",
            "split": "train",
            "label": "C",
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "(c)"}],
        }
    ]
    res = build_mixture(
        "m",
        {"components": [{"dataset": "x", "multiplier": 1, "labels_from": "mcq"}]},
        {"x": good},
        one_token_per_char,
        parsers={"mcq": letters},
    )
    assert res.manifest.rows == 6
    with pytest.raises(
        DataError, match=r"row bad-0: label: the benchmark's parser extracts nothing from answer '\(c\)'"
    ):
        build_mixture(
            "m",
            {"components": [{"dataset": "x", "multiplier": 1, "labels_from": "mcq"}]},
            {"x": bad},
            one_token_per_char,
            parsers={"mcq": letters},
        )
    res = build_mixture(
        "m",
        {
            "components": [
                {"dataset": "x", "multiplier": 1, "labels_from": "mcq", "on_label_mismatch": "reject"}
            ]
        },
        {"x": bad},
        one_token_per_char,
        parsers={"mcq": letters},
    )
    assert res.manifest.components[0].rejected == {"label": 1} and res.manifest.rows == 6


def test_label_set_check():
    data = {"x": labeled({"yes": 2, "maybe": 1})}
    with pytest.raises(DataError, match=r"answer 'maybe' is not in the label set \['yes', 'no'\]"):
        build([{"dataset": "x", "multiplier": 1, "label_set": ["yes", "no"]}], data=data)


def test_preference_mixture_keeps_pairs_and_dedups_them():
    pairs = [
        {
            "id": f"p{i}",
            "split": "train",
            "messages": [{"role": "user", "content": f"prompt {i % 4}"}],
            "chosen": f"good {i % 4}",
            "rejected": f"bad {i % 4}",
        }
        for i in range(8)
    ]
    res = build_mixture(
        "m",
        {"kind": "preference", "components": [{"dataset": "pref", "multiplier": 1}]},
        {"pref": pairs},
        one_token_per_char,
    )
    assert res.manifest.rows == 4 and res.manifest.kind == "preference"
    assert all(r["chosen"].startswith("good") and r["rejected"].startswith("bad") for r in res.rows)
    with pytest.raises(ConfigError, match="needs chosen/rejected pairs"):
        build_mixture(
            "m",
            {"kind": "preference", "components": [{"dataset": "chat", "multiplier": 1}]},
            DATA,
            one_token_per_char,
        )


def test_same_config_gives_byte_identical_output():
    import json

    spec = [{"dataset": "chat", "fraction": 0.5}, {"dataset": "task", "share": 0.25}]
    a = "\n".join(json.dumps(r, sort_keys=True) for r in build(spec, seed=3)[0])
    b = "\n".join(json.dumps(r, sort_keys=True) for r in build(spec, seed=3)[0])
    assert a == b


def test_removing_every_row_is_an_error_naming_why():
    data = {"chat": rows("chat", 3), "same": rows("chat", 3)}
    with pytest.raises(DataError, match=r"components\[1\]: no rows of dataset 'same' are left.*'exact': 3"):
        build([{"dataset": "chat", "multiplier": 1}, {"dataset": "same", "multiplier": 1}], data=data)
