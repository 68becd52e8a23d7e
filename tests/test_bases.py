"""More than one base (base_models:): each model's base, the checks, and deltas against it."""

import copy
import json
import re
from collections import Counter

import pandas as pd
import pytest
from conftest import config_errors, copy_run, tiny_config, write_config
from test_tables import SETTINGS, result

from deltaflow.config import validate_config
from deltaflow.models import ModelGraph, base_manifest
from deltaflow.tables import compared_models, delta_table, to_markdown


def two_bases() -> dict:
    cfg = tiny_config()
    cfg["base_models"] = {"newbase": copy.deepcopy(cfg["base_model"])}
    cfg["base_models"]["newbase"]["source"]["seed"] = 1
    cfg["mixtures"]["mix_new"] = copy.deepcopy(cfg["mixtures"]["mix_b"])
    cfg["recipes"]["tiny_lora3"] = {**cfg["recipes"]["tiny_lora"], "save_every": 3}
    cfg["runs"]["run_new"] = {"mixture": "mix_new", "recipe": "tiny_lora3", "base": "newbase"}
    cfg["sweeps"]["run_new"] = [0.5]
    cfg["export"] = {"models": ["run_new"]}
    return cfg


def test_every_model_has_its_base_and_the_base_its_folder():
    cfg = validate_config(two_bases())
    graph = ModelGraph(cfg)
    assert graph.base_names == ["base", "newbase"]
    assert {
        m: graph.base_of(m) for m in ("run_new", "run_new@step3", "run_new.x0.5", "run_new.merged")
    } == dict.fromkeys(("run_new", "run_new@step3", "run_new.x0.5", "run_new.merged"), "newbase")
    assert graph.base_of("run_a") == graph.base_of("a_dpo_ties") == "base"
    assert (
        graph.node("newbase").manifest
        == base_manifest("newbase")
        == "results/models/bases/newbase/manifest.json"
    )
    assert "newbase" not in graph.candidates() and "run_new" in graph.candidates()
    assert graph.lineage("run_new")[0].endswith("on base newbase")


def test_base_mistakes_are_config_errors():
    cfg = two_bases()
    cfg["runs"]["run_x"] = {"mixture": "mix_a", "recipe": "tiny_lora", "base": "nobase"}
    cfg["runs"]["run_y"] = {"mixture": "mix_b", "recipe": "tiny_lora", "base": "newbase"}  # mix_b is on base
    cfg["runs"]["run_z"] = {
        "mixture": "mix_new",
        "recipe": "tiny_lora",
        "base": "newbase",
        "init_from": "run_a",
    }
    cfg["merges"]["across"] = {"method": "linear", "adapters": {"run_a": 0.5, "run_new": 0.5}}
    cfg["base_models"]["run_a"] = cfg["base_models"]["newbase"]
    cfg["benchmarks"]["gsm8k"]["judge"] = {"kind": "rubric", "model": "run_new"}
    cfg["runs"]["run_new"]["seeds"] = [0, 1]
    err = config_errors(cfg)
    assert (
        "'benchmarks.gsm8k.judge.model': 'run_new' is an adapter on base 'newbase'; judges and generations"
        in err
    )
    assert (
        "'runs.run_new.seeds': replicate seeds of a run on another base than `base` are not supported yet"
        in err
    )
    assert "'runs.run_x.base': unknown base 'nobase'; bases: base, newbase, run_a" in err
    assert "'mixtures.mix_b': trained by runs on the bases ['base', 'newbase']" in err
    assert "'runs.run_z.base': 'newbase', but it continues run_a, trained on 'base'" in err
    assert "'merges.across.adapters': models on different bases (base, newbase)" in err
    assert "'base_models.run_a': 'run_a' is already a model of this workflow" in err


