"""Generation scoring beyond exact match (numeric and contains match) and the silent-generation
guard: an eval whose responses are mostly empty or mostly cut at max_gen_toks fails with the
numbers instead of scoring zeros."""

import pytest
from conftest import bench_spec, tiny_random_model

from deltaflow.bench.items import prepare_docs
from deltaflow.bench.lmeval import lm_eval_task_config
from deltaflow.bench.raw_outputs import decoding_hash, load_model
from deltaflow.bench.run import evaluate_benchmark, generation_health
from deltaflow.bench.scoring.metrics import score_generations
from deltaflow.bench.spec import BenchmarkSpec
from deltaflow.errors import DeltaflowError
from deltaflow.io import write_jsonl


def _gen_spec(**over):
    spec = {
        "name": "mine",
        "task": "mine",
        "axis": "target",
        "output_type": "generate_until",
        "metric": "exact_match",
        "decoding": {"max_gen_toks": 16, "until": ["\n"]},
    }
    return BenchmarkSpec.from_dict({**spec, **over})


def test_numeric_match_reads_numbers_not_strings():
    spec = _gen_spec(
        match="numeric",
        metric="numeric_match",
        extract={"regex": "(-?[$0-9.,]+)", "group_select": -1},
        ignore=["\\$"],
    )
    out = score_generations(
        spec, {"answer": "1200"}, ["It costs $1,200.00", "1200.5", "about 1,200.", "none"]
    )
    assert out["extracted"] == ["$1,200.00", "1200.5", "1,200.", "[invalid]"]
    assert out["correct"] == [1.0, 0.0, 1.0, 0.0]
    assert out["numeric_match"] == 1.0 and "exact_match" not in out
    tolerant = spec.replace(numeric_tolerance=0.5)
    assert score_generations(tolerant, {"answer": "1200"}, ["1200.5"])["correct"] == [1.0]
    # exact match on the same strings: "1,200.00" is not "1200"
    exact = spec.replace(match="exact", metric="exact_match")
    assert score_generations(exact, {"answer": "1200"}, ["It costs $1,200.00"])["correct"] == [0.0]
    with pytest.raises(DeltaflowError, match="target 'twelve' is not a number"):
        score_generations(spec, {"answer": "twelve"}, ["12"])


def test_contains_match_is_case_insensitive_and_not_empty():
    spec = _gen_spec(match="contains", metric="contains_match")
    out = score_generations(spec, {"answer": "Paris"}, ["The capital is paris.", "Lyon", ""])
    assert out["correct"] == [1.0, 0.0, 0.0] and out["contains_match"] == 1.0
    assert score_generations(spec, {"answer": " "}, ["anything"])["correct"] == [
        0.0
    ]  # empty target never matches


def test_non_exact_match_is_scored_by_deltaflow_not_lm_eval(tmp_path):
    docs = tmp_path / "docs.jsonl"
    write_jsonl(docs, [{"doc_id": "a", "query": "1+1=", "answer": "2", "text": "1+1"}])
    exact = lm_eval_task_config(_gen_spec(), docs)
    numeric = lm_eval_task_config(_gen_spec(match="numeric", metric="numeric_match"), docs)
    assert exact["metric_list"][0]["metric"] == "exact_match"
    assert numeric["metric_list"][0]["metric"] == "bypass"
    assert numeric["generation_kwargs"] == exact["generation_kwargs"]  # same outputs, scored differently


def _cached(tmp_path, spec, responses):
    """A benchmark whose raw outputs are already in the eval cache (no model needed)."""
    docs = [
        {"doc_id": f"d{i}", "query": f"{i}+1=", "answer": str(i + 1), "text": f"{i}+1"}
        for i in range(len(responses))
    ]
    write_jsonl(tmp_path / "docs.jsonl", docs)
    raws = [
        {
            "doc_id": d["doc_id"],
            "prompt": d["query"],
            "prompt_hash": "0" * 16,
            "decoding_hash": decoding_hash(spec),
            "responses": [r],
        }
        for d, r in zip(docs, responses)
    ]
    write_jsonl(tmp_path / "cache" / "k1" / "outputs.jsonl", raws)
    return tmp_path / "docs.jsonl"


