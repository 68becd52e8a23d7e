"""The bench scripts that need no demo outputs run end to end on a tiny shape (their numbers are
measured by hand and recorded in bench/README.md, not asserted here)."""
import os
import subprocess
import sys

from conftest import REPO


def test_train_shapes_bench_runs_on_the_tiny_shape():
    out = subprocess.run([sys.executable, str(REPO / "bench/train_shapes.py"), "--shape", "tiny", "--steps", "4",
                          "--batch-size", "4", "--device", "cpu"], capture_output=True, text=True, timeout=600,
                         cwd=REPO, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    lora = next(line for line in lines if line.strip().startswith("lora:"))
    assert "tokens/s" in lora and "precision fp32" in lora and float(lora.split()[1]) > 0
    assert any("qlora: skipped (QLoRA's 4-bit base needs CUDA" in line for line in lines)
