"""Delta tables: every model vs the base (and any configured pair of models), with paired stats.

Built only from the per-sample records and metrics the eval stage wrote. Two results are
compared only when they cover the same doc ids with the same decoding spec; otherwise we
refuse with the difference.

Per (pair x benchmark): scores, delta in points, a paired bootstrap CI, McNemar's exact p
for binary metrics, flips, and the right-better / left-better / tie rates. Per axis
(benchmarks grouped by their axis) and a macro average over all benchmarks: the mean of
the benchmark deltas with a CI from the same resamples (see stats.pooled_ci).

Reference rows (external models' published scores from config) sit beside ours, marked as
not re-run: they have no per-item records, so no CI and no flips.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .bench import registry
from .bench.from_config import benchmark_axes, benchmark_dirs, benchmark_spec, recorded_metrics
from .errors import ConfigError, DeltaflowError
from .io import read_json, read_jsonl, sha256_path
from .models import ModelGraph
from .stats import (
    ADJUSTMENTS,
    Comparison,
    adjust_p,
    benchmark_seed,
    bootstrap_p,
    compare_scores,
    minimum_detectable_effect,
    pooled_ci,
)
from .suites import NOT_RUN, model_benchmarks, not_run_reason

REFERENCE = "reference (not re-run)"
EVALUATED = "evaluated"


@dataclass
class EvalResult:
    model: str
    benchmark: str
    metrics: dict
    records: list[dict]

    @property
    def doc_ids(self) -> list:
        return [r["doc_id"] for r in self.records]

    @property
    def scores(self) -> list[float]:
        return [float(r["score"]) for r in self.records]


@dataclass
class TableSettings:
    resamples: int = 1000
    seed: int = 0
    confidence: float = 0.95
    axes: dict = field(default_factory=dict)  # benchmark -> axis (config overrides applied)
    adjust: str = "holm"  # p-value adjustment across the table's cells: holm, bh or none
    family: str = ""  # the cells each adjustment ran over, in words (``adjust_table`` sets it)

    @classmethod
    def from_config(cls, tables: dict, axes: dict) -> TableSettings:
        return cls(
            resamples=tables["bootstrap_resamples"],
            seed=tables["seed"],
            confidence=tables["confidence"],
            axes=dict(axes),
            adjust=tables["adjust"],
        )


ADJUST_NAMES = {"holm": "Holm", "bh": "Benjamini-Hochberg"}
# the families the adjustment runs over: each benchmark cell, and each axis or macro row
FAMILIES = {"benchmark": ("benchmark",), "axis and macro": ("axis", "macro")}


def adjust_table(df: pd.DataFrame, settings: TableSettings) -> pd.DataFrame:
    """``p_adjusted``: every tested row's ``p_value`` adjusted across its family (the
    benchmark cells of every model vs its base; separately, their axis and macro rows) by
    ``settings.adjust``; rows that test nothing (a base vs itself, references, not run) have
    none. ``settings.family`` says which models and cells each family holds."""
    if settings.adjust == "none":
        return df
    assert settings.adjust in ADJUSTMENTS, settings.adjust
    df = df.copy()
    df.insert(df.columns.get_loc("p_value") + 1, "p_adjusted", np.nan)
    words = []
    for family, levels in FAMILIES.items():
        mask = (df.source == EVALUATED) & df.level.isin(levels) & df.p_value.notna()
        if not mask.any():
            continue
        df.loc[mask, "p_adjusted"] = adjust_p(df.loc[mask, "p_value"].astype(float), settings.adjust)
        models, cells = sorted(set(df.model[mask])), sorted(set(df.benchmark[mask]))
        words.append(
            f"{int(mask.sum())} {family} rows ({len(models)} models: {', '.join(models)}; × {len(cells)}: "
            f"{', '.join(cells)})"
        )
    settings.family = (
        f"{ADJUST_NAMES[settings.adjust]} over " + "; separately over ".join(words) if words else ""
    )
    return df


def load_eval_results(summary_paths, benchmarks=None) -> tuple[list[EvalResult], dict[str, str]]:
    """The eval results listed by models' summary.json files (``results/evals/<model>/``), each
    checked against the hashes its summary recorded, and {"<model>/<benchmark>": samples path}.
    ``benchmarks`` keeps only those."""
    results, inputs = [], {}
    for summary_path in summary_paths:
        model = Path(summary_path).parent.name
        for bench, entry in sorted(read_json(summary_path)["benchmarks"].items()):
            if benchmarks is not None and bench not in benchmarks:
                continue
            for kind in ("metrics", "samples"):
                if sha256_path(entry[kind]) != entry[f"{kind}_sha256"]:
                    raise DeltaflowError(
                        f"{entry[kind]} changed after {summary_path} was written; "
                        "rerun its eval job (snakemake --forcerun evaluate)"
                    )
            results.append(
                EvalResult(
                    model=model,
                    benchmark=bench,
                    metrics=read_json(entry["metrics"]),
                    records=read_jsonl(entry["samples"]),
                )
            )
            inputs[f"{model}/{bench}"] = entry["samples"]
    return results, inputs


def decoding_difference(a: dict, b: dict) -> str:
    keys = sorted(set(a) | set(b))
    return ", ".join(
        f"{k}: {a.get(k, '<unset>')!r} vs {b.get(k, '<unset>')!r}"
        for k in keys
        if a.get(k, "<unset>") != b.get(k, "<unset>")
    )


def check_comparable(a: EvalResult, b: EvalResult) -> None:
    """Refuse to compare results decoded differently or prompted differently, naming the
    difference (matched decoding: every compared model is decoded with one spec)."""
    if a.metrics["decoding_hash"] != b.metrics["decoding_hash"]:
        raise DeltaflowError(
            f"{a.benchmark}: {a.model} and {b.model} were decoded differently "
            f"({decoding_difference(a.metrics['decoding'], b.metrics['decoding']) or 'decoding hashes differ'}; "
            f"{a.model}: {a.metrics['decoding']}, {b.model}: {b.metrics['decoding']}); "
            "rerun both with the benchmark's decoding spec"
        )
    if a.doc_ids != b.doc_ids:
        only_a = sorted(set(a.doc_ids) - set(b.doc_ids))[:5]
        only_b = sorted(set(b.doc_ids) - set(a.doc_ids))[:5]
        detail = (
            f"only in {a.model}: {only_a}, only in {b.model}: {only_b}"
            if only_a or only_b
            else "same ids in a different order"
        )
        raise DeltaflowError(
            f"{a.benchmark}: {a.model} and {b.model} were scored on different items "
            f"({detail}); rerun the evals"
        )
    for ra, rb in zip(a.records, b.records):
        if "prompt_hash" in ra and "prompt_hash" in rb and ra["prompt_hash"] != rb["prompt_hash"]:
            raise DeltaflowError(
                f"{a.benchmark}: {a.model} and {b.model} saw different prompts for item {ra['doc_id']} "
                f"(prompt hash {ra['prompt_hash']} vs {rb['prompt_hash']}: a different chat template or "
                "prompt format); rerun both with the same tokenizer template and benchmark spec"
            )


def compare_results(left: EvalResult, right: EvalResult, settings: TableSettings) -> Comparison:
    """Right vs left on one benchmark's items, with the tables' bootstrap settings."""
    return compare_scores(
        left.scores,
        right.scores,
        resamples=settings.resamples,
        seed=benchmark_seed(settings.seed, left.benchmark),
        confidence=settings.confidence,
    )


def _index(results: list[EvalResult]) -> dict:
    return {(r.model, r.benchmark): r for r in results}


def _get(by_key: dict, model: str, bench: str) -> EvalResult:
    if (model, bench) not in by_key:
        raise DeltaflowError(f"missing eval result for ({model}, {bench})")
    return by_key[(model, bench)]


def _pts(x):
    return None if x is None else round(100 * x, 2)


def compare_models(
    results: list[EvalResult], left: str, right: str, settings: TableSettings, skip: frozenset = frozenset()
) -> list[dict]:
    """Rows for right vs left: one per benchmark, one per axis, one macro average. ``skip``: the
    benchmarks one of them did not run (its suites, deltaflow.suites); any other missing result
    is an error."""
    by_key = _index(results)
    benchmarks = sorted({r.benchmark for r in results} - skip)
    if not benchmarks:
        raise DeltaflowError(f"{right} vs {left}: no benchmark was run on both (their suites share none)")
    per_bench: dict[str, Comparison] = {}
    rows = []
    for bench in benchmarks:
        lres, rres = _get(by_key, left, bench), _get(by_key, right, bench)
        check_comparable(lres, rres)
        c = compare_results(lres, rres, settings)
        per_bench[bench] = c
        rows.append(
            _row(
                left,
                right,
                "benchmark",
                bench,
                settings.axes.get(bench, rres.metrics["axis"]),
                rres.metrics["metric"],
                [c],
                settings,
            )
        )
    groups = {}
    for bench in benchmarks:
        groups.setdefault(settings.axes.get(bench, by_key[(right, bench)].metrics["axis"]), []).append(bench)
    for axis in sorted(groups):
        rows.append(
            _row(left, right, "axis", axis, axis, "mean", [per_bench[b] for b in groups[axis]], settings)
        )
    rows.append(_row(left, right, "macro", "macro_avg", "all", "mean", list(per_bench.values()), settings))
    return rows


def _row(left, right, level, name, axis, metric, parts: list[Comparison], settings) -> dict:
    delta, lo, hi = pooled_ci(parts, settings.confidence)
    pooled = np.vstack([p.resampled for p in parts]).mean(axis=0)
    mde = minimum_detectable_effect(pooled)
    single = parts[0] if len(parts) == 1 and level == "benchmark" else None
    mean = lambda attr: sum(getattr(p, attr) for p in parts) / len(parts)
    flips = [p for p in parts if p.wrong_to_correct is not None]
    return {
        "left": left,
        "right": right,
        "level": level,
        "benchmark": name,
        "axis": axis,
        "metric": metric,
        "n": sum(p.n for p in parts),
        "left_score": _pts(mean("left_score")),
        "right_score": _pts(mean("right_score")),
        "delta_pts": _pts(delta),
        "ci_low": _pts(lo),
        "ci_high": _pts(hi),
        "mde_pts": _pts(mde),
        "right_better": round(mean("right_better"), 4),
        "left_better": round(mean("left_better"), 4),
        "tie": round(mean("tie"), 4),
        "wrong_to_correct": sum(p.wrong_to_correct for p in flips) if flips else None,
        "correct_to_wrong": sum(p.correct_to_wrong for p in flips) if flips else None,
        "mcnemar_p": single.mcnemar_p if single else None,
        # McNemar's exact p for a binary benchmark; else the bootstrap's (axis and macro rows too)
        "p_value": single.mcnemar_p if single and single.mcnemar_p is not None else bootstrap_p(pooled),
    }


DELTA_COLUMNS = [
    "model",
    "source",
    "level",
    "benchmark",
    "axis",
    "metric",
    "n",
    "base_score",
    "score",
    "delta_pts",
    "ci_low",
    "ci_high",
    "mde_pts",
    "mcnemar_p",
    "wrong_to_correct",
    "correct_to_wrong",
    "p_value",
]


def delta_table(
    results: list[EvalResult],
    *,
    baseline: str = "base",
    settings: TableSettings | None = None,
    references: dict | None = None,
    not_run: dict | None = None,
    baselines: dict | None = None,
) -> pd.DataFrame:
    """Every model vs the baseline: benchmark, axis and macro rows, then reference rows.
    ``not_run``: {model: {benchmark: reason}} for benchmarks outside a model's suites: their rows
    say so in a ``note`` column (and an axis or macro row over fewer benchmarks says which).
    ``baselines``: {model: its own baseline} where it is not ``baseline`` (a model on another base,
    base_models:; a base is its own); a ``baseline`` column then names each row's."""
    settings = settings or TableSettings()
    not_run = {m: d for m, d in (not_run or {}).items() if d}
    baselines = {m: b for m, b in (baselines or {}).items() if b != baseline}
    models = sorted({r.model for r in results} | set(not_run), key=lambda m: (m != baseline, m))
    if baseline not in models:
        raise DeltaflowError(f"no eval results for the baseline '{baseline}'")
    rows = []
    for model in models:
        missing = not_run.get(model, {})
        left = baselines.get(model, baseline)
        for r in compare_models(results, left, model, settings, frozenset(missing)):
            rows.append(
                {
                    "model": model,
                    "source": EVALUATED,
                    "level": r["level"],
                    "benchmark": r["benchmark"],
                    "axis": r["axis"],
                    "metric": r["metric"],
                    "n": r["n"],
                    "base_score": r["left_score"],
                    "score": r["right_score"],
                    "delta_pts": r["delta_pts"],
                    "ci_low": r["ci_low"],
                    "ci_high": r["ci_high"],
                    "mde_pts": r["mde_pts"],
                    "mcnemar_p": r["mcnemar_p"],
                    "wrong_to_correct": r["wrong_to_correct"],
                    "correct_to_wrong": r["correct_to_wrong"],
                    "p_value": None if model == left else r["p_value"],  # a base vs itself tests nothing
                    **({"baseline": left} if baselines else {}),
                }
            )
        rows.extend(_not_run_rows(model, missing, settings, rows))
    extra = (["note"] if not_run else []) + (["baseline"] if baselines else [])
    df = pd.DataFrame(rows, columns=DELTA_COLUMNS + extra)
    if references:
        df = pd.concat([df, reference_rows(df[df.model == baseline], references)], ignore_index=True)
    return df


