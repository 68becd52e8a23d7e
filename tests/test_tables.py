import pandas as pd
import pytest

from deltaflow.errors import DeltaflowError
from deltaflow.tables import (
    REFERENCE,
    EvalResult,
    TableSettings,
    adjust_table,
    comparison_table,
    delta_table,
    model_matrix,
    to_html,
    to_markdown,
)

SETTINGS = TableSettings(resamples=1000, seed=0, axes={"a": "knowledge", "b": "knowledge", "c": "target"})


def result(model, bench, scores, axis="knowledge", dhash="d1", ids=None):
    ids = ids or [f"q{i}" for i in range(len(scores))]
    recs = [{"doc_id": i, "score": s} for i, s in zip(ids, scores)]
    return EvalResult(
        model,
        bench,
        {
            "score": sum(scores) / len(scores),
            "n": len(scores),
            "axis": axis,
            "metric": "acc",
            "decoding_hash": dhash,
            "decoding": {"t": dhash},
        },
        recs,
    )


FIXTURE = [
    result("base", "a", [1, 0, 0, 0]),
    result("base", "b", [1, 1, 0, 0, 0]),
    result("base", "c", [0, 0, 1]),
    result("run", "a", [1, 1, 1, 0]),
    result("run", "b", [1, 0, 0, 0, 0]),
    result("run", "c", [1, 1, 1]),
]


def rows(df, model, level, name):
    return df[(df.model == model) & (df.level == level) & (df.benchmark == name)].iloc[0]


def test_delta_rows_axis_and_macro():
    df = delta_table(FIXTURE, settings=SETTINGS)
    a = rows(df, "run", "benchmark", "a")
    assert (a.base_score, a.score, a.delta_pts, a.n) == (25.0, 75.0, 50.0, 4)
    assert (a.wrong_to_correct, a.correct_to_wrong) == (2, 0)
    assert a.mcnemar_p == pytest.approx(0.5)  # 2 * P(X = 0), X ~ Bin(2, 1/2)
    assert a.ci_low <= 50.0 <= a.ci_high
    b = rows(df, "run", "benchmark", "b")
    assert b.delta_pts == -20.0 and (b.wrong_to_correct, b.correct_to_wrong) == (0, 1)
    # knowledge axis = mean of a and b deltas; macro = mean of all three
    k = rows(df, "run", "axis", "knowledge")
    assert k.delta_pts == 15.0 and k.n == 9 and k.ci_low < 15.0 < k.ci_high
    assert (k.wrong_to_correct, k.correct_to_wrong) == (2, 1) and pd.isna(k.mcnemar_p)
    macro = rows(df, "run", "macro", "macro_avg")
    assert macro.delta_pts == pytest.approx(round((50 - 20 + 200 / 3) / 3, 2)) and macro.n == 12
    # base vs itself: zero deltas, collapsed CIs
    assert (df[df.model == "base"].delta_pts == 0).all() and (df[df.model == "base"].ci_high == 0).all()


def test_axis_row_of_a_single_benchmark_equals_the_benchmark_row():
    df = delta_table(FIXTURE, settings=SETTINGS)
    c, t = rows(df, "run", "benchmark", "c"), rows(df, "run", "axis", "target")
    assert (c.delta_pts, c.ci_low, c.ci_high) == (t.delta_pts, t.ci_low, t.ci_high)


def test_reference_rows_are_marked_and_only_average_complete_groups():
    df = delta_table(FIXTURE, settings=SETTINGS, references={"Ref-7B": {"a": 60.0, "c": 90.0}})
    ref = df[df.model == "Ref-7B"]
    assert set(ref.source) == {REFERENCE} and ref.ci_low.isna().all()
    assert rows(df, "Ref-7B", "benchmark", "a").delta_pts == 35.0  # 60 - base 25
    # knowledge needs a and b: no axis row; target has c only: an axis row; no macro (b missing)
    assert set(ref[ref.level != "benchmark"].benchmark) == {"target"}
    md = to_markdown(df, SETTINGS, title="T")
    assert "| Ref-7B*" in md and "not re-run" in md and "Δ vs best ref*" in md
    with pytest.raises(DeltaflowError, match=r"reference 'R' has scores for \['zz'\]"):
        delta_table(FIXTURE, settings=SETTINGS, references={"R": {"zz": 1.0}})


