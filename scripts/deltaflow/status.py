"""What a workflow run would redo, and why, before anyone spends cluster hours on it.

Snakemake's own dry run (``snakemake -n``) decides; this reads its job blocks and sums them up
per job: the rule, its wildcards and Snakemake's reason (changed params or code, updated input
files, input files another job will update, missing outputs). ``--list-changes params``
misreports in Snakemake 9.27, so the dry run's per-job reasons are what is used.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass

from .errors import DeltaflowError


@dataclass(frozen=True)
class PlannedJob:
    rule: str
    wildcards: str
    reason: str


def parse_dry_run(text: str) -> list[PlannedJob]:
    """The jobs of a ``snakemake -n`` output (the target rule ``all`` left out)."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        m = re.search(r"^(?:local)?rule (\w+):", block.strip(), flags=re.MULTILINE)
        if not m or m.group(1) == "all":
            continue
        wc = re.search(r"^\s*wildcards: (.*)$", block, flags=re.MULTILINE)
        reason = re.search(r"^\s*reason: (.*)$", block, flags=re.MULTILINE)
        jobs.append(
            PlannedJob(
                m.group(1), wc.group(1).strip() if wc else "", reason.group(1).strip() if reason else ""
            )
        )
    return jobs


def plan(snakemake_args: list[str]) -> list[PlannedJob]:
    """Run Snakemake's dry run with ``snakemake_args`` (profile, configfile, targets...)."""
    cmd = [sys.executable, "-m", "snakemake", "-n", *snakemake_args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise DeltaflowError(f"snakemake's dry run failed ({' '.join(cmd)}):\n{out[-3000:]}")
    return parse_dry_run(out)


def format_plan(jobs: list[PlannedJob]) -> str:
    if not jobs:
        return "nothing to do: every output is up to date with its config, code and inputs"
    width = max(len(f"{j.rule} {j.wildcards}".strip()) for j in jobs)
    lines = [f"{len(jobs)} job(s) would run:"]
    for j in jobs:
        lines.append(f"  {f'{j.rule} {j.wildcards}'.strip():<{width}}  {_short_reason(j.reason)}")
    return "\n".join(lines)


def _short_reason(reason: str, files: int = 3) -> str:
    """Each clause's file list cut to its first few, with the count of the rest."""
    out = []
    for clause in reason.split("; "):
        head, sep, tail = clause.partition(": ")
        names = tail.split(", ") if sep else []
        if len(names) > files:
            clause = f"{head}: {', '.join(names[:files])} (+{len(names) - files} more)"
        out.append(clause)
    return "; ".join(out)
