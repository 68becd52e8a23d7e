"""Real Snakemake runs of the training recipes' options on the tiny model: a run grid, epochs
with per-epoch checkpoint arms and a validation loss, and a run whose loss really goes NaN."""

import json

import pandas as pd
import pytest
from conftest import run_snakemake, tiny_config, write_config

pytestmark = pytest.mark.e2e


def small_config() -> dict:
    """The tiny config cut down to one mixture, one benchmark and no merges."""
    cfg = tiny_config()
    cfg["mixtures"] = {"mix_b": cfg["mixtures"]["mix_b"]}
    cfg["benchmarks"] = {"arithmetic": cfg["benchmarks"]["arithmetic"]}
    cfg.update(
        merges={}, sweeps={}, tables={"comparisons": []}, gates={"target": {"target": {"min_gain_pts": -100}}}
    )
    return cfg


def test_grid_of_epoch_runs_with_validation_and_epoch_arms(tmp_path):
    cfg = small_config()
    recipe = cfg["recipes"]["tiny_lora"]
    recipe.pop("max_steps")
    recipe.update(epochs=3, save_every="epoch", val_rows=4, eval_every=2)
    cfg["runs"] = {}
    cfg["grids"] = {"rk": {"mixtures": ["mix_b"], "recipes": ["tiny_lora"], "vary": {"r": [2, 4]}}}
    # an instruction-following axis too (IFBench prompts, a few tokens each on this tiny model)
    cfg["benchmarks"]["ifbench"] = {"n": 2, "decoding": {"max_gen_toks": 8}}
    run_snakemake(tmp_path, write_config(tmp_path, cfg))
    items = json.loads((tmp_path / "results/benchmarks/ifbench/items.manifest.json").read_text())
    assert items["items"] + len(items["excluded"]) == 294 and all(e["reason"] for e in items["excluded"])
    runs = [f"rk-mix_b-tiny_lora-r{r}" for r in (2, 4)]
    for r, run in zip((2, 4), runs):
        adapter = tmp_path / "results/adapters" / run
        assert json.loads((adapter / "adapter_config.json").read_text())["r"] == r
        m = json.loads((adapter / "metrics.json").read_text())
        assert m["epochs"] == pytest.approx(3) and m["precision"] == "fp32" and m["val_rows"] == 4
        # mix_b's rows minus every copy of 4 held-out rows; TRL drops rows with no target
        # tokens left after truncation to max_length 64, and HF counts the steps on the rest
        assert (
            m["train_rows"]
            == len((tmp_path / "results/mixtures/mix_b/train.jsonl").read_text().splitlines()) - 4
        )
        per_epoch = -(-m["train_examples_used"] // 4)  # ceil(examples / batch 4)
        assert m["steps"] == 3 * per_epoch
        assert [(c["tag"], c["step"]) for c in m["checkpoints"]] == [
            ("epoch1", per_epoch),
            ("epoch2", 2 * per_epoch),
        ]
        # validation loss every 2 steps, at each epoch arm and at the end; the last is val_loss
        steps = sorted({*range(2, 3 * per_epoch + 1, 2), per_epoch, 2 * per_epoch, 3 * per_epoch})
        assert [c["step"] for c in m["eval_curve"]] == steps
        assert m["val_loss"] == m["eval_curve"][-1]["eval_loss"]
        assert all(c["val_loss"] is not None for c in m["checkpoints"])
        assert m["best_by_val_loss"]["val_loss"] == min(
            c["eval_loss"] for c in m["eval_curve"] if c["step"] in (per_epoch, 2 * per_epoch, 3 * per_epoch)
        )
        assert m["eval_curve"][-1]["eval_loss"] < m["eval_curve"][0]["eval_loss"]
        for tag in ("epoch1", "epoch2"):
            assert (adapter / "checkpoints" / tag / "adapter_model.safetensors").exists()
    # every run and every epoch arm is a model in the delta table
    df = pd.read_csv(tmp_path / "results/tables/delta.csv")
    assert set(df[df.level == "axis"].benchmark) == {"target", "instruction-following"}
    assert set(df.model) == {"base", *runs, *(f"{run}@epoch{e}" for run in runs for e in (1, 2))}
    recipe_json = json.loads((tmp_path / f"results/adapters/{runs[1]}/recipe.json").read_text())
    assert recipe_json["recipe"]["r"] == 4 and recipe_json["recipe"]["epochs"] == 3


def test_a_real_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = small_config()
    # a learning rate this high overflows the weights within a few Adam steps: a real NaN
    cfg["recipes"]["tiny_lora"].update(learning_rate=1.0e38, max_steps=40, resume_every=1, logging_steps=1)
    cfg["runs"] = {"run_a": {"mixture": "mix_b", "recipe": "tiny_lora"}}
    proc = run_snakemake(
        tmp_path, write_config(tmp_path, cfg), "results/adapters/run_a/manifest.json", check=False
    )
    assert proc.returncode != 0
    log = (tmp_path / "logs/adapters/run_a.log").read_text()
    assert "non-finite training loss" in log and "Lower the learning rate" in log, log[-3000:]
    # nothing looks complete
    assert not (tmp_path / "results/adapters/run_a/manifest.json").exists()
    assert not (tmp_path / "results/adapters/run_a/metrics.json").exists()
    # the resume folder keeps checkpoints up to the last finite loss only
    import re

    bad = int(re.search(r"non-finite training loss \S+ at step (\d+)", log).group(1))
    good = int(re.search(r"last finite loss was logged at step (\d+)", log).group(1))
    assert good < bad
    kept = [
        int(p.name.split("-")[1]) for p in (tmp_path / "results/adapters/.resume/run_a").glob("checkpoint-*")
    ]
    assert kept and max(kept) <= good
    # Logged every 2 steps, the step-1 checkpoint (saved before any loss was seen) holds the
    # weights that produce the NaN: it is removed, not kept as "good".
    every2 = tmp_path / "every2"
    every2.mkdir()
    cfg["recipes"]["tiny_lora"]["logging_steps"] = 2
    proc = run_snakemake(
        every2, write_config(every2, cfg), "results/adapters/run_a/manifest.json", check=False
    )
    log = (every2 / "logs/adapters/run_a.log").read_text()
    assert proc.returncode != 0 and "last finite loss was logged at step 0" in log, log[-3000:]
    assert "were removed (['checkpoint-1'])" in log
    assert not list((every2 / "results/adapters/.resume/run_a").glob("checkpoint-*"))