def _not_run_rows(
    model: str, missing: dict, settings: TableSettings, rows: list[dict], key: str = "model"
) -> list[dict]:
    """The rows of the benchmarks ``model`` (a comparison's label with ``key="comparison"``) did
    not run, and notes on its axis and macro rows (already in ``rows``) that average fewer
    benchmarks than the base's; an axis none of whose benchmarks ran gets a "not run" row."""
    own = {"source": EVALUATED, "metric": ""} if key == "model" else {}
    out = [
        {
            key: model,
            **own,
            "level": "benchmark",
            "benchmark": b,
            "axis": settings.axes.get(b, ""),
            "note": why,
        }
        for b, why in sorted(missing.items())
    ]
    have = {r["benchmark"] for r in rows if r[key] == model and r["level"] == "axis"}
    for axis in sorted({settings.axes.get(b, "") for b in missing} - have - {""}):
        out.append({key: model, **own, "level": "axis", "benchmark": axis, "axis": axis, "note": NOT_RUN})
    for r in rows:
        if r[key] != model or r["level"] == "benchmark":
            continue
        gone = sorted(b for b in missing if r["level"] == "macro" or settings.axes.get(b) == r["benchmark"])
        if gone:
            r["note"] = f"partial: over the benchmarks run ({NOT_RUN}: {', '.join(gone)})"
    return out