def test_each_model_is_compared_with_its_own_base():
    results = [
        result("base", "a", [0, 0, 0, 0]),
        result("newbase", "a", [1, 1, 0, 0]),
        result("run", "a", [1, 0, 0, 0]),
        result("run_new", "a", [1, 1, 1, 0]),
    ]
    baselines = {"base": "base", "newbase": "newbase", "run": "base", "run_new": "newbase"}
    df = delta_table(results, settings=SETTINGS, baselines=baselines)
    row = df[(df.model == "run_new") & (df.benchmark == "a")].iloc[0]
    assert (row.baseline, row.base_score, row.score, row.delta_pts) == ("newbase", 50.0, 75.0, 25.0)
    assert df[(df.model == "run") & (df.benchmark == "a")].iloc[0].delta_pts == 25.0
    assert df[(df.model == "newbase") & (df.benchmark == "a")].iloc[0].delta_pts == 0.0  # the base itself
    assert compared_models(df) == [("run", "base"), ("run_new", "newbase")]
    md = to_markdown(df, SETTINGS, title="t")
    assert "### run_new vs newbase" in md and "### newbase vs" not in md
    # one base only: no baseline column (the default tables are unchanged)
    assert "baseline" not in delta_table(results[:1] + results[2:3], settings=SETTINGS).columns


@pytest.mark.e2e
def test_a_second_base_its_run_and_deltas_against_it(tiny_workflow, tmp_path):
    """base_models: newbase (another random init) and run_new trained on it: materialized under
    results/models/bases/, the adapter trained and evaluated on newbase, its deltas against
    newbase (a `baseline` column), the other models' rows unchanged and nothing of theirs rerun."""
    run = copy_run(tiny_workflow, tmp_path)
    cfg = run.cfg
    before = pd.read_csv(run.work / "results/tables/delta.csv")
    cfg["base_models"] = {
        "newbase": {**cfg["base_model"], "source": {**cfg["base_model"]["source"], "seed": 1}}
    }
    cfg["mixtures"]["mix_new"] = cfg["mixtures"]["mix_b"]
    cfg["runs"]["run_new"] = {"mixture": "mix_new", "recipe": "tiny_lora", "base": "newbase"}
    proc = run.snakemake(configfile=write_config(run.work, cfg))
    out = proc.stdout + proc.stderr
    jobs = Counter(re.findall(r"^(?:local)?rule (\w+):", out, flags=re.MULTILINE))
    assert jobs["adapter"] == 1 and jobs["evaluate"] == 2 and jobs["other_base_model"] == 1, jobs
    res = run.work / "results"
    new_base = json.loads((res / "models/bases/newbase/manifest.json").read_text())
    old_base = json.loads((res / "models/base/manifest.json").read_text())
    assert new_base["weights_sha256"] != old_base["weights_sha256"]
    adapter = json.loads((res / "adapters/run_new/manifest.json").read_text())
    assert adapter["inputs"]["base"]["path"] == "results/models/bases/newbase/manifest.json"
    df = pd.read_csv(res / "tables/delta.csv")
    mine = df[(df.model == "run_new") & (df.level == "benchmark")]
    assert set(mine.baseline) == {"newbase"}
    nb = df[(df.model == "newbase") & (df.level == "benchmark")].set_index("benchmark").score
    assert (mine.set_index("benchmark").base_score == nb).all()
    # the new base itself is compared with the old one (a base's own deltas are against `base`)
    assert (
        set(df[df.model == "newbase"].baseline) == {"base"}
        and df[df.model == "newbase"].delta_pts.abs().sum() > 0
    )
    old_rows = df[df.model.isin(before.model.unique())].drop(columns="baseline").reset_index(drop=True)
    assert set(df[df.model.isin(before.model.unique()) & (df.source == "evaluated")].baseline) == {"base"}
    pd.testing.assert_frame_equal(old_rows[before.columns], before, check_dtype=False)
    assert "### run_new vs newbase" in (res / "tables/delta.md").read_text()
    comparisons = (res / "tables/comparisons.csv").read_text()
    assert "run_new_minus_newbase" in comparisons and "newbase_minus_base" in comparisons
