"""The bench scripts that need no demo outputs run end to end on a tiny shape (their numbers are
measured by hand and recorded in bench/README.md, not asserted here)."""

import os
import subprocess
import sys

import pytest
from conftest import REPO


def test_memory_plan_counts_the_adapter_exactly_from_the_shapes():
    """The 0.5B shape on the meta device: LoRA r=8 on all linear layers of 24 Qwen2 layers is
    r x (in + out) per projection, which the printed trainable count must equal."""
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench/memory_plan.py"),
            "--shape",
            "qwen2.5-0.5b",
            "--method",
            "lora",
            "--r",
            "8",
            "--gpu-gb",
            "24",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    h, i, kv, layers = 896, 4864, 2 * 64, 24
    per_layer = 8 * ((h + h) + 2 * (h + kv) + (h + h) + 2 * (h + i) + (i + h))  # q, k, v, o, gate, up, down
    assert f"lora r=8 all-linear: {per_layer * layers / 1e6:.1f}M trainable" in out.stdout
    assert "FSDP full_shard x2" in out.stdout and "train: {device: cuda, gpus: 1}" in out.stdout


@pytest.mark.e2e  # subprocess model loads and trainings: the full suite's tier
def test_gpu_check_script_runs_its_cpu_sized_smoke_path():
    """bench/gpu_check.sh --smoke: the GPU script's steps on the tiny shape on CPU (no vLLM, no
    workflow run), so the script a lent GPU runs is known to work before one is lent."""
    out = subprocess.run(
        ["bash", str(REPO / "bench/gpu_check.sh"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
        check=False,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    for line in (
        "ours / bare TRL: tokens/s",
        "packed / unpacked: tokens/s",
        "hf: load",
        "gpu_check: done (cpu)",
    ):
        assert line in out.stdout, out.stdout[-3000:]
    # bench/train_shapes.py's arms: ours in fp32 on the CPU, QLoRA skipped with the reason
    lines = out.stdout.splitlines()
    lora = next(line for line in lines if line.strip().startswith("lora:"))
    assert "tokens/s" in lora and "precision fp32" in lora and float(lora.split()[1]) > 0
    assert any("qlora: skipped (QLoRA's 4-bit base needs CUDA" in line for line in lines)
