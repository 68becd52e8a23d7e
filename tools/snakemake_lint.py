"""Snakemake's linter over the workflow; fails on any lint but one.

The one accepted: "Specify a conda environment or container for each rule". deltaflow's
software is one venv built by `make setup` from the pinned files in envs/ (CPU torch from this
platform's wheel first, llama.cpp's prebuilt libraries, sdists), on machines without conda or a
container runtime; a per-rule conda file would be a second, untested description of it.

    python -m tools.snakemake_lint
"""

import re
import subprocess
import sys

ACCEPTED = ("Specify a conda environment or container for each rule.",)


def lints(text: str) -> list[tuple[str, str]]:
    """(where, lint) pairs from `snakemake --lint`'s text output."""
    out, where = [], None
    for line in text.splitlines():
        if m := re.match(r"Lints for (.+):$", line):
            where = m.group(1)
        elif m := re.match(r"\s+\* (.+?):?$", line):
            out.append((where, m.group(1)))
    return out


def main() -> int:
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint"], capture_output=True, text=True, check=False
    )
    found = lints(proc.stdout + proc.stderr)
    bad = [(w, lint) for w, lint in found if lint not in ACCEPTED]
    if proc.returncode not in (0, 1) or (proc.returncode == 1 and not found):
        print(proc.stdout + proc.stderr, file=sys.stderr)
        print(f"snakemake --lint failed (exit {proc.returncode})", file=sys.stderr)
        return 1
    for w, lint in bad:
        print(f"{w}: {lint}", file=sys.stderr)
    print(f"snakemake --lint: {len(bad)} lints, {len(found) - len(bad)} accepted (no conda file per rule)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
