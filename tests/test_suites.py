"""Suites: benchmarks that run on some models only, shown as "not run", never as a blank; gates
on a metric other than the headline."""

import json

import pandas as pd
import pytest
from conftest import REPO, config_errors, copy_run, tiny_config, write_config
from test_tables import SETTINGS, result
from test_tracking import read_in_process

from deltaflow.config import validate_config
from deltaflow.errors import DeltaflowError
from deltaflow.models import ModelGraph
from deltaflow.selection import select
from deltaflow.suites import finalist_benchmarks, finalists, model_benchmarks, not_run_reason
from deltaflow.tables import comparison_table, delta_table, metric_gate_rows, to_markdown


def _plan(cfg, baselines=None):
    validate_config(cfg)
    return model_benchmarks(cfg, ModelGraph(cfg).names, baselines)


def test_a_suite_picks_models_by_name_and_pattern_and_the_base_runs_everything():
    cfg = tiny_config()
    cfg["suites"] = {"extended": ["run_a", "*.x0.5"]}
    cfg["benchmarks"]["gsm8k"]["suite"] = "extended"
    cfg["benchmarks"]["arc_easy"]["models"] = ["run_b*"]  # the run and its checkpoint
    # run_a vs run_b on acc_norm (only arc_easy records it) would now compare nothing
    cfg["tables"]["comparisons"] = [c for c in cfg["tables"]["comparisons"] if c.get("metric") != "acc_norm"]
    plan = _plan(cfg)
    assert plan["base"] == ["arc_easy", "arithmetic", "gsm8k"]
    assert plan["run_a"] == plan["run_a.x0.5"] == ["arithmetic", "gsm8k"]
    assert plan["run_b"] == plan["run_b@step3"] == ["arc_easy", "arithmetic"]
    assert plan["run_dpo"] == ["arithmetic"]
    # a pairwise judged benchmark's baseline runs it too
    assert "gsm8k" in _plan(cfg, {"gsm8k": "run_dpo"})["run_dpo"]
    assert not_run_reason(cfg, "gsm8k") == "not run: gsm8k runs only on the models of suite 'extended'"


def test_replicate_seed_arms_go_with_their_run():
    cfg = tiny_config()
    cfg["runs"]["run_a"]["seeds"] = [0, 1]
    cfg["benchmarks"]["gsm8k"]["models"] = ["run_a"]
    plan = _plan(cfg)
    arms = [m for m in plan if m.startswith("run_a~s")]
    assert arms and all("gsm8k" in plan[m] for m in arms)


def test_suite_mistakes_are_config_errors():
    cfg = tiny_config()
    cfg["suites"] = {"extended": ["run_zz*"], "unused": ["run_a"]}
    cfg["benchmarks"]["gsm8k"]["suite"] = "extended"
    cfg["benchmarks"]["arc_easy"]["suite"] = "nope"
    cfg["benchmarks"]["arithmetic"].update(suite="extended", models=["run_a"])
    err = config_errors(cfg)
    assert "'suites.extended[0]': 'run_zz*' names or matches no model" in err
    assert "'suites.unused': no benchmark uses this suite" in err
    assert "'benchmarks.arc_easy.suite': unknown suite 'nope'" in err
    assert "'benchmarks.arithmetic': give suite or models, not both" in err


def test_a_model_that_runs_nothing_and_seeds_outside_a_suite_are_refused():
    cfg = tiny_config()
    for bench in cfg["benchmarks"].values():
        bench["models"] = ["run_a*"]
    cfg["runs"]["run_a"]["seeds"] = [0, 1]
    cfg["benchmarks"]["gsm8k"]["models"] = ["run_b"]
    err = config_errors(cfg)
    assert "config key 'suites': model 'run_dpo' runs no benchmark" in err
    assert "'runs.run_a.seeds': replicate seeds with benchmarks outside the run's suites (gsm8k)" in err


