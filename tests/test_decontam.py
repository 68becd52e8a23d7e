"""Contamination checks on real benchmark items planted into real training rows."""

import random

import pytest
from conftest import bench_spec, build_mixture

from deltaflow.bench.items import prepare_items
from deltaflow.bench.synthetic_tasks import generate_task
from deltaflow.datasets import normalize_dataset
from deltaflow.decontam import ContaminationIndex, EvalItem, normalize_tokens
from deltaflow.errors import DataError


def items(name):
    return [EvalItem(name, d["doc_id"], d["text"]) for d in prepare_items(bench_spec(name))]


@pytest.fixture(scope="module")
def index():
    return ContaminationIndex(items("arc_easy") + items("gsm8k"))


@pytest.fixture(scope="module")
def alpaca():
    return normalize_dataset(
        "alpaca",
        {
            "type": "sdist_file",
            "sdist": "llamafactory==0.9.5",
            "path": "data/alpaca_en_demo.json",
            "format": "alpaca",
        },
    ).rows


def chat(row_id, user, answer="Sure."):
    return {
        "id": row_id,
        "split": "train",
        "source": "planted",
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}],
    }


def edit_one_word(text, rng):
    words = text.split()
    i = rng.randrange(len(words))
    words[i] = "banana"
    return " ".join(words)


def planted_rows(index, rng):
    """(row, benchmark, doc_id) for exact, lightly edited and embedded copies of eval items."""
    arc = [i for i in index.items if i.benchmark == "arc_easy" and len(normalize_tokens(i.text)) >= 16]
    gsm = [i for i in index.items if i.benchmark == "gsm8k"]
    out = []
    for n, item in enumerate(rng.sample(arc, 5) + rng.sample(gsm, 5)):
        out.append((chat(f"exact-{n}", item.text), item))
        out.append((chat(f"case-{n}", "  " + item.text.upper().replace(",", " ,") + " "), item))
        out.append((chat(f"edit-{n}", edit_one_word(item.text, rng)), item))
        out.append(
            (
                chat(
                    f"embed-{n}",
                    f"Here is a homework problem from my class. {item.text} "
                    "Please explain the steps in detail.",
                ),
                item,
            )
        )
        out.append((chat(f"answer-{n}", "Can you help?", f"The question was: {item.text}"), item))
    return out


def test_every_planted_item_is_caught(index):
    rng = random.Random(7)
    for row, item in planted_rows(index, rng):
        hits = index.check(row["id"], [m["content"] for m in row["messages"]])
        assert (item.benchmark, item.doc_id) in {(h.benchmark, h.doc_id) for h in hits}, row["id"]


def test_exact_copy_is_reported_as_exact(index):
    item = next(i for i in index.items if i.benchmark == "gsm8k")
    hits = index.check("r", [item.text])
    assert [(h.match, h.overlap) for h in hits if h.doc_id == item.doc_id] == [("exact", 1.0)]


def test_unrelated_rows_are_not_flagged(index, alpaca):
    flagged = [r["id"] for r in alpaca if index.check(r["id"], [m["content"] for m in r["messages"]])]
    assert flagged == []


def _task_index(task):
    rows = generate_task(task, train_rows=200, eval_rows=150, seed=0, name=task)
    evals = {r["id"]: r for r in rows if r["split"] == "eval"}
    idx = ContaminationIndex([EvalItem(task, i, r["messages"][0]["content"]) for i, r in evals.items()])
    train = [r for r in rows if r["split"] == "train"]
    return idx, evals, train


def test_templated_task_splits_do_not_collide():
    # same prompt template, disjoint numbers: the short-item n-grams must tell them apart
    for task in ("arithmetic", "spelling"):
        idx, evals, train = _task_index(task)
        assert [r["id"] for r in train if idx.check(r["id"], [m["content"] for m in r["messages"]])] == []
        assert idx.check("x", [next(iter(evals.values()))["messages"][0]["content"]])


