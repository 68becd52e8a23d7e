"""`snakemake --lint` on the workflow: nothing to report but its advice to give each rule a conda
environment or container. deltaflow's software is one pinned environment that `make setup`
builds (envs/requirements.txt); a per-rule conda file would be a second, untested way to
install it, so that one lint is accepted and every other one fails here."""
import re
import subprocess

from conftest import REPO, SNAKEMAKE

ACCEPTED = "Specify a conda environment or container for each rule."


def test_snakemake_lint_is_clean_but_for_per_rule_environments():
    proc = subprocess.run([SNAKEMAKE, "--lint", "--configfile", "tests/configs/tiny.yaml"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    lints = re.findall(r"^\s+\* (.+?):?$", out, flags=re.M)
    assert lints, out[-2000:]  # the lint ran and reported (at least the accepted advice)
    assert [lint for lint in lints if lint.rstrip(":") != ACCEPTED.rstrip(":")] == [], out[-4000:]