def test_a_finalists_suite_runs_on_the_bases_only_before_the_selection():
    cfg = tiny_config()
    cfg["suites"] = {"final": {"finalists": 2}}
    cfg["benchmarks"]["gsm8k"]["suite"] = "final"
    cfg["gates"]["guarded"]["math"] = {"tolerance_pts": 5}  # gsm8k's axis
    assert (
        "'benchmarks.gsm8k.suite': suite 'final' runs on the finalists, after the selection, and "
        "gates.guarded.math gates axis 'math' with it"
    ) in config_errors(cfg)
    del cfg["gates"]["guarded"]["math"]
    plan = _plan(cfg)
    assert "gsm8k" in plan["base"] and not any("gsm8k" in plan[m] for m in plan if m != "base")
    assert finalist_benchmarks(cfg) == {"gsm8k": 2}
    assert not_run_reason(cfg, "gsm8k").startswith(
        "not run here: gsm8k runs on the finalists of suite 'final' (the chosen model and its 2 runners-up)"
    )
    cfg["benchmarks"]["style"] = {
        "task": "writingbench_en",
        "n": 2,
        "suite": "final",
        "judge": {"kind": "rubric", "model": "base"},
    }
    assert (
        "'benchmarks.style.suite': suite 'final' runs on the finalists, and style is judged"
        in config_errors(cfg)
    )
    del cfg["benchmarks"]["style"]
    cfg["runs"]["run_a"]["seeds"] = [0, 1]
    assert "'runs.run_a.seeds': replicate seeds with a suite that follows the selection" in config_errors(cfg)
    del cfg["runs"]["run_a"]["seeds"]
    cfg["suites"]["other"] = {"finalists": 1}
    cfg["benchmarks"]["arc_easy"]["suite"] = "other"
    cfg["gates"]["guarded"] = {}
    assert "config key 'suites': final, other all follow the selection" in config_errors(cfg)


def test_the_finalists_are_the_chosen_and_the_next_best_not_excluded():
    selection = {
        "chosen": "b",
        "candidates": [
            {"model": "a", "excluded": "GGUF parity check failed"},
            {"model": "b", "excluded": ""},
            {"model": "c", "excluded": ""},
            {"model": "d", "excluded": ""},
        ],
    }
    assert finalists(selection, 0) == ["b"]
    assert finalists(selection, 1) == ["b", "c"]
    assert finalists(selection, 5) == ["b", "c", "d"]


NOT_RUN = {"run": {"c": "not run: c runs only on the models of suite 'extended'"}}
PARTIAL = [r for r in __import__("test_tables").FIXTURE if not (r.model == "run" and r.benchmark == "c")]


def test_a_benchmark_not_run_is_a_row_that_says_so_and_its_axis_is_partial():
    df = delta_table(PARTIAL, settings=SETTINGS, not_run=NOT_RUN)
    c = df[(df.model == "run") & (df.benchmark == "c")].iloc[0]
    assert pd.isna(c.score) and pd.isna(c.delta_pts) and c.note.startswith("not run: c runs only")
    target = df[(df.model == "run") & (df.level == "axis") & (df.benchmark == "target")].iloc[0]
    assert target.note == "not run" and pd.isna(target.delta_pts)  # none of its benchmarks ran
    macro = df[(df.model == "run") & (df.level == "macro")].iloc[0]
    assert macro.note == "partial: over the benchmarks run (not run: c)"
    md = to_markdown(df, SETTINGS, title="t")
    assert "| c (3)" in md and "not run" in md and "**macro avg (partial)**" in md
    assert "nan" not in md
    # an unexpected gap is still an error, never a silent drop
    with pytest.raises(DeltaflowError, match=r"missing eval result for \(run, c\)"):
        delta_table(PARTIAL, settings=SETTINGS)
    cdf = comparison_table(PARTIAL, [("base", "run")], SETTINGS, NOT_RUN)
    assert set(cdf.benchmark) == {"a", "b", "c", "knowledge", "target", "macro_avg"}
    c = cdf[cdf.benchmark == "c"].iloc[0]
    assert c.note == "not run on run" and pd.isna(c.delta_pts)  # said, not dropped
    assert cdf[cdf.level == "macro"].iloc[0].note == "partial: over the benchmarks run (not run: c)"


