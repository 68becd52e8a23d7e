"""Paired statistics for comparing two models on the same items.

- ``paired_bootstrap``: percentile confidence interval of the mean per-item delta.
- ``mcnemar_exact``: McNemar's exact test for binary metrics (scipy's binomial test on the
  discordant pairs, which is what "exact McNemar" is).
- ``compare_scores``: both of these plus flips and seed-003 style win/loss/tie rates.

Why the bootstrap is numpy and not ``scipy.stats.bootstrap``: a benchmark's CI and the
axis/macro CIs that contain it must come from the *same* resamples (otherwise an axis CI
can disagree with its only benchmark's CI), and scipy draws fresh resamples on each call
without exposing them. ``resample_means`` is the one place resamples are drawn; it is
checked against scipy's percentile bootstrap in tests/test_stats.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .errors import DeltaflowError

# resamples are drawn in chunks so a 14k-item benchmark x 10k resamples stays under ~100 MB
_CHUNK = 256


def benchmark_seed(seed: int, name: str) -> int:
    """A seed per (global seed, benchmark): stable across runs, independent between benchmarks."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")


def resample_means(deltas: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Means of ``resamples`` bootstrap resamples (with replacement) of ``deltas``."""
    deltas = np.asarray(deltas, dtype=float)
    if deltas.size == 0:
        raise DeltaflowError("cannot bootstrap an empty set of items")
    rng = np.random.default_rng(seed)
    out = np.empty(resamples)
    for start in range(0, resamples, _CHUNK):
        stop = min(start + _CHUNK, resamples)
        idx = rng.integers(0, deltas.size, size=(stop - start, deltas.size))
        out[start:stop] = deltas[idx].mean(axis=1)
    return out


def percentile_ci(means: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1 - confidence) / 2
    lo, hi = np.percentile(means, [100 * alpha, 100 * (1 - alpha)])
    return float(lo), float(hi)


def paired_bootstrap(
    left, right, *, resamples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float, float]:
    """(mean delta, ci_low, ci_high) of right - left over paired items."""
    left, right = np.asarray(left, dtype=float), np.asarray(right, dtype=float)
    if left.shape != right.shape:
        raise DeltaflowError(
            f"paired bootstrap needs the same items on both sides ({left.size} vs {right.size})"
        )
    d = right - left
    lo, hi = percentile_ci(resample_means(d, resamples, seed), confidence)
    return float(d.mean()), lo, hi


def mcnemar_exact(wrong_to_correct: int, correct_to_wrong: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pair counts."""
    from scipy.stats import binomtest  # here: scipy.stats costs every config check ~1.5 s to import

    n = wrong_to_correct + correct_to_wrong
    if n == 0:
        return 1.0
    return float(binomtest(min(wrong_to_correct, correct_to_wrong), n, 0.5).pvalue)


def is_binary(*arrays) -> bool:
    return all(np.isin(np.asarray(a, dtype=float), (0.0, 1.0)).all() for a in arrays)


@dataclass
class Comparison:
    """right vs left on one benchmark's shared items (scores are fractions, not points)."""

    n: int
    left_score: float
    right_score: float
    delta: float
    ci_low: float
    ci_high: float
    right_better: float  # fraction of items where right scored higher (with left_better and tie: the pairwise win/loss/tie rates)
    left_better: float
    tie: float
    wrong_to_correct: int | None  # binary metrics only
    correct_to_wrong: int | None
    mcnemar_p: float | None
    resampled: np.ndarray  # the bootstrap means, reused for axis and macro CIs


def compare_scores(left, right, *, resamples: int, seed: int, confidence: float) -> Comparison:
    left, right = np.asarray(left, dtype=float), np.asarray(right, dtype=float)
    d = right - left
    means = resample_means(d, resamples, seed)
    lo, hi = percentile_ci(means, confidence)
    binary = is_binary(left, right)
    w2c = int(((left == 0) & (right == 1)).sum()) if binary else None
    c2w = int(((left == 1) & (right == 0)).sum()) if binary else None
    return Comparison(
        n=int(d.size),
        left_score=float(left.mean()),
        right_score=float(right.mean()),
        delta=float(d.mean()),
        ci_low=lo,
        ci_high=hi,
        right_better=float((d > 0).mean()),
        left_better=float((d < 0).mean()),
        tie=float((d == 0).mean()),
        wrong_to_correct=w2c,
        correct_to_wrong=c2w,
        mcnemar_p=mcnemar_exact(w2c, c2w) if binary else None,
        resampled=means,
    )


# z_{1-alpha/2} + z_{power} for a two-sided test at alpha 0.05 with 80% power
MDE_Z = 1.959964 + 0.841621


def minimum_detectable_effect(resampled_means: np.ndarray) -> float:
    """The smallest true delta this comparison would detect (paired, two-sided alpha 0.05, 80%
    power): (z_0.975 + z_0.8) x the standard error of the mean delta, the standard error read
    from the bootstrap means (the item-level variance of the paired deltas; for an axis or the
    macro average, of their average). A delta claimed below it is within what n items can show."""
    return float(MDE_Z * np.std(resampled_means, ddof=1)) if len(resampled_means) > 1 else 0.0


def items_needed(n: int, have: float, want: float) -> int | None:
    """Items needed to shrink a half-width or MDE of ``have`` to ``want`` (both scale as
    1/sqrt(n)); None when ``want`` is not positive."""
    if want <= 0:
        return None
    return int(np.ceil(n * (have / want) ** 2))


def bootstrap_p(means: np.ndarray) -> float:
    """Two-sided p of a zero mean delta from its paired-bootstrap means, by inverting the
    percentile CI (the largest 1 - confidence whose CI excludes 0), with the +1 correction that
    keeps it above zero: (1 + resamples on the far side of 0) / (1 + resamples), doubled."""
    far = min(int((means <= 0).sum()), int((means >= 0).sum()))
    return min(1.0, 2 * (far + 1) / (means.size + 1))


# p-value adjustments across a table's cells (statsmodels.stats.multitest.multipletests names)
ADJUSTMENTS = {"holm": "holm", "bh": "fdr_bh"}


def adjust_p(pvalues, method: str) -> np.ndarray:
    """``pvalues`` adjusted for multiple comparisons: Holm (family-wise error) or
    Benjamini-Hochberg (false discovery rate), by statsmodels' ``multipletests``."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    if p.size == 0:
        return p
    return multipletests(p, method=ADJUSTMENTS[method])[1]


def pooled_ci(parts: list[Comparison], confidence: float) -> tuple[float, float, float]:
    """Mean of the parts' deltas (a macro average) with a CI from their shared resamples.

    Each benchmark was resampled independently over its own items, so resample i of the
    average is the average of the parts' resample i.
    """
    if not parts:
        raise DeltaflowError("no benchmarks to average")
    stacked = np.vstack([p.resampled for p in parts])
    lo, hi = percentile_ci(stacked.mean(axis=0), confidence)
    return float(np.mean([p.delta for p in parts])), lo, hi
