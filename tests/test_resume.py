"""A training job killed with SIGKILL resumes from its last checkpoint when Snakemake reruns it."""

import json
import os
import signal
import subprocess
import time

import pytest
from conftest import SNAKEMAKE, copy_run, write_config

pytestmark = pytest.mark.e2e
TARGET = "results/adapters/run_a/manifest.json"


def test_kill_9_mid_training_then_rerun_resumes(tiny_workflow, tmp_path):
    # two copies of the shared run (base, data and mixtures done): only run_a retrains, longer
    runs = {name: copy_run(tiny_workflow, tmp_path / name) for name in ("killed", "clean")}
    for run in runs.values():
        run.cfg["recipes"]["tiny_lora"].update(max_steps=40, resume_every=5, save_every=5, logging_steps=1)
        write_config(run.work, run.cfg)
    killed, clean = runs["killed"].work, runs["clean"].work
    # --retries 1: Snakemake restarts a failed job once, as the profiles do (restart-times)
    cmd = [
        SNAKEMAKE,
        "-s",
        str(runs["killed"].snakefile),
        "--directory",
        str(killed),
        "--configfile",
        str(runs["killed"].cfg_path),
        "--cores",
        "2",
        "--retries",
        "1",
        TARGET,
    ]
    log = open(tmp_path / "snakemake.out", "w")  # noqa: SIM115 (the killed run's log, read after)
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1"),
    )
    resume = killed / "results/adapters/.resume/run_a"
    deadline = time.time() + 600
    try:
        while time.time() < deadline:
            steps = [
                int(p.name.split("-")[1])
                for p in resume.glob("checkpoint-*")
                if (p / "trainer_state.json").exists()
            ]
            if steps and max(steps) >= 10:
                break
            assert proc.poll() is None, "the training finished before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("no trainer checkpoint appeared")
        # SIGKILL the training job itself (as an OOM killer or a lost node would): it gets no
        # chance to clean up; nothing half-written may look complete
        job = subprocess.run(
            ["pgrep", "-s", str(proc.pid), "-f", r"adapter\.py"], capture_output=True, text=True, check=False
        ).stdout.split()
        assert job, "no training process found"
        for pid in job:
            os.kill(int(pid), signal.SIGKILL)
        assert not (killed / TARGET).exists()
        assert proc.wait(timeout=600) == 0, (tmp_path / "snakemake.out").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    metrics = json.loads((killed / "results/adapters/run_a/metrics.json").read_text())
    assert metrics["steps"] == 40 and metrics["resumed_from_step"] >= 10
    assert "resuming from step" in (killed / "logs/adapters/run_a.log").read_text()
    assert not resume.exists()  # removed once the adapter is in place
    # checkpoint arms saved before the kill survive the resume
    assert sorted(int(d.name[4:]) for d in (killed / "results/adapters/run_a/checkpoints").iterdir()) == list(
        range(5, 40, 5)
    )
    assert [c["step"] for c in metrics["checkpoints"]] == list(range(5, 40, 5))
    # same data order and RNG: the resumed steps' losses match an uninterrupted run's
    runs["clean"].snakemake(TARGET)
    ref = json.loads((clean / "results/adapters/run_a/metrics.json").read_text())
    assert ref["resumed_from_step"] is None
    after = {c["step"]: c["loss"] for c in metrics["loss_curve"]}
    expected = {c["step"]: c["loss"] for c in ref["loss_curve"] if c["step"] in after}
    # every step after the resume point was logged again (how far the job got before the kill
    # depends on the machine's load), and each loss equals the uninterrupted run's
    assert len(after) == 40 - metrics["resumed_from_step"] and after == pytest.approx(
        expected, rel=1e-4, abs=1e-5
    )


def test_a_resume_folder_for_other_inputs_is_discarded(tmp_path):
    from deltaflow.training.resume import prepare_resume_dir

    d = tmp_path / "r"
    (d / "checkpoint-5").mkdir(parents=True)
    (d / "checkpoint-5/trainer_state.json").write_text("{}")
    (d / "key.txt").write_text("old")
    assert prepare_resume_dir(d, "old") == 5
    assert prepare_resume_dir(d, "new") is None and not (d / "checkpoint-5").exists()


def test_a_checkpoint_the_kill_cut_short_is_never_resumed(tmp_path):
    """A kill during a save leaves checkpoint-<N> without trainer_state.json: it is removed, and
    training resumes from the newest complete one (HF's own choice would be the newest folder)."""
    from deltaflow.training.resume import prepare_resume_dir

    d = tmp_path / "r"
    (d / "checkpoint-10").mkdir(parents=True)
    (d / "checkpoint-10/trainer_state.json").write_text("{}")
    (d / "checkpoint-15").mkdir()
    (d / "checkpoint-15/adapter_model.safetensors").write_bytes(b"partial")
    (d / "key.txt").write_text("k")
    assert prepare_resume_dir(d, "k") == 10
    assert not (d / "checkpoint-15").exists() and (d / "checkpoint-10").exists()
