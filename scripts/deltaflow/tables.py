"""Delta tables: every model's score per benchmark next to the base's, in points.

Built only from the per-sample records and metrics the eval stage wrote. Two
results are compared only when they cover the same doc ids with the same
decoding spec; otherwise we refuse with the difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .errors import DeltaflowError


@dataclass
class EvalResult:
    model: str
    benchmark: str
    metrics: dict
    records: list[dict]

    @property
    def doc_ids(self) -> list:
        return [r["doc_id"] for r in self.records]


def check_comparable(a: EvalResult, b: EvalResult) -> None:
    if a.metrics["decoding_hash"] != b.metrics["decoding_hash"]:
        raise DeltaflowError(
            f"{a.benchmark}: {a.model} and {b.model} were decoded differently "
            f"({a.metrics['decoding']} vs {b.metrics['decoding']}); rerun both with the same spec"
        )
    if a.doc_ids != b.doc_ids:
        only_a = sorted(set(a.doc_ids) - set(b.doc_ids))[:5]
        only_b = sorted(set(b.doc_ids) - set(a.doc_ids))[:5]
        raise DeltaflowError(
            f"{a.benchmark}: {a.model} and {b.model} were scored on different items "
            f"(only in {a.model}: {only_a}, only in {b.model}: {only_b}); rerun the evals"
        )


def delta_table(results: list[EvalResult], *, baseline: str = "base") -> pd.DataFrame:
    """One row per (model, benchmark) plus a per-model macro-average row."""
    by_key = {(r.model, r.benchmark): r for r in results}
    rows = []
    models = sorted({r.model for r in results}, key=lambda m: (m != baseline, m))
    benchmarks = sorted({r.benchmark for r in results})
    for model in models:
        for bench in benchmarks:
            res, base = by_key.get((model, bench)), by_key.get((baseline, bench))
            if res is None or base is None:
                raise DeltaflowError(f"missing eval result for ({model if res is None else baseline}, {bench})")
            check_comparable(base, res)
            rows.append({
                "model": model,
                "benchmark": bench,
                "axis": res.metrics["axis"],
                "metric": res.metrics["metric"],
                "n": res.metrics["n"],
                "base_score": round(100 * base.metrics["score"], 2),
                "score": round(100 * res.metrics["score"], 2),
                "delta_pts": round(100 * (res.metrics["score"] - base.metrics["score"]), 2),
            })
    df = pd.DataFrame(rows)
    macro = (df.groupby("model", sort=False)[["base_score", "score", "delta_pts"]].mean().round(2)
             .reset_index())
    macro["benchmark"] = "macro_avg"
    macro["axis"] = "all"
    macro["metric"] = "mean"
    macro["n"] = df.groupby("model", sort=False)["n"].sum().values
    out = pd.concat([df, macro[df.columns]], ignore_index=True)
    order = {m: i for i, m in enumerate(models)}
    out["_m"] = out["model"].map(order)
    out["_macro"] = out["benchmark"] == "macro_avg"
    return out.sort_values(["_m", "_macro", "benchmark"]).drop(columns=["_m", "_macro"]).reset_index(drop=True)


def to_markdown(df: pd.DataFrame, title: str = "Delta vs base") -> str:
    shown = df.copy()
    for col in ("base_score", "score"):
        shown[col] = shown[col].map(lambda x: f"{x:.2f}")
    shown["delta_pts"] = shown["delta_pts"].map(lambda x: f"{x:+.2f}")
    # disable_numparse keeps the explicit "+" sign and two decimals as written
    return f"## {title}\n\nScores in percent; delta in points; n = items scored.\n\n" + \
        shown.to_markdown(index=False, disable_numparse=True) + "\n"
