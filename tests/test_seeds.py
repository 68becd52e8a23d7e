"""Replicate training seeds (deltaflow.seeds): arms derived from `seeds:`, the seed table's
statistics by hand, selection on the run rather than a lucky seed, and the arms through the
workflow."""

import copy

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import copy_run, tiny_config

from deltaflow.config import validate_config
from deltaflow.errors import ConfigError
from deltaflow.io import read_json
from deltaflow.models import ModelGraph
from deltaflow.seeds import families, seed_rows
from deltaflow.tables import EvalResult


def test_seeds_become_arms_with_their_own_recipes():
    cfg = tiny_config()
    cfg["recipes"]["tiny_lora"]["save_every"] = 3
    cfg["runs"]["run_a"]["seeds"] = [0, 1, 2]
    validate_config(cfg)
    assert cfg["runs"]["run_a~s1"] == {"mixture": "mix_a", "recipe": "tiny_lora~s1"}
    assert (
        cfg["recipes"]["tiny_lora~s2"]["seed"] == 2 and cfg["recipes"]["tiny_lora~s2"]["save_every"] is None
    )
    assert families(cfg) == {"run_a": ["run_a", "run_a~s1", "run_a~s2"]}
    graph = ModelGraph(cfg)
    assert "run_a~s1" in graph.names and "run_a~s1@step3" not in graph.names and "run_a@step3" in graph.names
    again = copy.deepcopy(cfg)
    validate_config(again)  # a validated config validates again to the same arms
    assert again["runs"] == cfg["runs"] and again["recipes"] == cfg["recipes"]


@pytest.mark.parametrize(
    "seeds,message",
    [
        ([1, 2], r"runs.run_a.seeds': \[1, 2\] leaves out the recipe's own seed 0"),
        ([0, 0], r"list two or more different seeds|non-unique"),
    ],
)
def test_bad_seed_lists_are_config_errors(seeds, message):
    cfg = tiny_config()
    cfg["runs"]["run_a"]["seeds"] = seeds
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)


def _result(model, bench, scores, axis="target"):
    return EvalResult(model, bench, {"axis": axis}, [{"doc_id": i, "score": s} for i, s in enumerate(scores)])


def test_seed_table_by_hand():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2, 200).astype(float)
    results = [_result("base", "b", base)]
    # three seeds whose deltas are +10, +20 and +30 points: item flips on 20, 40, 60 of 200 items
    for model, flips in (("r", 20), ("r~s1", 40), ("r~s2", 60)):
        s = base.copy()
        zeros = np.flatnonzero(base == 0)[:flips]
        s[zeros] = 1.0
        results.append(_result(model, "b", s))
    df = seed_rows(results, {"r": ["r", "r~s1", "r~s2"]}, {"b": "target"}, resamples=2000)
    row = df[(df.level == "benchmark")].iloc[0]
    assert row.seeds == 3 and row.delta_pts == pytest.approx(20.0) and row.seed_sd_pts == pytest.approx(10.0)
    assert row.per_seed_delta_pts == "+10.00 +20.00 +30.00"
    # the CI includes the seed spread: wider than the single seed's item-only CI (~±4 points)
    assert row.ci_low < 12 and row.ci_high > 28 and row.mde_pts > 10
    assert set(df.level) == {"benchmark", "axis", "macro"}


@pytest.mark.e2e
def test_seed_arms_through_the_workflow(tiny_workflow, tmp_path):
    run = copy_run(tiny_workflow, tmp_path / "run")
    run.cfg["runs"]["run_a"]["seeds"] = [0, 1]
    run.cfg_path.write_text(yaml.safe_dump(run.cfg, sort_keys=False))
    run.snakemake()
    res = run.work / "results"
    assert read_json(res / "adapters/run_a~s1/recipe.json")["recipe"]["seed"] == 1
    seeds = pd.read_csv(res / "tables/seeds.csv")
    assert set(seeds.model) == {"run_a"} and (seeds.seeds == 2).all()
    macro = seeds[seeds.level == "macro"].iloc[0]
    assert macro.ci_low <= macro.delta_pts <= macro.ci_high
    selection = read_json(res / "tables/selection.json")
    assert selection["seeds"]["run_a"] == 2 and "run_a~s1" not in selection["seeds"]
    assert all(c["model"] != "run_a~s1" for c in selection["candidates"])
    assert "Training seeds behind these numbers" in (res / "model_card.md").read_text()
    assert "run_a~s1" in (res / "tables/delta.csv").read_text()  # the arm is tabled like any model