def test_a_gate_on_an_axis_a_model_did_not_run_is_not_passed_and_never_chosen():
    other = [
        result("other", r.benchmark, [1] * len(r.records), axis=r.metrics["axis"])
        for r in PARTIAL
        if r.model == "base"
    ]
    df = delta_table(PARTIAL + other, settings=SETTINGS, not_run=NOT_RUN)
    gates = {"target": {"target": {"min_gain_pts": -100}}, "guarded": {}}
    verdicts, selection = select(df, gates, ["run", "other"])
    assert not verdicts["run"]["passes"] and verdicts["run"]["not_run"] == ["target"]
    assert verdicts["run"]["checks"][0]["reason"].startswith("target axis target: not run")
    assert selection["chosen"] == "other" and "run" in selection["excluded"]
    with pytest.raises(DeltaflowError, match="no candidate model can be chosen: run: gated axes not run"):
        select(df, gates, ["run"])


def _sampled(model, bench, hits):
    """A benchmark whose records carry pass@2 beside the headline (exact_match of sample 1)."""
    r = result(model, bench, [h[0] for h in hits], axis="target")
    for rec, h in zip(r.records, hits):
        rec["pass@2"] = float(any(h))
    return r


def test_a_gate_on_pass_at_k_reads_its_own_axis_row():
    results = [
        _sampled("base", "c", [(0, 0), (0, 1), (1, 1), (0, 0)]),
        _sampled("run", "c", [(0, 1), (0, 1), (1, 1), (0, 1)]),
    ]
    gates = {"target": {"target": {"min_gain_pts": 10, "metric": "pass@2"}}, "guarded": {}}
    rows = metric_gate_rows(results, gates, SETTINGS)
    row = rows.iloc[0]
    assert (row.model, row.benchmark, row.metric) == ("run", "target@pass@2", "pass@2")
    assert (row.base_score, row.score, row.delta_pts) == (50.0, 100.0, 50.0)
    df = pd.concat([delta_table(results, settings=SETTINGS), rows], ignore_index=True)
    headline = df[(df.model == "run") & (df.benchmark == "target")].iloc[0]
    assert headline.delta_pts == 0.0  # same first samples: the headline gate would fail
    verdicts, _ = select(df, gates, ["run"])
    check = verdicts["run"]["checks"][0]
    assert verdicts["run"]["passes"] and check["metric"] == "pass@2" and check["value_pts"] == 50.0
    assert check["reason"].startswith("target axis target@pass@2: Δ +50.00 pts")


def test_a_gate_metric_the_axis_does_not_record_is_an_error():
    cfg = tiny_config()
    cfg["gates"]["target"]["target"]["metric"] = "acc_norm"  # arithmetic generates: no acc_norm
    err = config_errors(cfg)
    assert (
        "'gates.target.target.metric': benchmark arithmetic (axis target) does not record 'acc_norm'" in err
    )
    cfg["gates"]["target"]["target"]["metric"] = "pass@1"
    validate_config(cfg)
    results = [result("base", "c", [1, 0]), result("run", "c", [1, 1])]
    with pytest.raises(DeltaflowError, match="c \\(axis target\\) do not record 'pass@9'"):
        metric_gate_rows(results, {"target": {"target": {"metric": "pass@9"}}}, SETTINGS)


