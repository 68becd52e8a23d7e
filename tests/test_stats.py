"""Paired statistics against values computed by hand (and against scipy's own bootstrap)."""

import numpy as np
import pytest
from scipy import stats as sps

from deltaflow.errors import DeltaflowError
from deltaflow.stats import (
    benchmark_seed,
    compare_scores,
    mcnemar_exact,
    paired_bootstrap,
    pooled_ci,
    resample_means,
)


@pytest.mark.parametrize(
    "b, c, expected",
    [
        (0, 0, 1.0),
        (1, 6, 16 / 128),  # 2 * P(X <= 1), X ~ Bin(7, 1/2) = 2 * (1 + 7) / 128
        (0, 5, 2 / 32),  # 2 * P(X = 0), X ~ Bin(5, 1/2)
        (3, 3, 1.0),
        (2, 10, 2 * (1 + 12 + 66) / 4096),
    ],
)
def test_mcnemar_exact_by_hand(b, c, expected):
    assert mcnemar_exact(b, c) == pytest.approx(expected)
    assert mcnemar_exact(c, b) == pytest.approx(expected)


def test_bootstrap_with_fixed_seed_is_reproducible_and_matches_a_hand_rerun():
    left = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 1], float)
    right = np.array([1, 1, 1, 0, 1, 0, 1, 1, 1, 1], float)
    mean, lo, hi = paired_bootstrap(left, right, resamples=2000, seed=7)
    assert mean == pytest.approx(0.2)  # 3 wrong->right, 1 right->wrong over 10 items
    # the same draws by hand: 2000 x 10 indices from default_rng(7), in chunks of 256 rows
    rng = np.random.default_rng(7)
    d = right - left
    means = np.concatenate(
        [d[rng.integers(0, 10, size=(min(256, 2000 - s), 10))].mean(axis=1) for s in range(0, 2000, 256)]
    )
    assert (lo, hi) == (np.percentile(means, 2.5), np.percentile(means, 97.5))
    assert paired_bootstrap(left, right, resamples=2000, seed=7) == (mean, lo, hi)
    # deltas are multiples of 0.1, so the bounds are too
    assert round(lo * 10) == pytest.approx(lo * 10) and lo < 0.2 < hi


def test_bootstrap_degenerate_and_two_point_cases():
    # every item moved by the same amount: the CI collapses to that amount
    assert paired_bootstrap([0, 0, 0], [1, 1, 1], resamples=1000) == (1.0, 1.0, 1.0)
    # deltas {0, 1}: resample means are 0, .5 or 1 with probabilities 1/4, 1/2, 1/4,
    # so the 2.5th and 97.5th percentiles are 0 and 1
    assert paired_bootstrap([0, 0], [0, 1], resamples=4000, seed=1)[1:] == (0.0, 1.0)


def test_bootstrap_agrees_with_scipy_percentile_bootstrap():
    rng = np.random.default_rng(0)
    left = (rng.random(300) < 0.5).astype(float)
    right = np.where(rng.random(300) < 0.2, 1 - left, left)
    _, lo, hi = paired_bootstrap(left, right, resamples=5000, seed=3)
    ref = sps.bootstrap(
        (right - left,),
        np.mean,
        n_resamples=5000,
        method="percentile",
        confidence_level=0.95,
        rng=np.random.default_rng(3),
    ).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.01) and hi == pytest.approx(ref.high, abs=0.01)


def test_compare_scores_counts_flips_and_rates():
    c = compare_scores([1, 0, 0, 1, 0], [1, 1, 1, 0, 0], resamples=1000, seed=0, confidence=0.95)
    assert (c.wrong_to_correct, c.correct_to_wrong) == (2, 1)
    assert (c.right_better, c.left_better, c.tie) == (0.4, 0.2, 0.4)
    assert c.delta == pytest.approx(0.2) and c.mcnemar_p == pytest.approx(1.0)
    # a non-binary metric gets no McNemar and no flips
    c = compare_scores([0.5, 0.2], [0.7, 0.2], resamples=1000, seed=0, confidence=0.95)
    assert c.mcnemar_p is None and c.wrong_to_correct is None and c.right_better == 0.5


def test_pooled_ci_uses_the_same_resamples():
    a = compare_scores([0] * 4, [1] * 4, resamples=1000, seed=1, confidence=0.95)
    b = compare_scores([1] * 4, [0, 1, 1, 1], resamples=1000, seed=2, confidence=0.95)
    delta, lo, hi = pooled_ci([a, b], 0.95)
    assert delta == pytest.approx((1.0 - 0.25) / 2)
    expected = np.percentile((a.resampled + b.resampled) / 2, [2.5, 97.5])
    assert (lo, hi) == tuple(expected)
    # one part: the pooled CI is the part's own CI
    assert pooled_ci([b], 0.95)[1:] == (b.ci_low, b.ci_high)


def test_seeds_and_errors():
    assert benchmark_seed(0, "arc_easy") == benchmark_seed(0, "arc_easy") != benchmark_seed(0, "gsm8k")
    assert len(resample_means(np.ones(20000), 1000, 0)) == 1000
    with pytest.raises(DeltaflowError, match="empty"):
        resample_means(np.array([]), 10, 0)
    with pytest.raises(DeltaflowError, match="same items"):
        paired_bootstrap([1, 0], [1], resamples=1000)


def test_minimum_detectable_effect_from_the_item_variance():
    """MDE = (z_0.975 + z_0.8) x SE; the bootstrap SE of a mean of n paired deltas is sd/sqrt(n)."""
    from deltaflow.stats import MDE_Z, items_needed, minimum_detectable_effect

    rng = np.random.default_rng(0)
    left = rng.integers(0, 2, 400).astype(float)
    right = rng.integers(0, 2, 400).astype(float)
    c = compare_scores(left, right, resamples=4000, seed=0, confidence=0.95)
    expected = MDE_Z * (right - left).std(ddof=1) / np.sqrt(400)
    assert minimum_detectable_effect(c.resampled) == pytest.approx(expected, rel=0.05)
    assert items_needed(25, 12.0, 2.0) == 900 and items_needed(25, 1.0, 0) is None
