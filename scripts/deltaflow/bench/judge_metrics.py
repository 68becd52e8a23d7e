"""A judged benchmark's metrics from its verdict records (deltaflow.bench.judging writes them):
the win rate or rubric score with its bootstrap CI, the pairwise rates, AlpacaEval-LC's
length-controlled win rate, the k-sample spread. Apart from the judge's prompts and parsing
(judging) so that what imports those, the training jobs' judge rewards, does not depend on the
tables' statistics."""

from __future__ import annotations

import numpy as np

from ..errors import DeltaflowError
from ..io import sha256_text
from ..stats import benchmark_seed, percentile_ci, resample_means
from .judging import headline_metric, settings
from .scoring.metrics import samples_of
from .spec import BenchmarkSpec


def _bootstrap_ci(values: np.ndarray, s: dict, name: str) -> list[float]:
    """Percentile CI of the mean score, from the tables' own bootstrap (deltaflow.stats)."""
    means = resample_means(values, s["bootstrap_resamples"], benchmark_seed(s["seed"], name))
    return list(percentile_ci(means, s["confidence"]))


def length_controlled_win_rate(
    preferences: np.ndarray, model_lengths: np.ndarray, baseline_lengths: np.ndarray
) -> float:
    """AlpacaEval-LC: a logistic regression of the (soft) preference on a model term and
    tanh(length difference / its standard deviation), fitted as AlpacaEval does (each item twice,
    labels 1 and 0 weighted by the preference; L1, C=100, no intercept), predicted with the
    length term at zero. Without length differences it is the plain win rate."""
    from sklearn.linear_model import LogisticRegression

    delta = model_lengths.astype(float) - baseline_lengths.astype(float)
    std = delta.std()
    if std == 0 or len(preferences) < 2:
        return float(preferences.mean())
    if preferences.min() == preferences.max():  # all wins or all losses: no length effect to remove
        return float(preferences.mean())
    x = np.column_stack([np.ones_like(delta), np.tanh(delta / std)])
    xx = np.vstack([x, x])
    y = np.concatenate([np.ones(len(x)), np.zeros(len(x))])
    w = np.concatenate([preferences, 1 - preferences])
    model = LogisticRegression(C=100, l1_ratio=1.0, solver="liblinear", fit_intercept=False, random_state=123)
    model.fit(xx, y, sample_weight=w)
    return float(1 / (1 + np.exp(-model.coef_[0][0])))


def judge_metrics(spec: BenchmarkSpec, records: list[dict]) -> dict:
    """Benchmark metrics of a judged eval; fails loudly when too many verdicts did not parse."""
    s = settings(spec)
    judgments = [v for r in records for v in r["verdicts"]]
    unparsed = sum(1 for v in judgments if v["outcome"] == "unparsed")
    share = unparsed / len(judgments) if judgments else 0.0
    if share > s["max_unparsed_share"]:
        example = next(v["judge_output"] for v in judgments if v["outcome"] == "unparsed")
        raise DeltaflowError(
            f"benchmark '{spec.name}': {unparsed} of {len(judgments)} judge outputs did not parse with "
            f"{s['parse']!r} ({share:.1%} > max_unparsed_share {s['max_unparsed_share']:.0%}); a win rate over "
            f"the rest would not be the benchmark's. First unparsed output: {example[:300]!r}. Use judge.mode "
            "logprob, a judge that follows the format, or a `parse` regex that fits its outputs"
        )
    scores = np.array([r["score"] for r in records], dtype=float)
    out = {
        "score": float(scores.mean()),
        "metric": headline_metric(spec),
        "samples": samples_of(spec),
        "judge": {k: v for k, v in s.items() if k != "template"},
        "judge_template_sha256": sha256_text(s["template"]),
        "judgments": len(judgments),
        "unparsed": unparsed,
        "unparsed_share": round(share, 4),
    }
    ci = _bootstrap_ci(scores, s, spec.name) if len(scores) > 1 else [out["score"], out["score"]]
    values = {out["metric"]: out["score"]}
    if s["kind"] == "pairwise":
        counted = [v for v in judgments if v["outcome"] != "unparsed"]
        first = sum(1 for v in counted if v["verdict"] == "A")
        second = sum(1 for v in counted if v["verdict"] == "B")
        ties = sum(1 for v in counted if v["verdict"] == "C")
        n = max(len(counted), 1)
        mine = np.array([r["response_chars"] for r in records])
        theirs = np.array([r["baseline_chars"] for r in records])
        values.update(
            win_rate_ci=ci,
            wins=sum(1 for v in counted if v["outcome"] == "win"),
            losses=sum(1 for v in counted if v["outcome"] == "loss"),
            ties=ties,
            left_better_rate=first / n,
            right_better_rate=second / n,
            tie_rate=ties / n,
            length_controlled_win_rate=(
                0.5 if not judgments else length_controlled_win_rate(scores, mine, theirs)
            ),
            mean_chars=float(mine.mean()),
            baseline_mean_chars=float(theirs.mean()),
        )
    else:
        ratings = np.array([r["rating"] for r in records], dtype=float)
        values.update(
            rubric_score_ci=ci,
            mean_rating=float(ratings.mean()),
            mean_rating_ci=[1 + 9 * c for c in ci],
            mean_chars=float(np.mean([r["response_chars"] for r in records])),
        )
    spreads = [r["spread"] for r in records if "spread" in r]
    if spreads:  # k samples per prompt: how much an item's samples disagree
        values.update(mean_spread=float(np.mean(spreads)), max_spread=float(np.max(spreads)))
    out["all_metrics"] = values
    return out
