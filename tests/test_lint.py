"""ruff's lint and formatter over the tree, and `snakemake --lint` on the workflow: nothing to
report but its advice to give each rule a conda environment or container (tools/snakemake_lint.py
says why that one is accepted)."""

import subprocess
import sys
from pathlib import Path

from conftest import REPO, SNAKEMAKE

from tools.snakemake_lint import ACCEPTED, lints

RUFF = str(Path(sys.executable).parent / "ruff")


def test_snakemake_lint_is_clean_but_for_per_rule_environments():
    proc = subprocess.run(
        [SNAKEMAKE, "--lint", "--configfile", "tests/configs/tiny.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = proc.stdout + proc.stderr
    found = lints(out)
    assert found, out[-2000:]  # the lint ran and reported (at least the accepted advice)
    assert [lint for _, lint in found if lint not in ACCEPTED] == [], out[-4000:]


def test_ruff_lint_and_format_are_clean():
    for args in (["check", "."], ["format", "--check", "."]):
        proc = subprocess.run(
            [RUFF, *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
        )
        assert proc.returncode == 0, f"ruff {' '.join(args)} (fix with `make format`):\n{proc.stdout[-3000:]}"