def test_a_comparison_metric_no_shared_benchmark_records_is_a_config_error():
    """run_a vs run_b on acc_norm, which only arc_easy records: with arc_easy left to the
    finalists, the two share no benchmark that records it. Said before any job, with why."""
    cfg = tiny_config()
    cfg["tables"]["comparisons"] = [{"left": "run_a", "right": "run_b", "metric": "acc_norm"}]
    validate_config(cfg)
    cfg["suites"] = {"final": {"finalists": 1}}
    cfg["benchmarks"]["arc_easy"]["suite"] = "final"
    del cfg["gates"]["guarded"]["knowledge"]
    err = config_errors(cfg)
    assert (
        "config key 'tables.comparisons[0].metric': no benchmark that both run_a and run_b run records "
        "'acc_norm' (arc_easy: not run here: arc_easy runs on the finalists of suite 'final'" in err
    )
    cfg["tables"]["comparisons"][0]["metric"] = "pass@7"
    del cfg["suites"], cfg["benchmarks"]["arc_easy"]["suite"]
    assert "run records 'pass@7'; no benchmark of this config records it" in config_errors(cfg)


@pytest.mark.e2e
def test_suites_run_a_benchmark_on_some_models_and_gates_read_any_metric(tiny_workflow, tmp_path):
    """gsm8k in an `extended` suite (run_a and its sweep arm): the other models' eval jobs write a
    not_run record instead of results (from the caches: no model reloads to drop a benchmark),
    the tables say "not run", the gate on gsm8k's axis is not run for them, so the choice is
    among the two; a gate on pass@1 reads its own axis row. arc_easy in a `final` suite that
    follows the selection ({finalists: 1}): only the base runs it before the choice, then the
    chosen model and its runner-up in their own jobs, into results/tables/finalists.csv and
    the card."""
    run = copy_run(tiny_workflow, tmp_path)
    cfg = run.cfg
    cfg["suites"] = {"extended": ["run_a", "run_a.x*"], "final": {"finalists": 1}}
    cfg["benchmarks"]["gsm8k"]["suite"] = "extended"
    cfg["benchmarks"]["arc_easy"]["suite"] = "final"
    del cfg["gates"]["guarded"]["knowledge"]  # arc_easy's axis: no gate can wait on the finalists
    # (and run_a vs run_b on acc_norm, which only arc_easy records, has nothing to compare: a
    # config error, test_a_comparison_metric_no_shared_benchmark_records_is_a_config_error)
    cfg["tables"]["comparisons"] = [c for c in cfg["tables"]["comparisons"] if c.get("metric") != "acc_norm"]
    cfg["gates"]["guarded"]["math"] = {"tolerance_pts": 100}
    cfg["gates"]["target"]["target"]["metric"] = "pass@1"
    # the finalists' results reach the tracker and (with inspect_ai's environment) the viewer
    cfg["tracking"] = {"backend": "trackio", "project": "suites"}
    viewer = (REPO / ".venv-inspect/bin/inspect").exists()
    if viewer:
        cfg["viewer"] = {"inspect": True, "python": str(REPO / ".venv-inspect/bin/python")}
    proc = run.snakemake(configfile=write_config(run.work, cfg))
    out = proc.stdout + proc.stderr
    assert "rule adapter" not in out and "rule benchmark_docs" not in out
    res = run.work / "results"
    for model in ("run_b", "run_dpo", "a_dpo_ties"):
        assert json.loads((res / f"evals/{model}/gsm8k.json").read_text())["not_run"] is True
        assert (res / f"evals/{model}/gsm8k.jsonl").read_text() == ""
        assert "gsm8k" not in json.loads((res / f"evals/{model}/summary.json").read_text())["benchmarks"]
    for model in ("base", "run_a", "run_a.x0.5"):
        assert "gsm8k" in json.loads((res / f"evals/{model}/summary.json").read_text())["benchmarks"]
    df = pd.read_csv(res / "tables/delta.csv")
    row = df[(df.model == "run_b") & (df.benchmark == "gsm8k")].iloc[0]
    assert pd.isna(row.score) and row.note == "not run: gsm8k runs only on the models of suite 'extended'"
    assert df[(df.model == "run_a") & (df.benchmark == "gsm8k")].score.notna().all()
    assert "not run" in (res / "tables/delta.md").read_text()
    gates = json.loads((res / "tables/gates.json").read_text())
    assert gates["run_b"]["not_run"] == ["math"] and not gates["run_b"]["passes"]
    selection = json.loads((res / "tables/selection.json").read_text())
    assert selection["chosen"] in ("run_a", "run_a.x0.5")
    assert selection["excluded"]["run_b"] == "gated axes not run: math"
    # greedy, one sample: pass@1 is the headline's exact match, so the two rows agree
    pass1 = df[(df.model == "run_a") & (df.benchmark == "target@pass@1")].iloc[0]
    head = df[(df.model == "run_a") & (df.level == "axis") & (df.benchmark == "target")].iloc[0]
    assert pass1.metric == "pass@1" and pass1.delta_pts == head.delta_pts
    assert gates["run_a"]["checks"][0]["reason"].startswith("target axis target@pass@1: Δ")
    # the finalists: the chosen model and the next one of the ranking, arc_easy after the choice
    final = json.loads((res / "finalists/finalists.json").read_text())
    ranked = [c["model"] for c in selection["candidates"] if not c["excluded"]]
    assert final["models"] == [selection["chosen"], next(m for m in ranked if m != selection["chosen"])]
    assert sorted(final["models"]) == ["run_a", "run_a.x0.5"]
    for model in ("run_a", "run_b"):  # before the choice: not run, and said so
        note = df[(df.model == model) & (df.benchmark == "arc_easy")].note.iloc[0]
        assert note.startswith("not run here: arc_easy runs on the finalists of suite 'final'")
    fdf = pd.read_csv(res / "tables/finalists.csv")
    rows = fdf[fdf.level == "benchmark"]
    assert set(rows.model) == {"base", *final["models"]} and set(rows.benchmark) == {"arc_easy"}
    chosen = rows[rows.model == selection["chosen"]].iloc[0]
    assert chosen.finalist == "chosen" and chosen.n == cfg["benchmarks"]["arc_easy"]["n"]
    # the same items and scores as the arm's own eval of arc_easy in the shared run
    shared = pd.read_csv(tiny_workflow.work / "results/tables/delta.csv")
    before = shared[(shared.model == selection["chosen"]) & (shared.benchmark == "arc_easy")].iloc[0]
    assert (chosen.score, chosen.delta_pts, chosen.ci_low) == (before.score, before.delta_pts, before.ci_low)
    card = (res / "model_card.md").read_text()
    assert "## After the selection" in card and "(chosen here)" in card
    back = read_in_process(
        "import json\nfrom trackio.sqlite_storage import SQLiteStorage as S\nout = {}\n"
        "for r in S.get_runs('suites'):\n"
        "    c = S.get_run_config('suites', r)\n"
        "    out[c['deltaflow.model']] = {'config': c, 'logs': S.get_logs('suites', r)}\n"
        "print(json.dumps(out, default=str))",
        {"TRACKIO_DIR": str(run.work / "tracking")},
    )
    mine = back[selection["chosen"]]
    assert (
        mine["config"]["deltaflow.finalist"] == "chosen"
        and "deltaflow.finalist" not in back["run_b"]["config"]
    )
    assert [log["delta_pts/arc_easy"] for log in mine["logs"] if "delta_pts/arc_easy" in log] == [
        chosen.delta_pts
    ]
    assert any("records/arc_easy" in log for log in mine["logs"])
    assert not any("records/arc_easy" in log for log in back["run_b"]["logs"])
    if viewer:
        logs = {p.name for p in (res / "viewer/logs").iterdir()}
        assert {f"{m}__arc_easy.eval" for m in ("base", *final["models"])} <= logs
        assert "run_b__arc_easy.eval" not in logs
