"""Replicate training seeds: a run that declares ``seeds: [0, 1, 2]`` is trained once per seed.

The run itself trains with its recipe's seed (which must be in the list); every other seed s
becomes an arm ``<run>~s<s>``: the same mixture, init_from and recipe with ``seed: s`` (recipe
``<recipe>~s<s>``, without checkpoint saves), trained, evaluated and tabled like any run. The
seed table (``results/tables/seeds.csv``) then gives, per run x benchmark (and axis, macro):
the mean delta over seeds, the seed-to-seed standard deviation of the delta, a CI that includes
seed variance (a two-level bootstrap: seeds resampled, and the shared items resampled), the
minimum detectable effect from that bootstrap's standard error, and the number of seeds.
Selection uses these rows for a run with seeds (a run, not a lucky seed), and never picks an
arm.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from .errors import DeltaflowError
from .models import SEED_ARM as ARM
from .models import is_seed_arm
from .stats import benchmark_seed, minimum_detectable_effect, percentile_ci

__all__ = ["ARM", "is_seed_arm"]  # seed arms are named by the model graph (deltaflow.models)
_CHUNK = 128


def arm_name(run: str, seed: int) -> str:
    return f"{run}~s{seed}"


def expand_seeds(config: dict) -> list[str]:
    """Add each run's seed arms (runs and recipes) to ``config`` in place; problems as text."""
    runs, recipes = config["runs"], config.get("recipes", {})
    problems = []
    for run, spec in sorted(runs.items()):
        seeds = spec.get("seeds")
        if not seeds:
            continue
        key = f"config key 'runs.{run}.seeds'"
        recipe = recipes.get(spec["recipe"])
        if recipe is None:
            continue  # an unknown recipe is reported elsewhere
        own = recipe["seed"]
        if len(set(seeds)) != len(seeds) or len(seeds) < 2:
            problems.append(f"{key}: {seeds}: list two or more different seeds")
            continue
        if own not in seeds:
            problems.append(
                f"{key}: {seeds} leaves out the recipe's own seed {own}, which the run "
                f"'{run}' itself trains with; add it (the other seeds become arms {run}~s<seed>)"
            )
            continue
        for s in seeds:
            if s == own:
                continue
            rname = f"{spec['recipe']}~s{s}"
            derived = {**copy.deepcopy(recipe), "seed": s}
            derived["save_every"] = None  # the arms' finals measure seed variance; no checkpoint arms
            recipes[rname] = derived
            runs[arm_name(run, s)] = {
                k: v
                for k, v in {
                    "mixture": spec["mixture"],
                    "recipe": rname,
                    "init_from": spec.get("init_from"),
                }.items()
                if v
            }
    return problems


def families(config: dict) -> dict[str, list[str]]:
    """run -> its models, one per seed (the run first, then its arms in seed order)."""
    out = {}
    for run, spec in sorted(config["runs"].items()):
        if spec.get("seeds"):
            own = config["recipes"][spec["recipe"]]["seed"]
            out[run] = [run] + [arm_name(run, s) for s in spec["seeds"] if s != own]
    return out


def _two_level_means(mats: list[np.ndarray], resamples: int, seed: int) -> np.ndarray:
    """Resample means of the average over benchmarks of (mean over resampled seeds of the mean
    over resampled items) of the k x n delta matrices: seed and item noise together."""
    rng = np.random.default_rng(seed)
    out = np.zeros(resamples)
    k = mats[0].shape[0]
    for start in range(0, resamples, _CHUNK):
        b = min(_CHUNK, resamples - start)
        sidx = rng.integers(0, k, size=(b, k))
        total = np.zeros(b)
        for m in mats:
            iidx = rng.integers(0, m.shape[1], size=(b, m.shape[1]))
            per_seed = np.stack(
                [m[sidx[:, j]][np.arange(b)[:, None], iidx].mean(axis=1) for j in range(k)], axis=1
            )
            total += per_seed.mean(axis=1)
        out[start : start + b] = total / len(mats)
    return out


