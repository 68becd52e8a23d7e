"""The same models and benchmarks in two result trees, compared item by item:
``deltaflow compare --against <results dir | git revision>``.

Each (model, benchmark) evaluated in both trees is a paired comparison over its items (this
tree minus the other), with the tables' own statistics (``stats.compare_scores``: the mean
delta with its bootstrap CI, McNemar's p and the flips) and the tables' own refusals
(``tables.check_comparable``: other items, another decoding or other prompts). By default only
the cells whose per-item scores changed are listed, as ``dvc metrics diff`` lists changed
metrics; a cell evaluated in one tree only is listed too (said, never dropped).

The other tree is a results directory, or a git revision of this repository whose commit
tracks ``results/`` (``git archive``): e.g. today's results against last week's commit.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from .errors import DeltaflowError
from .tables import EvalResult, TableSettings, check_comparable, compare_results, load_eval_results

DIFF_COLUMNS = [
    "model",
    "benchmark",
    "metric",
    "n",
    "against",
    "here",
    "delta_pts",
    "ci_low",
    "ci_high",
    "mcnemar_p",
    "changed_items",
    "status",
]


def tree_results(results_dir: Path) -> list[EvalResult]:
    """Every evaluated and judged result of the tree at ``results_dir`` (checked against the
    hashes its summaries recorded); its summaries name files relative to its parent."""
    results_dir = Path(results_dir).resolve()
    summaries = sorted(results_dir.glob("evals/*/summary.json")) + sorted(
        results_dir.glob("judged/*/summary.json")
    )
    if not summaries:
        raise DeltaflowError(
            f"no evals/*/summary.json under {results_dir}; is it a deltaflow results directory?"
        )
    cwd = Path.cwd()
    os.chdir(results_dir.parent)
    try:
        results, _ = load_eval_results(summaries)
    finally:
        os.chdir(cwd)
    return results


@contextlib.contextmanager
def other_tree(against: str, repo: Path) -> Iterator[Path]:
    """The results directory ``against`` names: a directory, or ``results/`` as a git revision
    of ``repo`` tracks it (extracted to a temporary directory for the comparison)."""
    path = Path(against)
    if path.is_dir():
        yield path / "results" if (path / "results/evals").is_dir() else path
        return
    rev = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{against}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if rev.returncode != 0:
        raise DeltaflowError(f"--against {against}: neither a results directory nor a git revision of {repo}")
    with tempfile.TemporaryDirectory(prefix="deltaflow-against-") as tmp:
        archive = Path(tmp) / "results.tar"
        out = subprocess.run(
            [
                "git",
                "-C",
                str(repo),
                "archive",
                "--format=tar",
                "-o",
                str(archive),
                rev.stdout.strip(),
                "results/",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise DeltaflowError(
                f"--against {against}: that commit tracks no results/ ({out.stderr.strip()}); give the "
                "results directory of that experiment instead"
            )
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp) / "results"


def diff_trees(
    against: list[EvalResult],
    here: list[EvalResult],
    settings: TableSettings,
    *,
    models: list[str] | None = None,
    benchmarks: list[str] | None = None,
    every_cell: bool = False,
) -> pd.DataFrame:
    """One row per (model, benchmark): here minus against, paired over the items (see the
    module). Unchanged cells only with ``every_cell``."""
    before = {(r.model, r.benchmark): r for r in against}
    after = {(r.model, r.benchmark): r for r in here}
    rows = []
    for model, bench in sorted(set(before) | set(after)):
        if (models and model not in models) or (benchmarks and bench not in benchmarks):
            continue
        cell = {"model": model, "benchmark": bench}
        if (model, bench) not in before or (model, bench) not in after:
            side = "here" if (model, bench) in after else "against"
            r = after.get((model, bench)) or before[(model, bench)]
            rows.append({**cell, "metric": r.metrics.get("metric"), "n": len(r.records),
                         side: round(100 * r.metrics["score"], 2), "status": f"only {side}"})  # fmt: skip
            continue
        a, b = before[(model, bench)], after[(model, bench)]
        # the tables' own refusals, naming the two trees
        check_comparable(_named(a, f"{model} (--against)"), _named(b, f"{model} (here)"))
        comp = compare_results(a, b, settings)
        changed = sum(x != y for x, y in zip(a.scores, b.scores, strict=True))
        if not changed and not every_cell:
            continue
        rows.append(
            {
                **cell,
                "metric": b.metrics.get("metric"),
                "n": comp.n,
                "against": round(100 * comp.left_score, 2),
                "here": round(100 * comp.right_score, 2),
                "delta_pts": round(100 * comp.delta, 2),
                "ci_low": round(100 * comp.ci_low, 2),
                "ci_high": round(100 * comp.ci_high, 2),
                "mcnemar_p": comp.mcnemar_p,
                "changed_items": changed,
                "status": "changed" if changed else "unchanged",
            }
        )
    return pd.DataFrame(rows, columns=DIFF_COLUMNS)


def _named(r: EvalResult, name: str) -> EvalResult:
    return EvalResult(model=name, benchmark=r.benchmark, metrics=r.metrics, records=r.records)