def reference_rows(base_rows: pd.DataFrame, references: dict) -> pd.DataFrame:
    """External scores (percent) beside the base's; axis/macro rows only where every
    benchmark of that group has a reference score (a partial average would mislead)."""
    bench = base_rows[base_rows.level == "benchmark"].set_index("benchmark")
    rows = []
    for name in sorted(references):
        scores = references[name]
        unknown = sorted(set(scores) - set(bench.index))
        if unknown:
            raise DeltaflowError(
                f"reference '{name}' has scores for {unknown}, which are not "
                f"evaluated benchmarks ({', '.join(bench.index)})"
            )
        for level, group_of in (
            ("benchmark", lambda b: b),
            ("axis", lambda b: bench.loc[b, "axis"]),
            ("macro", lambda b: "macro_avg"),
        ):
            groups = {}
            for b in bench.index:
                groups.setdefault(group_of(b), []).append(b)
            for gname, members in sorted(groups.items()):
                if not all(b in scores for b in members):
                    continue
                score = sum(scores[b] for b in members) / len(members)
                base = bench.loc[members, "score"].mean()
                rows.append(
                    {
                        "model": name,
                        "source": REFERENCE,
                        "level": level,
                        "benchmark": gname,
                        "axis": bench.loc[members[0], "axis"] if level != "macro" else "all",
                        "metric": bench.loc[members[0], "metric"] if level == "benchmark" else "mean",
                        "n": None,
                        "base_score": round(base, 2),
                        "score": round(score, 2),
                        "delta_pts": round(score - base, 2),
                    }
                )
    return pd.DataFrame(rows, columns=DELTA_COLUMNS)