def seed_rows(
    results,
    fams: dict[str, list[str]],
    axes: dict[str, str],
    *,
    baseline: str = "base",
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """The seed table: per run x benchmark, axis and macro (see the module docstring)."""
    by = {(r.model, r.benchmark): r for r in results}
    benchmarks = sorted({r.benchmark for r in results})
    rows = []
    for run, models in sorted(fams.items()):
        mats, seed_deltas = {}, {}
        for bench in benchmarks:
            base = by.get((baseline, bench))
            arms = [by.get((m, bench)) for m in models]
            if base is None or any(a is None for a in arms):
                missing = [m for m, a in zip(models, arms) if a is None]
                raise DeltaflowError(f"seed table: {bench} has no results for {missing or [baseline]}")
            for a in arms:
                if a.doc_ids != base.doc_ids:
                    raise DeltaflowError(
                        f"seed table: {a.model} and {baseline} scored different items on {bench}"
                    )
            mat = np.array([np.asarray(a.scores, float) - np.asarray(base.scores, float) for a in arms])
            mats[bench] = mat
            seed_deltas[bench] = mat.mean(axis=1)
        groups: dict[str, list[str]] = {}
        for bench in benchmarks:
            groups.setdefault(axes.get(bench, by[(run, bench)].metrics["axis"]), []).append(bench)
        levels = [("benchmark", b, axes.get(b, by[(run, b)].metrics["axis"]), [b]) for b in benchmarks]
        levels += [("axis", a, a, bs) for a, bs in sorted(groups.items())]
        levels.append(("macro", "macro_avg", "all", benchmarks))
        for level, name, axis, bs in levels:
            means = _two_level_means([mats[b] for b in bs], resamples, benchmark_seed(seed, f"{run}/{name}"))
            lo, hi = percentile_ci(means, confidence)
            per_seed = np.mean([seed_deltas[b] for b in bs], axis=0)
            rows.append(
                {
                    "model": run,
                    "level": level,
                    "benchmark": name,
                    "axis": axis,
                    "n": int(sum(mats[b].shape[1] for b in bs)),
                    "seeds": len(models),
                    "seed_models": " ".join(models),
                    "delta_pts": round(100 * float(per_seed.mean()), 4),
                    "seed_sd_pts": round(100 * float(per_seed.std(ddof=1)), 4),
                    "ci_low": round(100 * lo, 4),
                    "ci_high": round(100 * hi, 4),
                    "mde_pts": round(100 * minimum_detectable_effect(means), 4),
                    "per_seed_delta_pts": " ".join(f"{100 * d:+.2f}" for d in per_seed),
                }
            )
    return pd.DataFrame(rows)


def seed_markdown(df: pd.DataFrame, confidence: float) -> str:
    from .tables import markdown_table

    pct = round(100 * confidence)
    if df.empty:
        return "## Replicate seeds\n\nNo run declares `seeds:`.\n"
    out = df.copy()
    out[f"{pct}% CI (seeds + items)"] = [f"[{a:+.2f}, {b:+.2f}]" for a, b in zip(out.ci_low, out.ci_high)]
    out = out[
        [
            "model",
            "level",
            "benchmark",
            "n",
            "seeds",
            "delta_pts",
            "seed_sd_pts",
            f"{pct}% CI (seeds + items)",
            "mde_pts",
            "per_seed_delta_pts",
        ]
    ]
    out = out.rename(
        columns={
            "delta_pts": "mean Δ pts",
            "seed_sd_pts": "seed SD pts",
            "mde_pts": "MDE pts",
            "per_seed_delta_pts": "Δ per seed",
        }
    )
    for c in ("mean Δ pts", "seed SD pts", "MDE pts"):
        out[c] = [f"{v:+.2f}" if c == "mean Δ pts" else f"{v:.2f}" for v in out[c]]
    return (
        "## Replicate seeds\n\nPer run with `seeds:`, the delta vs base averaged over its seeds, the "
        f"seed-to-seed SD, a {pct}% CI from a two-level bootstrap (seeds and items resampled) and the "
        "minimum detectable effect (paired, α 0.05, 80% power) from that bootstrap.\n\n"
        + markdown_table(out)
        + "\n"
    )
