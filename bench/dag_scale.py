"""How long `snakemake -n` takes on generated grid configs of ~1k, ~5k and ~10k jobs.

    .venv/bin/python bench/dag_scale.py [--sizes 1000 5000 10000] [--profile]

A grid of M mixtures x R recipes (M*R runs) x B benchmarks is (1 + M*R) * B evaluations
(model x benchmark). Eval jobs are batched per model (rules/eval.smk), so that grid is
1 + M*R eval jobs. Prints evaluations, jobs, dry-run seconds for each size, and the floor: the
same command on a one-rule Snakefile (interpreter + plugin start-up, paid by every call).
--profile also writes a cProfile of the largest size to bench/dag_scale.prof.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import tiny_config

GRIDS = {1000: (10, 4, 25), 5000: (25, 4, 50), 10000: (50, 4, 50)}


def grid_config(mixtures: int, recipes: int, benchmarks: int) -> dict:
    cfg = tiny_config()
    base_mix = cfg["mixtures"]["mix_a"]
    cfg["mixtures"] = {f"mix{i}": {**base_mix, "seed": i} for i in range(mixtures)}
    recipe = cfg["recipes"]["tiny_lora"]
    cfg["recipes"] = {f"rec{j}": {**recipe, "learning_rate": 0.001 * (j + 1)} for j in range(recipes)}
    cfg["runs"] = {
        f"m{i}_r{j}": {"mixture": f"mix{i}", "recipe": f"rec{j}"}
        for i in range(mixtures)
        for j in range(recipes)
    }
    cfg["benchmarks"] = {
        f"b{k}": (
            {"task": "arithmetic", "dataset": "arithmetic", "n": 10, "seed": k}
            if k % 2
            else {"task": "arc_easy", "n": 10, "seed": k}
        )
        for k in range(benchmarks)
    }
    return cfg


def dry_run(workdir: Path, cfg: dict, profile: Path | None) -> tuple[int, float]:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = [
        str(Path(sys.executable).with_name("snakemake")),
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(path),
        "-n",
        "--quiet",
        "rules",
        "--cores",
        "2",
    ]
    if profile:
        cmd = [sys.executable, "-m", "cProfile", "-o", str(profile), *cmd]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    total = re.search(r"^total\s+(\d+)", proc.stdout + proc.stderr, re.MULTILINE)
    return int(total.group(1)) if total else -1, elapsed


def floor_seconds() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        snakefile = Path(tmp) / "Snakefile"
        snakefile.write_text('rule all:\n    output: "x"\n    shell: "touch {output}"\n')
        cmd = [
            str(Path(sys.executable).with_name("snakemake")),
            "-s",
            str(snakefile),
            "--directory",
            tmp,
            "-n",
            "--quiet",
            "rules",
            "--cores",
            "2",
        ]
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=sorted(GRIDS))
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    floor = floor_seconds()
    print(f"floor (one-rule Snakefile dry run): {floor:.1f} s", flush=True)
    for size in args.sizes:
        m, r, b = GRIDS[size]
        with tempfile.TemporaryDirectory() as tmp:
            prof = REPO / "bench/dag_scale.prof" if args.profile and size == max(args.sizes) else None
            jobs, secs = dry_run(Path(tmp), grid_config(m, r, b), prof)
        evals = (1 + m * r) * b
        print(
            f"grid {m} mixtures x {r} recipes x {b} benchmarks: evaluations={evals} jobs={jobs} "
            f"dryrun_s={secs:.1f} above_floor_s={secs - floor:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
