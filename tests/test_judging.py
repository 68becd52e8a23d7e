"""Judged evals (deltaflow.bench.judging): pairwise in both orders and rubric, verdict parsing, the
unparsed-verdict guard, the length-controlled win rate, a real judge (the tiny model) through the
one eval path and config errors (through the workflow: test_users_benchmarks)."""

import numpy as np
import pytest
from conftest import bench_spec, config_errors, tiny_config, tiny_random_model

from deltaflow.bench.items import prepare_items
from deltaflow.bench.judge_metrics import judge_metrics, length_controlled_win_rate
from deltaflow.bench.judging import (
    judge_docs,
    judge_eval_spec,
    judge_records,
    parse_verdict,
)
from deltaflow.bench.raw_outputs import load_model
from deltaflow.bench.run import raw_outputs
from deltaflow.bench.spec import BenchmarkSpec
from deltaflow.errors import DeltaflowError
from deltaflow.io import write_jsonl

DOCS = [{"doc_id": f"q{i}", "query": f"Write about topic {i}.", "answer": "", "text": ""} for i in range(4)]
MINE = {f"q{i}": "mine " * (i + 1) for i in range(4)}
THEIRS = {f"q{i}": "theirs" for i in range(4)}


def _spec(**judge):
    return BenchmarkSpec.from_dict(
        {
            "name": "style",
            "task": "writingbench_en",
            "axis": "style",
            "output_type": "open_ended",
            "metric": "win_rate",
            "decoding": {"max_gen_toks": 16},
            "judge": {"kind": "pairwise", "model": "base", **judge},
        }
    )


def _raw(doc_id, verdict=None, text=None, lls=None):
    raw = {"doc_id": doc_id, "prompt_hash": "p" * 16, "decoding_hash": "d" * 16}
    if lls is not None:
        raw["loglikelihoods"] = lls
    else:
        raw["responses"] = [text if text is not None else f"The better one is [[{verdict}]]"]
    return raw


def test_pairwise_both_orders_position_rates_and_ci_by_hand():
    spec = _spec(mode="generate")
    # q0: model wins both orders; q1: wins first, tie second; q2: loses both; q3: judge always says
    # "A" (position bias): a win when the model is first, a loss when it is second
    verdicts = {"q0": ("A", "B"), "q1": ("A", "C"), "q2": ("B", "A"), "q3": ("A", "A")}
    raws = [
        _raw(f"{q}|{order}", v)
        for q, (first, second) in verdicts.items()
        for order, v in (("model-first", first), ("model-second", second))
    ]
    records = judge_records(spec, DOCS, MINE, raws, THEIRS)
    assert [r["score"] for r in records] == [1.0, 0.75, 0.0, 0.5]
    assert [v["outcome"] for v in records[3]["verdicts"]] == ["win", "loss"]
    m = judge_metrics(spec, records)
    assert m["score"] == pytest.approx(2.25 / 4) and m["metric"] == "win_rate"
    a = m["all_metrics"]
    assert (a["wins"], a["losses"], a["ties"]) == (4, 3, 1)
    # left = the first slot (A) chosen, right = B: A in q0,q1,q2(second),q3 x2 = 5 of 8
    assert a["left_better_rate"] == 5 / 8 and a["right_better_rate"] == 2 / 8 and a["tie_rate"] == 1 / 8
    lo, hi = a["win_rate_ci"]
    assert 0 <= lo <= m["score"] <= hi <= 1
    assert a["mean_chars"] == np.mean([len(v) for v in MINE.values()]) and a["baseline_mean_chars"] == 6
    assert records[0]["verdicts"][0]["judge_output"] == "The better one is [[A]]"


def test_the_baseline_against_itself_is_half_by_construction():
    records = judge_records(_spec(), DOCS, MINE, [], MINE, self_baseline=True)
    assert {r["score"] for r in records} == {0.5}
    assert judge_metrics(_spec(), records)["score"] == 0.5


def test_unparsed_verdicts_are_counted_and_fail_above_the_threshold():
    spec = _spec(mode="generate", max_unparsed_share=0.3)
    raws = [
        _raw(f"q{i}|{o}", text="I cannot decide." if i == 0 else "[[C]]")
        for i in range(4)
        for o in ("model-first", "model-second")
    ]
    m = judge_metrics(spec, judge_records(spec, DOCS, MINE, raws, THEIRS))
    assert m["unparsed"] == 2 and m["unparsed_share"] == 0.25 and m["score"] == 0.5  # unparsed = tie
    raws = [
        _raw(f"q{i}|{o}", text="no verdict here") for i in range(4) for o in ("model-first", "model-second")
    ]
    with pytest.raises(
        DeltaflowError, match=r"'style': 8 of 8 judge outputs did not parse .* 'no verdict here'"
    ):
        judge_metrics(spec, judge_records(spec, DOCS, MINE, raws, THEIRS))