COMPARISON_COLUMNS = [
    "comparison",
    "left",
    "right",
    "level",
    "benchmark",
    "axis",
    "n",
    "left_score",
    "right_score",
    "delta_pts",
    "ci_low",
    "ci_high",
    "right_better",
    "left_better",
    "tie",
    "wrong_to_correct",
    "correct_to_wrong",
    "mcnemar_p",
]


def comparison_table(
    results: list[EvalResult], pairs: list[tuple], settings: TableSettings, not_run: dict | None = None
) -> pd.DataFrame:
    """The pairwise rows: `<right>_minus_<left>`, mean delta and win/loss/tie rates. A pair may
    name a third element, a per-item metric other than the headline (`<right>_minus_<left>@<metric>`,
    over the benchmarks whose records carry it: see metric_view). ``not_run``: {model: {benchmark:
    reason}}; a pair is compared on the benchmarks both ran."""
    not_run = not_run or {}
    models = {r.model for r in results}
    rows = []
    for left, right, *metric in pairs:
        for name in (left, right):
            if name not in models:
                raise DeltaflowError(
                    f"comparison {left} vs {right}: no eval results for '{name}'; "
                    f"evaluated models: {', '.join(sorted(models))}"
                )
        on = metric[0] if metric and metric[0] else None
        view = metric_view([r for r in results if r.model in (left, right)], on) if on else results
        label = f"{right}_minus_{left}" + (f"@{on}" if on else "")
        skip = frozenset(not_run.get(left, {})) | frozenset(not_run.get(right, {}))
        pair = [{"comparison": label, **r} for r in compare_models(view, left, right, settings, skip)]
        if skip:  # said, never dropped: the benchmarks one of them did not run (deltaflow.suites)
            who = {b: " and ".join(m for m in (left, right) if b in not_run.get(m, {})) for b in skip}
            extra = _not_run_rows(
                label, {b: f"{NOT_RUN} on {who[b]}" for b in skip}, settings, pair, "comparison"
            )
            pair += [{**r, "left": left, "right": right} for r in extra]
        rows += pair
    noted = any("note" in r for r in rows)
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS + (["note"] if noted else []))


MATRIX_COLUMNS = ["row", "column", "benchmarks", "n", "delta_pts", "ci_low", "ci_high", "win", "loss", "tie"]


def model_matrix(
    results: list[EvalResult], models: list[str], settings: TableSettings, not_run: dict | None = None
) -> pd.DataFrame:
    """Every model against every model: the row model minus the column model on the benchmarks
    both ran (the macro average of their paired deltas, with the pooled bootstrap CI, as the
    tables' macro rows), and the share of those items the row model scored higher on (win),
    lower (loss) or the same (tie). Each pair is compared once; its mirror cell is the same
    comparison read the other way."""
    not_run = not_run or {}
    rows = []
    for i, left in enumerate(models):
        for right in models[i + 1 :]:
            skip = frozenset(not_run.get(left, {})) | frozenset(not_run.get(right, {}))
            if not {r.benchmark for r in results} - skip:  # no benchmark both ran: an empty cell
                continue
            pair = compare_models(results, left, right, settings, skip)
            macro = next(r for r in pair if r["level"] == "macro")
            benches = sorted(r["benchmark"] for r in pair if r["level"] == "benchmark")
            common = {"benchmarks": " ".join(benches), "n": macro["n"]}
            rows.append({"row": right, "column": left, **common, "delta_pts": macro["delta_pts"],
                         "ci_low": macro["ci_low"], "ci_high": macro["ci_high"], "win": macro["right_better"],
                         "loss": macro["left_better"], "tie": macro["tie"]})  # fmt: skip
            rows.append({"row": left, "column": right, **common, "delta_pts": -macro["delta_pts"],
                         "ci_low": -macro["ci_high"], "ci_high": -macro["ci_low"], "win": macro["left_better"],
                         "loss": macro["right_better"], "tie": macro["tie"]})  # fmt: skip
    order = {m: k for k, m in enumerate(models)}
    df = pd.DataFrame(rows, columns=MATRIX_COLUMNS)
    return df.sort_values(["row", "column"], key=lambda c: c.map(order)).reset_index(drop=True)