def test_markdown_and_html_render_every_model():
    df = delta_table(FIXTURE, settings=SETTINGS)
    cdf = comparison_table(FIXTURE, [("base", "run")], SETTINGS)
    md = to_markdown(df, SETTINGS, title="Delta vs base", comparisons=cdf)
    assert "### run vs base" in md and "| a (4)" in md and "+50.00" in md and "**macro avg**" in md
    assert "run_minus_base" in md and "1000 resamples, seed 0" in md
    html = to_html(df, SETTINGS, title="Delta vs base", comparisons=cdf)
    assert html.startswith("<!DOCTYPE html>") and "<table" in html and "run_minus_base" in html
    assert "**" not in html


def test_comparison_rows_seed_003_style():
    results = FIXTURE + [
        result("run2", "a", [0, 1, 1, 0]),
        result("run2", "b", [1, 1, 1, 0, 0]),
        result("run2", "c", [1, 0, 1]),
    ]
    cdf = comparison_table(results, [("run", "run2")], SETTINGS)
    a = cdf[(cdf.level == "benchmark") & (cdf.benchmark == "a")].iloc[0]
    # run [1,1,1,0] -> run2 [0,1,1,0]: left better on 1 of 4, right better on none
    assert a.comparison == "run2_minus_run" and a.n == 4
    assert (a.right_better, a.left_better, a.tie) == (0.0, 0.25, 0.75) and a.delta_pts == -25.0
    with pytest.raises(DeltaflowError, match="no eval results for 'nobody'"):
        comparison_table(results, [("run", "nobody")], SETTINGS)


def test_refuses_different_items():
    with pytest.raises(DeltaflowError, match=r"different items.*only in base: \['q9'\]"):
        delta_table(
            [result("base", "a", [1, 0], ids=["q0", "q9"]), result("run", "a", [1, 0], ids=["q0", "q1"])]
        )


def test_refuses_reordered_items():
    with pytest.raises(DeltaflowError, match="same ids in a different order"):
        delta_table(
            [result("base", "a", [1, 0], ids=["q0", "q1"]), result("run", "a", [1, 0], ids=["q1", "q0"])]
        )


def test_refuses_different_decoding():
    with pytest.raises(DeltaflowError, match="decoded differently"):
        delta_table([result("base", "a", [1, 0]), result("run", "a", [1, 0], dhash="d2")])


def test_decoding_refusal_shows_the_difference():
    greedy = result("base", "a", [1, 0])
    sampled = result("run", "a", [1, 0], dhash="d2")
    greedy.metrics["decoding"] = {"temperature": 0.0, "samples": 1, "max_gen_toks": 32}
    sampled.metrics["decoding"] = {"temperature": 0.7, "samples": 1, "max_gen_toks": 32, "top_p": 0.9}
    with pytest.raises(DeltaflowError) as err:
        delta_table([greedy, sampled])
    msg = str(err.value)
    assert "temperature: 0.0 vs 0.7" in msg and "top_p: '<unset>' vs 0.9" in msg
    assert "max_gen_toks" not in msg.split(";")[0]  # only what differs is listed first


def test_refuses_different_prompts():
    a, b = result("base", "a", [1, 0]), result("run", "a", [1, 0])
    for rec, h in zip(a.records + b.records, ["p0", "p1", "p0", "pX"]):
        rec["prompt_hash"] = h
    with pytest.raises(DeltaflowError, match=r"different prompts for item q1 \(prompt hash p1 vs pX"):
        delta_table([a, b])


def test_missing_result_is_named():
    with pytest.raises(DeltaflowError, match=r"missing eval result for \(run, b\)"):
        delta_table([result("base", "a", [1]), result("base", "b", [1]), result("run", "a", [1])])


