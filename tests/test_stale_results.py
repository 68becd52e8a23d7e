"""Results copied without Snakemake's metadata (an rsync of results/, a restored backup): each
job's record under results/.jobs/ is compared with the job now, and what differs reruns."""

import json
import shutil

import pytest
import yaml
from conftest import write_config
from test_reruns import TABLES_AND_AFTER, planned_jobs

from deltaflow.provenance import code_digest, job_record_path, params_digest, stale_reasons

MODELS = ("base", "run_a", "run_b", "run_b@step3", "run_dpo", "a_dpo_ties", "run_a.x0.5")


def test_a_record_names_the_params_and_code_that_changed(tmp_path):
    scripts = tmp_path / "scripts"
    (scripts / "deltaflow").mkdir(parents=True)
    (scripts / "deltaflow/io.py").write_text("x = 1\n")
    (scripts / "prepare.py").write_text("y = 2\n")
    record = {
        "params": params_digest([("spec", {"n": 200, "seed": 1}), ("tags", {"b", "a"})]),
        "code": code_digest([scripts / "deltaflow/io.py", scripts / "prepare.py"], scripts),
    }
    assert set(record["code"]) == {"deltaflow/io.py", "prepare.py"}
    # key order and set order do not count as a change
    assert (
        stale_reasons(record, params_digest([("spec", {"seed": 1, "n": 200}), ("tags", {"a", "b"})]), scripts)
        == []
    )
    (scripts / "prepare.py").write_text("y = 3\n")
    assert stale_reasons(
        record, params_digest([("spec", {"n": 40, "seed": 1}), ("tags", {"a", "b"})]), scripts
    ) == ["params spec", "code prepare.py"]
    assert (
        job_record_path("results", "evaluate", {"model": "run_a@step3"}).as_posix()
        == "results/.jobs/evaluate/model=run_a%40step3.json"
    )


@pytest.mark.e2e
def test_copied_results_rerun_exactly_what_the_config_changed(tiny_workflow, tmp_path):
    # a fresh checkout (the workflow files) and the finished run's results/ copied in, without
    # .snakemake/ (modification times kept, as rsync -a and cp -a do)
    wf = tmp_path / "workflow"
    shutil.copytree(tiny_workflow.wf, wf, symlinks=True)
    work = tmp_path / "work"
    shutil.copytree(tiny_workflow.work / "results", work / "results", symlinks=True)
    assert not (work / ".snakemake").exists()
    cfg_path = write_config(work, tiny_workflow.cfg)
    # the same config: every job's record matches, nothing reruns
    assert planned_jobs(work, cfg_path, wf / "Snakefile") == set()

    cfg = yaml.safe_load(yaml.safe_dump(tiny_workflow.cfg))
    cfg["benchmarks"]["arc_easy"]["n"] = 6
    cfg_path = write_config(work, cfg)
    from conftest import run_snakemake

    proc = run_snakemake(work, cfg_path, "-n", snakefile=wf / "Snakefile")
    out = proc.stdout + proc.stderr
    assert (
        "deltaflow: results/benchmarks/arc_easy/docs.jsonl, results/benchmarks/arc_easy/fewshot.jsonl, "
        "results/benchmarks/arc_easy/manifest.json (benchmark_docs job, benchmark=arc_easy) was made with "
        "other params spec than now"
    ) in out
    # the item pool does not depend on n: no mixture, adapter or benchmark_items job reruns
    assert planned_jobs(work, cfg_path, wf / "Snakefile") == {
        ("benchmark_docs", "benchmark=arc_easy"),
        *{("evaluate", f"model={m}") for m in MODELS},
        *TABLES_AND_AFTER,
    }

    run_snakemake(work, cfg_path, snakefile=wf / "Snakefile")
    md = (work / "results/tables/delta.md").read_text()
    assert "| arc_easy (6)" in md and "| arc_easy (8)" not in md
    for model in ("base", "run_a"):
        assert json.loads((work / f"results/evals/{model}/arc_easy.json").read_text())["n"] == 6
    # the other benchmarks' results came from the content-addressed cache
    assert json.loads((work / "results/evals/run_a/arithmetic.json").read_text())["cache"]["hit"] is True
    assert planned_jobs(work, cfg_path, wf / "Snakefile") == set()