def matrix_view(mdf: pd.DataFrame, models: list[str], confidence: float) -> pd.DataFrame:
    """The matrix as a table to read: Δ pts [CI] and win/loss per cell, row minus column."""
    pct = round(100 * confidence)
    cells = {(r.row, r.column): r for r in mdf.itertuples()}
    out = []
    for row in models:
        line = {f"row − column (Δ pts, {pct}% CI; win/loss)": row}
        for col in models:
            r = cells.get((row, col))
            line[col] = (
                "—"
                if row == col
                else ""
                if r is None
                else f"{r.delta_pts:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}] {r.win:.0%}/{r.loss:.0%}"
            )
        out.append(line)
    return pd.DataFrame(out)


def matrix_html(mdf: pd.DataFrame, models: list[str], confidence: float) -> str:
    """The matrix as a heatmap: green where the row model scores higher, red where lower, the
    colour's strength by the size of Δ; bold where the CI excludes zero."""
    import html

    cells = {(r.row, r.column): r for r in mdf.itertuples()}
    top = max([abs(r.delta_pts) for r in mdf.itertuples()] + [1e-9])
    head = "".join(f"<th>{html.escape(m)}</th>" for m in models)
    body = []
    for row in models:
        tds = []
        for col in models:
            r = cells.get((row, col))
            if r is None:
                tds.append("<td>—</td>" if row == col else "<td></td>")
                continue
            alpha = round(0.15 + 0.6 * abs(r.delta_pts) / top, 2)
            rgb = "40,150,60" if r.delta_pts > 0 else "200,50,50" if r.delta_pts < 0 else "160,160,160"
            text = f"{r.delta_pts:+.2f}"
            text = f"<b>{text}</b>" if r.ci_low > 0 or r.ci_high < 0 else text
            tip = f"{row} − {col}: {r.delta_pts:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}], win {r.win:.0%}, loss {r.loss:.0%}, n {r.n}"
            tds.append(f"<td style='background: rgba({rgb},{alpha})' title='{html.escape(tip)}'>{text}</td>")
        body.append(f"<tr><th>{html.escape(row)}</th>{''.join(tds)}</tr>")
    return (
        f"<table class='matrix'><tr><th>row − column</th>{head}</tr>{''.join(body)}</table>"
        f"<p class='note'>Δ pts of the row model minus the column model, the macro average over the "
        f"benchmarks both ran; bold where the {round(100 * confidence)}% paired-bootstrap CI excludes zero. "
        "Hover a cell for its CI and win/loss rates; results/tables/matrix.csv has every number.</p>"
    )


def _metric_value(rec: dict, metric: str):
    value = (rec.get("scorer") or {}).get(metric[7:]) if metric.startswith("scorer.") else rec.get(metric)
    return float(value) if isinstance(value, (int, float)) else None


def metric_view(results: list[EvalResult], metric: str) -> list[EvalResult]:
    """``results`` scored on ``metric`` instead of the headline: a per-item metric the records
    carry (pass@k, maj@k, acc_norm, ...) or a scorer's (``scorer.<name>``). Only benchmarks
    where every compared model records it for every item; none is an error naming the metric."""
    values = {(r.model, r.benchmark): [_metric_value(rec, metric) for rec in r.records] for r in results}
    usable = {
        b
        for b in {r.benchmark for r in results}
        if all(None not in v for (m, bb), v in values.items() if bb == b)
    }
    if not usable:
        recorded = sorted(
            {k for r in results for rec in r.records[:1] for k in rec if isinstance(rec[k], (int, float))}
        )
        raise DeltaflowError(
            f"comparison on metric '{metric}': no benchmark records it for every item of both models; "
            f"per-item metrics recorded: {', '.join(recorded)} (a scorer's as scorer.<name>)"
        )
    return [
        EvalResult(
            r.model,
            r.benchmark,
            {**r.metrics, "metric": metric},
            [{**rec, "score": v} for rec, v in zip(r.records, values[(r.model, r.benchmark)])],
        )
        for r in results
        if r.benchmark in usable
    ]


def gate_key(axis: str, rule: dict) -> str:
    """The delta-table row a gate reads: the axis's own (headline) row, or ``<axis>@<metric>``
    for a gate on another per-item metric (``gates.<kind>.<axis>.metric``)."""
    return f"{axis}@{rule['metric']}" if rule.get("metric") else axis


def metric_gate_rows(
    results: list[EvalResult],
    gates: dict,
    settings: TableSettings,
    baseline: str = "base",
    not_run=None,
    baselines: dict | None = None,
) -> pd.DataFrame:
    """The axis rows of the gates on a metric other than the headline (pass@k, maj@k, a scorer's):
    for every model, its axis's benchmarks re-compared with the baseline on that metric (an
    axis row named ``<axis>@<metric>``). Every benchmark of the axis must record the metric."""
    not_run = not_run or {}
    rows = []
    for kind in ("target", "guarded"):
        for axis, rule in sorted(gates.get(kind, {}).items()):
            if not rule.get("metric"):
                continue
            benches = sorted(b for b in {r.benchmark for r in results} if settings.axes.get(b) == axis)
            metric = rule["metric"]
            lacking = sorted(
                {r.benchmark for r in results if r.benchmark in benches}
                & {r.benchmark for r in results for rec in r.records if _metric_value(rec, metric) is None}
            )
            if lacking:
                raise DeltaflowError(
                    f"gates.{kind}.{axis}.metric: {', '.join(lacking)} (axis {axis}) do not record "
                    f"'{rule['metric']}' for every item of every model; gate on a metric all of the "
                    "axis's benchmarks record, or regroup them with benchmarks.<name>.axis"
                )
            view = metric_view([r for r in results if r.benchmark in benches], metric)
            own = baselines or {}
            for model in sorted({r.model for r in view}):
                left = own.get(model, baseline)
                if left == model:  # a base: nothing to gate
                    continue
                skip = frozenset(not_run.get(model, {}))
                for r in compare_models(view, left, model, settings, skip):
                    if r["level"] == "axis":
                        rows.append(_metric_gate_row(model, gate_key(axis, rule), axis, rule["metric"], r))
    return pd.DataFrame(rows, columns=DELTA_COLUMNS)