def test_mostly_empty_responses_fail_the_eval_with_the_numbers(tmp_path):
    spec = _gen_spec()
    docs = _cached(tmp_path, spec, ["", " ", "\n", "4"])
    with pytest.raises(
        DeltaflowError, match=r"'mine': .*3 of 4 responses are empty \(75.0% > max_empty_share 50%\)"
    ):
        evaluate_benchmark(None, spec, docs, cache_dir=tmp_path / "cache", key="k1", count_tokens=len)
    # a threshold raised in the config re-scores the saved outputs (no model: model=None)
    _, metrics, _ = evaluate_benchmark(
        None,
        spec.replace(guards={"max_empty_share": 0.8}),
        docs,
        cache_dir=tmp_path / "cache",
        key="k1",
        count_tokens=len,
    )
    assert metrics["generation_health"]["empty"] == 3 and metrics["score"] == 0.25


def test_responses_cut_at_max_gen_toks_fail_the_eval(tmp_path):
    spec = _gen_spec(decoding={"max_gen_toks": 4, "until": ["\n"]})
    docs = _cached(tmp_path, spec, ["1 2 3 4", "2 2 2 2 2", "3 3 3 3", "4"])
    words = lambda text: len(text.split())
    health = generation_health(spec, [{"responses": ["1 2 3 4"]}, {"responses": ["4"]}], words)
    assert health["truncated"] == 1 and health["truncated_share"] == 0.5
    with pytest.raises(
        DeltaflowError,
        match=r"3 of 4 responses were cut at max_gen_toks 4 \(75.0% > max_truncated_share 50%\)",
    ):
        evaluate_benchmark(
            None,
            spec.replace(guards={"max_truncated_share": 0.5}),
            docs,
            cache_dir=tmp_path / "cache",
            key="k1",
            count_tokens=words,
        )
    _, metrics, _ = evaluate_benchmark(
        None, spec, docs, cache_dir=tmp_path / "cache", key="k1", count_tokens=words
    )
    assert metrics["generation_health"]["truncated"] == 3  # under the default 95%: scored, and recorded


def test_a_random_model_that_never_stops_fails_the_default_guard(tmp_path):
    """The real failure mode on a real lm-eval run: the tiny random model runs every response
    to max_gen_toks (measured with its own tokenizer through lm-eval's LM)."""
    model = tmp_path / "model"
    tiny_random_model(model)
    spec = bench_spec("gsm8k", n=3, seed=1234, decoding={"max_gen_toks": 6})
    write_jsonl(tmp_path / "docs.jsonl", prepare_docs(spec))
    with pytest.raises(DeltaflowError, match=r"3 of 3 responses were cut at max_gen_toks 6"):
        evaluate_benchmark(load_model(model, batch_size=4), spec, tmp_path / "docs.jsonl")


def test_match_and_metric_that_disagree_are_config_errors(tmp_path):
    from conftest import tiny_config

    from deltaflow.config import validate_config
    from deltaflow.errors import ConfigError

    folder = tmp_path / "benchmarks"
    folder.mkdir()
    head = (
        "axis: x\nsource: {type: file, path: x.jsonl}\nloader: template\noutput_type: generate_until\n"
        "template: {doc_to_text: q, doc_to_target: a}\n"
    )
    (folder / "num.yaml").write_text(head + "match: numeric\nmetric: exact_match\n")
    (folder / "odd.yaml").write_text(head + "match: fuzzy\nmetric: exact_match\n")
    cfg = tiny_config()
    cfg["benchmark_dirs"] = [str(folder)]
    cfg["benchmarks"].update(num={"n": 2}, odd={"n": 2})
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert (
        "metric 'exact_match' does not fit match 'numeric'; a numeric match is scored as 'numeric_match'"
        in str(err.value)
    )
    assert "odd.yaml: match: 'fuzzy' is not one of ['exact', 'numeric', 'contains']" in str(err.value)