def test_p_values_are_adjusted_across_the_table_as_statsmodels_does():
    """p_value: McNemar's exact p for a binary benchmark, else the bootstrap's two-sided p (CI
    inversion); p_adjusted: Holm (or BH) across the benchmark cells of every model vs its base,
    separately across their axis and macro rows, equal to statsmodels' multipletests on the
    same p-values. A base vs itself, a reference and a not-run row test nothing."""
    from statsmodels.stats.multitest import multipletests

    scored = [
        result("run2", "a", [1, 1, 1, 1]),
        result("run2", "b", [1, 1, 1, 0, 0]),
        result("run2", "c", [0, 1, 1]),
    ]
    scored += [
        result("base", "d", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
        result("run", "d", [0.6, 0.7, 0.8, 0.9, 1.0, 1.0]),
    ]
    scored += [result("run2", "d", [0.1, 0.25, 0.3, 0.35, 0.5, 0.6])]
    df = delta_table(FIXTURE + scored, settings=SETTINGS, references={"Ref": {"a": 60.0}})
    d = rows(df, "run", "benchmark", "d")  # not binary: the bootstrap's p, all 1000 resamples above 0
    assert pd.isna(d.mcnemar_p) and d.p_value == pytest.approx(2 / 1001)
    a = rows(df, "run", "benchmark", "a")
    assert a.p_value == a.mcnemar_p
    for method, name in (("holm", "holm"), ("bh", "fdr_bh")):
        settings = TableSettings(resamples=1000, seed=0, axes=SETTINGS.axes, adjust=method)
        adj = adjust_table(df, settings)
        for levels in (["benchmark"], ["axis", "macro"]):
            fam = adj[adj.level.isin(levels) & (adj.model != "base") & (adj.source != REFERENCE)]
            assert len(fam) == (8 if levels == ["benchmark"] else 6)
            want = multipletests(fam.p_value.astype(float).to_numpy(), method=name)[1]
            assert fam.p_adjusted.to_numpy() == pytest.approx(want)
        tested = adj.model.isin(["run", "run2"])
        assert adj[~tested].p_adjusted.isna().all() and adj[tested].p_adjusted.notna().all()
        assert list(adj.columns).index("p_adjusted") == list(adj.columns).index("p_value") + 1
        assert "8 benchmark rows (2 models: run, run2; × 4: a, b, c, d)" in settings.family
        assert f"p adj.: {'Holm' if method == 'holm' else 'Benjamini-Hochberg'} over" in to_markdown(
            adj, settings, title="T"
        )
    none = TableSettings(adjust="none")
    assert "p_adjusted" not in adjust_table(df, none) and "p adj." not in to_markdown(df, none, title="T")


def test_every_model_against_every_model():
    """The N x N matrix: each cell is the row model minus the column model, the same macro
    delta and CI the tables give that pair; its mirror reads the other way round; a pair is
    compared on the benchmarks both ran. It renders in the markdown and as an HTML heatmap."""
    third = [result("run2", b, s) for b, s in (("a", [0, 0, 0, 1]), ("b", [1, 1, 1, 1, 1]), ("c", [0, 1, 0]))]
    models = ["base", "run", "run2"]
    mdf = model_matrix(FIXTURE + third, models, SETTINGS, not_run={"run2": {"c": "not in its suite"}})
    assert len(mdf) == 6 and set(zip(mdf.row, mdf.column)) == {
        (a, b) for a in models for b in models if a != b
    }
    df = delta_table(FIXTURE, settings=SETTINGS)
    macro = rows(df, "run", "macro", "macro_avg")
    cell = mdf[(mdf.row == "run") & (mdf.column == "base")].iloc[0]
    assert (cell.delta_pts, cell.ci_low, cell.ci_high, cell.benchmarks) == (
        macro.delta_pts, macro.ci_low, macro.ci_high, "a b c",
    )  # fmt: skip
    mirror = mdf[(mdf.row == "base") & (mdf.column == "run")].iloc[0]
    assert (mirror.delta_pts, mirror.ci_low, mirror.ci_high) == (-cell.delta_pts, -cell.ci_high, -cell.ci_low)
    assert (mirror.win, mirror.loss) == (
        cell.loss,
        cell.win,
    ) and cell.win + cell.loss + cell.tie == pytest.approx(1)
    r2 = mdf[(mdf.row == "run2") & (mdf.column == "run")].iloc[0]
    assert r2.benchmarks == "a b" and r2.n == 9  # c: run2 did not run it
    md = to_markdown(df, SETTINGS, title="T", matrix=mdf)
    assert "### Every model against every model" in md and f"{cell.delta_pts:+.2f} [" in md
    html = to_html(df, SETTINGS, title="T", matrix=mdf)
    assert "Every model against every model" in html and "background: rgba(" in html