def _metric_gate_row(model: str, name: str, axis: str, metric: str, r: dict) -> dict:
    keep = ("n", "delta_pts", "ci_low", "ci_high", "mde_pts", "p_value")
    return {
        "model": model,
        "source": EVALUATED,
        "level": "axis",
        "benchmark": name,
        "axis": axis,
        "metric": metric,
        "base_score": r["left_score"],
        "score": r["right_score"],
        **{k: r[k] for k in keep},
    }


# ---- rendering -------------------------------------------------------------------------------


def _fmt(x, spec="{:.2f}"):
    return "" if x is None or pd.isna(x) else spec.format(x)


def _label(row) -> str:
    partial = " (partial)" if str(row.get("note", "") or "").startswith("partial") else ""
    if row["level"] == "benchmark":
        return f"{row['benchmark']} ({int(row['n'])})" if not pd.isna(row["n"]) else row["benchmark"]
    if row["level"] == "axis":
        return f"**axis: {row['benchmark']}{partial}**"
    return f"**macro avg{partial}**"


def _not_run(row) -> bool:
    return str(row.get("note", "") or "").startswith(NOT_RUN)


def _ordered(df: pd.DataFrame, first: tuple = ()) -> pd.DataFrame:
    order = {"benchmark": 0, "axis": 1, "macro": 2}
    return (
        df.assign(_o=df.level.map(order))
        .sort_values([*first, "_o", "axis", "benchmark"], kind="stable")
        .drop(columns="_o")
    )


def compared_models(df: pd.DataFrame, baseline: str = "base") -> list[tuple[str, str]]:
    """(model, its baseline) for every evaluated model but the bases themselves (a model on another
    base, base_models:, is compared with that base: the ``baseline`` column)."""
    own = (
        df.dropna(subset=["baseline"]).groupby("model").baseline.first().to_dict() if "baseline" in df else {}
    )
    pairs = [(m, own.get(m, baseline)) for m in df[df.source == EVALUATED].model.unique()]
    return [(m, b) for m, b in pairs if m != b]


def model_flag(df: pd.DataFrame, model: str) -> str:
    """The model's flag (e.g. a failed GGUF parity check), or ""."""
    if "flag" not in df.columns:
        return ""
    flags = df.loc[df.model == model, "flag"].dropna()
    return str(flags.iloc[0]) if len(flags) else ""


def scoreboard(df: pd.DataFrame, baseline: str = "base") -> pd.DataFrame:
    """The score board: one row per benchmark/axis/macro, a score column per model and reference."""
    refs = sorted(df[df.source == REFERENCE].model.unique())
    models = [m for m in df[df.source == EVALUATED].model.unique()]
    base = _ordered(df[df.model == baseline])
    out = pd.DataFrame({"benchmark (n)": [_label(r) for _, r in base.iterrows()]})
    for name in refs + models:
        sub = df[df.model == name].set_index(["level", "benchmark"])
        col = f"{name}*" if name in refs else (f"{name} (FLAGGED)" if model_flag(df, name) else name)
        gone = set(sub.index[sub.note.astype(str).str.startswith(NOT_RUN)]) if "note" in sub else set()
        out[col] = [
            NOT_RUN if (r.level, r.benchmark) in gone else _fmt(sub["score"].get((r.level, r.benchmark)))
            for r in base.itertuples()
        ]
    return out


def model_section(df: pd.DataFrame, model: str, confidence: float) -> pd.DataFrame:
    """One model vs base: scores, delta with CI, McNemar p, flips, and delta vs best reference."""
    rows = _ordered(df[(df.model == model) & (df.source == EVALUATED)])
    refs = df[df.source == REFERENCE].set_index(["level", "benchmark"])
    pct = round(100 * confidence)
    out = []
    for _, r in rows.iterrows():
        if _not_run(r):
            out.append({"benchmark (n)": _label(r), "base": _fmt(r.base_score), model: NOT_RUN})
            continue
        line = {
            "benchmark (n)": _label(r),
            "base": _fmt(r.base_score),
            model: _fmt(r.score),
            "Δ pts": _fmt(r.delta_pts, "{:+.2f}"),
            f"{pct}% CI": f"[{r.ci_low:+.2f}, {r.ci_high:+.2f}]",
            "MDE": _fmt(r.get("mde_pts"), "{:.2f}"),
            "McNemar p": _fmt(r.mcnemar_p, "{:.3g}"),
            **({"p adj.": _fmt(r.p_adjusted, "{:.3g}")} if "p_adjusted" in r else {}),
            "W→C / C→W": (
                ""
                if pd.isna(r.wrong_to_correct)
                else f"{int(r.wrong_to_correct)} / {int(r.correct_to_wrong)}"
            ),
        }
        if len(refs):
            key = (r.level, r.benchmark)
            best = refs["score"][refs.index == key].max() if key in refs.index else None
            line["Δ vs best ref*"] = _fmt(
                None if best is None or pd.isna(best) else r.score - best, "{:+.2f}"
            )
        out.append(line)
    return pd.DataFrame(out).fillna("")