def test_logprob_verdicts_and_rubric_ratings():
    pair = _spec()
    assert parse_verdict(pair, _raw("x", lls=[-3.0, -1.0, -2.0]))[0] == "B"
    rubric = _spec(kind="rubric")
    lls = [-5.0] * 10
    lls[6] = -0.5  # "7"
    raws = [_raw(f"q{i}|rubric", lls=lls) for i in range(4)]
    records = judge_records(rubric, DOCS, MINE, raws)
    assert {r["rating"] for r in records} == {7.0} and records[0]["score"] == pytest.approx(6 / 9)
    m = judge_metrics(rubric, records)
    assert m["metric"] == "rubric_score" and m["all_metrics"]["mean_rating"] == 7.0
    expected = _spec(kind="rubric", rating="expected")
    lls = [-50.0] * 10
    lls[6] = lls[7] = np.log(0.5)  # "7" and "8" equally likely
    assert parse_verdict(expected, _raw("x", lls=lls))[0] == "7.5000"
    gen = _spec(kind="rubric", mode="generate")
    assert parse_verdict(gen, _raw("x", text="Clear and complete. Rating: [[10]]"))[0] == "10"
    assert (
        parse_verdict(gen, _raw("x", text="8]] because it is fine"))[0] == "8"
    )  # continues the prompt's "[["


def test_length_controlled_win_rate_removes_a_length_preference():
    rng = np.random.default_rng(0)
    n = 400
    delta = rng.normal(0, 100, n)
    # a judge that only prefers the longer answer: raw win rate ~0.5 + length effect,
    # the length-controlled win rate near 0.5 when the model is longer on average
    longer = delta + 80
    pref = (1 / (1 + np.exp(-np.tanh(longer / longer.std()) * 3)) > rng.uniform(size=n)).astype(float)
    raw = pref.mean()
    lc = length_controlled_win_rate(pref, 500 + longer, np.full(n, 500))
    assert raw > 0.65 and abs(lc - 0.5) < abs(raw - 0.5) / 2
    same = length_controlled_win_rate(np.array([1.0, 0.0, 0.5]), np.array([5, 5, 5]), np.array([5, 5, 5]))
    assert same == pytest.approx(0.5)


def test_a_real_judge_through_the_one_eval_path(tmp_path):
    """The tiny random model judges (logprob: every verdict parses; generate: its text mostly
    does not, and the guard says so), cached and re-read without the model."""
    model = tmp_path / "model"
    tiny_random_model(model)
    lm = load_model(model, batch_size=8)
    for mode in ("logprob", "generate"):
        spec = _spec(mode=mode, max_gen_toks=6)
        jspec = judge_eval_spec(spec)
        write_jsonl(tmp_path / f"{mode}.jsonl", judge_docs(spec, DOCS[:2], MINE, THEIRS))
        raws, hit, _ = raw_outputs(
            lm, jspec, tmp_path / f"{mode}.jsonl", cache_dir=tmp_path / "cache", key=mode
        )
        assert not hit and len(raws) == 4
        assert (
            raws[0]["prompt"].endswith("Verdict: [[")
            if mode == "logprob"
            else "Assistant B" in raws[0]["prompt"]
        )
        records = judge_records(spec, DOCS[:2], MINE, raws, THEIRS)
        if mode == "logprob":
            assert all(v["verdict"] in "ABC" for r in records for v in r["verdicts"])
            assert judge_metrics(spec, records)["unparsed"] == 0
        else:
            assert all(len(v["judge_output"]) >= 0 for r in records for v in r["verdicts"])
        again, hit, _ = raw_outputs(
            None, jspec, tmp_path / f"{mode}.jsonl", cache_dir=tmp_path / "cache", key=mode
        )
        assert hit and again == raws


def test_writingbench_prompt_set_reads_its_packaged_rows():
    spec = bench_spec("writingbench_en")
    excluded = []
    items = prepare_items(spec, excluded=excluded)
    assert len(items) == 31 and len(excluded) == 969  # English prompts under 500 characters of 1,000
    assert all(d["query"].isascii() and len(d["query"]) < 500 and d["answer"] == "" for d in items)
    assert "where" in excluded[0]["reason"]


