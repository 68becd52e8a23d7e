"""The workflow on a real one-node SLURM cluster (Debian slurm-wlm + munge), started by
profiles/slurm/local-cluster.sh, submitted through profiles/slurm with the executor plugin."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import time

import pytest
from conftest import REPO, SNAKEMAKE, tiny_config, write_config

pytestmark = pytest.mark.e2e
CLUSTER = REPO / "profiles/slurm/local-cluster.sh"


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0 or shutil.which("slurmctld") is None:
        pytest.skip("needs root and Debian's slurm-wlm + munge (`make test` installs them as root)")
    subprocess.run(
        [str(CLUSTER), "start"], check=True, timeout=180, stdin=subprocess.DEVNULL, capture_output=True
    )
    yield
    subprocess.run(["scancel", "--user=root"], check=False)


def slurm_cmd(workdir, cfg_path):
    return [
        SNAKEMAKE,
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(cfg_path),
        "--profile",
        str(REPO / "profiles/slurm"),
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--latency-wait",
        "5",
    ]


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def slurm_job(job_id):
    out = subprocess.run(
        ["scontrol", "show", "job", str(job_id)], capture_output=True, text=True, check=False
    ).stdout
    return dict(re.findall(r"(\w+(?:/\w+)?)=(\S+)", out))


def slurm_config() -> dict:
    """The tiny config cut to one run and two benchmarks: every kind of stage is still
    submitted (SLURM's status polling, not the work, is what a job costs here)."""
    cfg = tiny_config()
    # scheduled on the 2 GRES-declared GPUs (a multi-GPU request); runs on one CPU process here
    # (train.processes follows the GPUs on cuda only), so its outputs equal the local run's
    cfg["train"] = {"gpus": 2}
    cfg["eval"] = {**cfg["eval"], "gpus": 1}  # tiny.yaml's batch size and generation guards kept
    cfg["runs"] = {"run_a": cfg["runs"]["run_a"]}
    cfg["mixtures"] = {"mix_a": cfg["mixtures"]["mix_a"]}
    del cfg["datasets"]["dpo"]
    cfg["recipes"] = {"tiny_lora": cfg["recipes"]["tiny_lora"]}
    cfg["sweeps"] = {"run_a": [0.5]}
    cfg["merges"] = {}
    cfg["benchmarks"] = {b: cfg["benchmarks"][b] for b in ("arithmetic", "arc_easy")}
    cfg["tables"] = {"comparisons": []}
    return cfg


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("slurm_run")
    cfg = slurm_config()
    proc = subprocess.run(
        slurm_cmd(workdir, write_config(workdir, cfg)),
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    return workdir, out


def test_every_job_ran_under_slurm(slurm_run):
    _workdir, out = slurm_run
    submitted = re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_(\w+?)/", out)
    # 13 jobs: base, 2 datasets, 1 mixture, 1 adapter, 2 item pools, 2 benchmark subsets, the
    # run_a.x0.5 sweep arm (a merge), 3 evals (base, run_a, run_a.x0.5: all benchmarks each)
    assert len(submitted) == 13, out[-3000:]
    assert len({job_id for job_id, _ in submitted}) == 13
    rules = {rule for _, rule in submitted}
    assert rules == {
        "base_model",
        "dataset",
        "mixture",
        "adapter",
        "benchmark_items",
        "benchmark_docs",
        "merge_adapters",
        "evaluate",
    }
    # the seconds-long aggregation runs where snakemake runs (the Snakefile's localrules)
    local = set(re.findall(r"^localrule (\w+):", out, re.MULTILINE)) - {"all"}
    assert local == {"delta_table", "select_model", "release_check", "plots", "model_card"}, out[-3000:]


def test_gpu_rules_are_submitted_to_the_gpu_partition_with_their_gpu_count(slurm_run):
    _, out = slurm_run
    ids = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: \S*/rule_adapter/", out)
    assert ids
    job = slurm_job(ids[0])
    assert job["Partition"] == "gpu"
    assert (
        "gpu:2" in job.get("TresPerNode", "")
        or "gpu=2" in job.get("TRES", "")
        or "gpu:2" in job.get("TresPerJob", "")
    )
    ids = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: \S*/rule_evaluate/", out)
    job = slurm_job(ids[0])
    assert job["Partition"] == "gpu"
    assert (
        "gpu:1" in job.get("TresPerNode", "")
        or "gpu=1" in job.get("TRES", "")
        or "gpu:1" in job.get("TresPerJob", "")
    )
    ids = re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/rule_mixture/", out)
    assert slurm_job(ids[0])["Partition"] == "cpu"


def test_outputs_match_a_local_run(slurm_run, tiny_workflow):
    """The same data, adapter and per-item results as the local run of the tiny config (the
    session's shared run), and the same delta-table numbers for the models both have."""
    import pandas as pd

    workdir, _ = slurm_run
    local = tiny_workflow.work
    for rel in (
        "results/mixtures/mix_a/train.jsonl",
        "results/benchmarks/arc_easy/docs.jsonl",
        "results/adapters/run_a/adapter_model.safetensors",
        "results/evals/run_a/arithmetic.jsonl",
        "results/evals/run_a.x0.5/arc_easy.jsonl",
        "results/evals/base/arc_easy.jsonl",
    ):
        assert sha(workdir / rel) == sha(local / rel), rel
    cols = ["model", "benchmark", "base_score", "score", "delta_pts", "n", "ci_low", "ci_high"]
    ours, theirs = (pd.read_csv(w / "results/tables/delta.csv") for w in (workdir, local))
    rows = lambda df: df[
        df.model.isin(["run_a", "run_a.x0.5"]) & df.benchmark.isin(["arithmetic", "arc_easy"])
    ]
    a, b = (
        rows(ours)[cols].sort_values(cols[:2]).reset_index(drop=True),
        rows(theirs)[cols].sort_values(cols[:2]).reset_index(drop=True),
    )
    assert len(a) == 4
    pd.testing.assert_frame_equal(a, b, check_dtype=False)  # the local run's n has NaN (reference rows)


def test_cancelled_job_is_retried_and_leaves_no_partial_output(slurm_run, tmp_path):
    # a copy of the SLURM run: its base, data and mixture are up to date, only the adapter
    # (longer now) is submitted again
    shutil.copytree(slurm_run[0], tmp_path, dirs_exist_ok=True, symlinks=True)
    (tmp_path / "logs/adapters/run_a.log").unlink()  # the cancel below waits for this run's steps
    cfg = slurm_config()
    cfg["recipes"]["tiny_lora"]["max_steps"] = 300  # long enough (~25 s) to be cancelled mid-way
    target = "results/adapters/run_a/manifest.json"
    proc = subprocess.Popen(
        slurm_cmd(tmp_path, write_config(tmp_path, cfg)) + [target],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    cancelled = None
    deadline = time.time() + 600
    while time.time() < deadline and cancelled is None and proc.poll() is None:
        rows = subprocess.run(
            ["squeue", "-h", "-o", "%i %k %T"], capture_output=True, text=True, check=False
        ).stdout
        for line in rows.splitlines():
            job_id, comment, state = line.split()
            if comment.startswith("rule_adapter") and state == "RUNNING":
                log = tmp_path / "logs/adapters/run_a.log"
                # wait until training has really started, then cancel
                if log.exists() and "step " in log.read_text():
                    subprocess.run(["scancel", job_id], check=True)
                    cancelled = job_id
        time.sleep(1)
    out, _ = proc.communicate(timeout=900)
    assert cancelled, out[-4000:]
    assert proc.returncode == 0, out[-6000:]
    assert re.search(rf"SLURM-job '{cancelled}' failed", out)
    assert set(re.findall(r"\(log: \S*/slurm_logs/rule_(\w+?)/", out)) == {"adapter"}, out[-3000:]
    metrics = json.loads((tmp_path / "results/adapters/run_a/metrics.json").read_text())
    assert metrics["steps"] == 300
    leftovers = [p.name for p in (tmp_path / "results/adapters").iterdir() if p.name.startswith(".")]
    assert leftovers == []