def comparison_section(cdf: pd.DataFrame) -> pd.DataFrame:
    order = {c: i for i, c in enumerate(dict.fromkeys(cdf.comparison))}
    rows = _ordered(cdf.assign(_c=cdf.comparison.map(order)), first=("_c",))
    return pd.DataFrame(
        [
            {"comparison": r.comparison, "benchmark (n)": _label(r), "mean Δ pts": r.note}
            if _not_run(r)
            else {
                "comparison": r.comparison,
                "benchmark (n)": _label(r),
                "mean Δ pts": _fmt(r.delta_pts, "{:+.2f}"),
                "CI": f"[{r.ci_low:+.2f}, {r.ci_high:+.2f}]",
                "right better": _fmt(r.right_better, "{:.4f}"),
                "left better": _fmt(r.left_better, "{:.4f}"),
                "tie": _fmt(r.tie, "{:.4f}"),
                "shared items": int(r.n),
            }
            for _, r in rows.iterrows()
        ]
    ).fillna("")


def markdown_table(df: pd.DataFrame) -> str:
    # disable_numparse keeps the explicit "+" sign and two decimals as written
    return df.to_markdown(index=False, disable_numparse=True)


def table_notes(settings: TableSettings, has_refs: bool) -> str:
    pct = round(100 * settings.confidence)
    text = (
        f"Scores in percent; Δ in points (model − base); {pct}% CI from a paired bootstrap over "
        f"shared items ({settings.resamples} resamples, seed {settings.seed}); axis and macro "
        "rows average their benchmarks' deltas. McNemar p: exact test on the discordant "
        "items (binary metrics). W→C / C→W: items that flipped wrong→correct / correct→wrong. "
        "MDE: the smallest true Δ this n can detect (paired, two-sided α 0.05, 80% power, from the "
        "bootstrap standard error); a Δ below it is within what these items can show."
    )
    if settings.family:
        text += (
            " p: McNemar's for binary benchmarks, else the bootstrap's two-sided p (CI inversion). "
            f"p adj.: {settings.family}."
        )
    if has_refs:
        text += " \\* reference scores from config, not re-run here (no CI)."
    return text


def to_markdown(
    df: pd.DataFrame,
    settings: TableSettings,
    *,
    title: str,
    baseline: str = "base",
    comparisons: pd.DataFrame | None = None,
    matrix: pd.DataFrame | None = None,
) -> str:
    has_refs = bool((df.source == REFERENCE).any())
    parts = [
        f"## {title}",
        "",
        table_notes(settings, has_refs),
        "",
        "### Scores",
        "",
        markdown_table(scoreboard(df, baseline)),
    ]
    for model, left in compared_models(df, baseline):
        flag = model_flag(df, model)
        parts += [
            "",
            f"### {model} vs {left}",
            *(["", f"**FLAGGED: {flag}**"] if flag else []),
            "",
            markdown_table(model_section(df, model, settings.confidence)),
        ]
    if matrix is not None and len(matrix):
        names = list(dict.fromkeys([*matrix.row, *matrix.column]))
        parts += [
            "",
            "### Every model against every model",
            "",
            markdown_table(matrix_view(matrix, names, settings.confidence)),
        ]
    if comparisons is not None and len(comparisons):
        parts += [
            "",
            "### Pairwise comparisons",
            "",
            (
                "Rates are the share of shared items where the right (first-named) or left model "
                "scored higher, or both the same."
            ),
            "",
            markdown_table(comparison_section(comparisons)),
        ]
    return "\n".join(parts) + "\n"


HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0 2em; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
p.note { max-width: 60em; color: #555; }
"""


def to_html(
    df: pd.DataFrame,
    settings: TableSettings,
    *,
    title: str,
    baseline: str = "base",
    comparisons: pd.DataFrame | None = None,
    matrix: pd.DataFrame | None = None,
) -> str:
    import html

    def table(frame):
        return frame.replace(r"\*\*(.*)\*\*", r"\1", regex=True).to_html(index=False, border=0, escape=True)

    has_refs = bool((df.source == REFERENCE).any())
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='note'>{html.escape(table_notes(settings, has_refs).replace(chr(92), ''))}</p>",
        "<h2>Scores</h2>",
        table(scoreboard(df, baseline)),
    ]
    for model, left in compared_models(df, baseline):
        flag = model_flag(df, model)
        body += [
            f"<h2>{html.escape(model)} vs {html.escape(left)}</h2>",
            *([f"<p class='note'><b>FLAGGED: {html.escape(flag)}</b></p>"] if flag else []),
            table(model_section(df, model, settings.confidence)),
        ]
    if matrix is not None and len(matrix):
        names = list(dict.fromkeys([*matrix.row, *matrix.column]))
        body += ["<h2>Every model against every model</h2>", matrix_html(matrix, names, settings.confidence)]
    if comparisons is not None and len(comparisons):
        body += ["<h2>Pairwise comparisons</h2>", table(comparison_section(comparisons))]
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{HTML_STYLE}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def check_config(config: dict, *, check_files: bool):
    """Config errors in ``tables:`` and ``gates:`` (before any job): known models and
    benchmarks, gate axes some benchmark has. The axis lookups need every benchmark in the
    registry, so with an unknown one (reported by deltaflow.bench.checks) nothing is checked
    here. ``check_files``: unused (no key here names a file)."""
    known = registry.available(benchmark_dirs(config))
    if all(bench.get("task", b) in known for b, bench in config["benchmarks"].items()):
        try:
            benchmark_axes(config)
        except ConfigError:  # a registry file that fails its schema (reported by deltaflow.bench.checks)
            return
        yield from _check_tables(config)


def _check_tables(config: dict):
    """Comparisons between known models, references by known benchmarks, gates on known axes."""
    models = ModelGraph(config).names
    tables = config["tables"]
    for i, pair in enumerate(tables["comparisons"]):
        for side in ("left", "right"):
            if pair[side] not in models:
                yield (
                    f"config key 'tables.comparisons[{i}].{side}': unknown model "
                    f"'{pair[side]}'; known: {', '.join(models)}"
                )
        if pair["left"] == pair["right"]:
            yield f"config key 'tables.comparisons[{i}]': compares '{pair['left']}' with itself"
    for ref, spec in tables["references"].items():
        if ref in models:
            yield (
                f"config key 'tables.references.{ref}': the name is also an evaluated model; "
                "give the reference a distinct display name"
            )
        for b in spec["scores"]:
            if b not in config["benchmarks"]:
                yield (
                    f"config key 'tables.references.{ref}.scores.{b}': unknown benchmark; "
                    f"known: {', '.join(sorted(config['benchmarks']))}"
                )
    axes = sorted(set(benchmark_axes(config).values()))
    gates = config["gates"]
    for kind in ("target", "guarded"):
        for axis in gates[kind]:
            if axis not in axes:
                yield (
                    f"config key 'gates.{kind}.{axis}': no benchmark has axis '{axis}'; "
                    f"axes: {', '.join(axes)} (set benchmarks.<name>.axis to regroup)"
                )
    yield from _check_gate_metrics(config)
    yield from _check_comparison_metrics(config, models)
    both = sorted(set(gates["target"]) & set(gates["guarded"]))
    if both:
        yield (
            f"config key 'gates': axes {both} are both target and guarded; an axis is "
            "either improved or protected"
        )


def _check_comparison_metrics(config: dict, models: list[str]):
    """A comparison on a metric needs a benchmark that both models run and that records it
    (where the registry says what a benchmark records: lm-eval tasks, judged benchmarks and
    scorers are checked when the table is built)."""
    pairs = [(i, p) for i, p in enumerate(config["tables"]["comparisons"]) if p.get("metric")]
    if not pairs:
        return
    runs = model_benchmarks(config, models)
    recorded = {b: recorded_metrics(benchmark_spec(config, b)) for b in config["benchmarks"]}
    for i, pair in pairs:
        metric = pair["metric"]
        if metric.startswith("scorer.") or not {pair["left"], pair["right"]} <= set(runs):
            continue
        shared = [b for b in runs[pair["left"]] if b in runs[pair["right"]]]
        if any(not recorded[b] or metric in recorded[b] for b in shared):
            continue
        where = [b for b in sorted(recorded) if metric in recorded[b]]
        why = "; ".join(f"{b}: {not_run_reason(config, b)}" for b in where)
        yield (
            f"config key 'tables.comparisons[{i}].metric': no benchmark that both {pair['left']} and "
            f"{pair['right']} run records '{metric}'"
            + (f" ({why})" if why else "; no benchmark of this config records it")
        )


def _check_gate_metrics(config: dict):
    """A gate's metric must be recorded by every benchmark of its axis (where the registry says
    what a benchmark records: lm-eval tasks and scorers are checked when the tables are built)."""
    axes = benchmark_axes(config)
    for axis, rule in sorted(config["gates"]["target"].items()):
        if rule.get("adjusted") and config["tables"]["adjust"] == "none":
            yield (
                f"config key 'gates.target.{axis}.adjusted': the delta table adjusts no p-values "
                "(tables.adjust: none); set tables.adjust to holm or bh"
            )
        if rule.get("adjusted") and any(spec.get("seeds") for spec in config["runs"].values()):
            yield (
                f"config key 'gates.target.{axis}.adjusted': runs with replicate seeds are gated on their "
                "seed-averaged rows, which have no adjusted p; remove adjusted or the seeds"
            )
    for kind in ("target", "guarded"):
        for axis, rule in sorted(config["gates"][kind].items()):
            metric = rule.get("metric")
            if not metric or metric.startswith("scorer."):
                continue
            for b in sorted(b for b, a in axes.items() if a == axis):
                recorded = recorded_metrics(benchmark_spec(config, b))
                if recorded and metric not in recorded:
                    yield (
                        f"config key 'gates.{kind}.{axis}.metric': benchmark {b} (axis {axis}) does not "
                        f"record '{metric}'; it records {', '.join(recorded)}"
                    )