def test_judge_config_errors_before_any_job():
    cfg = tiny_config()
    cfg["benchmarks"]["style"] = {
        "task": "writingbench_en",
        "n": 2,
        "judge": {
            "kind": "pairwise",
            "model": "gpt-4",
            "baseline": "nobody",
            "mode": "generate",
            "parse": "no group",
        },
    }
    cfg["benchmarks"]["free"] = {"task": "writingbench_en", "n": 2}
    cfg["benchmarks"]["mcq"] = {"task": "arc_easy", "n": 2, "judge": {"kind": "rubric", "model": "base"}}
    cfg["benchmarks"]["two"] = {
        "task": "writingbench_en",
        "judge": {"kind": "rubric", "model": "base", "path": "/x"},
    }
    cfg["benchmarks"]["hub"] = {
        "task": "writingbench_en",
        "judge": {"kind": "rubric", "hub": "Qwen/Qwen2.5-7B-Instruct"},
    }
    cfg["benchmarks"]["dir"] = {
        "task": "writingbench_en",
        "judge": {"kind": "rubric", "path": "/nonexistent/judge"},
    }
    msg = config_errors(cfg)
    assert "benchmarks.style.judge.model': 'gpt-4' is not a model of this workflow" in msg
    assert "benchmarks.style.judge.baseline': 'nobody' is not a model" in msg
    assert "benchmarks.style.judge.parse': 'no group' needs exactly one group" in msg
    assert (
        "benchmarks.free': 'writingbench_en' is an open-ended prompt set with nothing to match; give it a `judge:`"
        in msg
    )
    assert (
        "benchmarks.mcq.judge': only generated responses can be judged; 'arc_easy' is multiple_choice" in msg
    )
    assert "benchmarks.two.judge': name exactly one judge: model (a model of this workflow), path" in msg
    assert "benchmarks.hub.judge.revision': a hub judge needs a pinned revision" in msg
    assert "benchmarks.dir.judge.path': '/nonexistent/judge' is not a Hugging Face model folder" in msg


def test_k_samples_per_prompt_are_each_judged_with_their_spread(tmp_path):
    """decoding.samples k on a judged benchmark: every sample is judged (its own questions,
    `<id>|s<j>|...`), the item scores mean@k with the samples' spread, and the metrics say k;
    a real judge (the tiny model) answers every question."""
    spec = _spec(kind="rubric").replace(decoding={"max_gen_toks": 16, "samples": 3})
    mine = {
        d["doc_id"]: [f"short {i}", f"a longer answer {i}", f"the longest answer of all {i}"]
        for i, d in enumerate(DOCS)
    }
    jdocs = judge_docs(spec, DOCS, mine)
    assert [d["doc_id"] for d in jdocs[:3]] == ["q0|s0|rubric", "q0|s1|rubric", "q0|s2|rubric"] and len(
        jdocs
    ) == 12
    ratings = {0: 2, 1: 5, 2: 9}  # the judge rates sample j
    raws = []
    for d in jdocs:
        lls = [-9.0] * 10
        lls[ratings[int(d["doc_id"].split("|")[1][1:])] - 1] = -0.1
        raws.append(_raw(d["doc_id"], lls=lls))
    records = judge_records(spec, DOCS, mine, raws)
    want = [(2 - 1) / 9, (5 - 1) / 9, (9 - 1) / 9]
    assert records[0]["sample_scores"] == pytest.approx(want) and records[0]["score"] == pytest.approx(
        np.mean(want)
    )
    assert records[0]["spread"] == pytest.approx(np.std(want)) and records[0]["responses"] == mine["q0"]
    assert [v["sample"] for v in records[0]["verdicts"]] == [0, 1, 2] and records[0][
        "rating"
    ] == pytest.approx(16 / 3)
    m = judge_metrics(spec, records)
    assert m["samples"] == 3 and m["all_metrics"]["mean_spread"] == pytest.approx(np.std(want))
    pair = _spec().replace(decoding={"max_gen_toks": 16, "samples": 2})
    two = {q: v[:2] for q, v in mine.items()}
    assert [d["doc_id"] for d in judge_docs(pair, DOCS[:1], two, THEIRS)] == [
        "q0|s0|model-first",
        "q0|s0|model-second",
        "q0|s1|model-first",
        "q0|s1|model-second",
    ]
    model = tmp_path / "model"
    tiny_random_model(model)
    write_jsonl(tmp_path / "j.jsonl", jdocs)
    real, _, _ = raw_outputs(load_model(model, batch_size=8), judge_eval_spec(spec), tmp_path / "j.jsonl")
    assert judge_metrics(spec, judge_records(spec, DOCS, mine, real))["judgments"] == 12