def test_mixture_drop_policy_removes_and_reports(index, alpaca):
    rng = random.Random(1)
    planted = [row for row, _ in planted_rows(index, rng)]
    clean = [chat("clean-0", "Name three primary colors."), chat("clean-1", "What is a haiku?")]
    data = {"alpaca": alpaca, "planted": planted + clean}
    spec = {
        "components": [{"dataset": "alpaca", "multiplier": 1}, {"dataset": "planted", "multiplier": 1}],
        "decontamination": {"policy": "drop"},
    }
    res = build_mixture("m", spec, data, lambda r: 1, index=index, parsers={})
    d = res.manifest.decontamination
    # the upper-cased copies are normalized duplicates of the exact ones (removed by dedup first)
    dups = {
        r["id"] for r in res.removed if r["reason"].startswith("duplicate") and r["component"] == "planted"
    }
    assert dups == {r["id"] for r in planted if r["id"].startswith("case-")}
    assert d["rows_removed"] == len(planted) - len(dups) and res.manifest.components[0].contaminated == 0
    alpaca_kept = res.manifest.components[0].unique_rows
    assert res.manifest.rows == alpaca_kept + len(clean)
    assert d["overlap_per_benchmark"]["arc_easy"] > 0 and d["overlap_per_benchmark"]["gsm8k"] > 0
    assert {h["row"] for h in res.hits} == {r["id"] for r in planted} - dups


def test_mixture_fail_policy_names_the_hit(index):
    item = next(i for i in index.items if i.benchmark == "arc_easy")
    data = {"p": [chat("p-0", item.text), chat("p-1", "hello there")]}
    spec = {"components": [{"dataset": "p", "multiplier": 1}], "decontamination": {"policy": "fail"}}
    with pytest.raises(DataError, match=rf"training row p-0 overlaps arc_easy doc {item.doc_id} \(exact"):
        build_mixture("m", spec, data, lambda r: 1, index=index, parsers={})


def test_real_dpo_pairs_make_a_preference_mixture(index):
    pairs = normalize_dataset(
        "dpo",
        {
            "type": "sdist_file",
            "sdist": "llamafactory==0.9.5",
            "path": "data/dpo_en_demo.json",
            "format": "sharegpt_preference",
        },
    ).rows
    item = next(i for i in index.items if i.benchmark == "gsm8k")
    leaked = dict(pairs[0], id="dpo-leak", chosen=f"Solved: {item.text}")
    spec = {"kind": "preference", "components": [{"dataset": "dpo", "multiplier": 1, "profile": "style"}]}
    res = build_mixture("pref", spec, {"dpo": pairs + [leaked]}, lambda r: 1, index=index, parsers={})
    assert res.manifest.kind == "preference"
    assert [h["row"] for h in res.hits] == ["dpo-leak"]  # the chosen response is checked too
    assert all(
        isinstance(r["chosen"], str)
        and isinstance(r["rejected"], str)
        and r["messages"][-1]["role"] == "user"
        and r["mixture_profile"] == "style"
        for r in res.rows
    )
    dups = res.manifest.components[0].duplicates
    assert res.manifest.rows + sum(dups.values()) == len(pairs)


def test_report_lists_hits_and_ends_with_the_overlap_count(index):
    from deltaflow.mixture_report import render_report

    item = next(i for i in index.items if i.benchmark == "arc_easy")
    data = {"p": [chat("p-0", item.text), chat("p-1", "hello there")]}
    res = build_mixture(
        "m", {"components": [{"dataset": "p", "multiplier": 1}]}, data, lambda r: 1, index=index, parsers={}
    )
    text = render_report(
        res.manifest, hits=res.hits, removed=res.removed, dataset_rejects={}, inputs={"dataset:p": "abc"}
    )
    assert f"| p-0 | arc_easy | {item.doc_id} | exact | 0 | 1.0 |" in text
    assert text.rstrip().endswith("**1 overlap; 1 training row removed**")
    assert "| arc_easy | 1 |" in text and "| gsm8k | 0 |" in text
