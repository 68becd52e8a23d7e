"""Continued pretraining (objective cpt) as a run: config errors (chat rows that are not replay,
SFT then CPT), the CPT -> SFT lineage, and through the workflow a CPT run on real C4 text with
general replay, an SFT run stacked on it (init_from), and a GRPO run continuing an SFT run with
a checkpoint arm, all evaluated and tabled. The training itself (CPT's held-out loss falls,
GRPO's reward rises) is test_training's."""

import pandas as pd
import pytest
import yaml
from conftest import config_errors, copy_run, tiny_config

from deltaflow.config import validate_config
from deltaflow.io import read_json
from deltaflow.models import ModelGraph

C4 = {
    "type": "sdist_file",
    "sdist": "llamafactory==0.9.5",
    "path": "data/c4_demo.jsonl",
    "format": "text",
    "max_rows": 40,
    "origin": "human",
    "license": "odc-by",
}


def _cpt_config(cfg):
    cfg["datasets"]["c4"] = dict(C4)
    cfg["mixtures"]["cpt_mix"] = {
        "components": [
            {"name": "domain", "dataset": "c4", "multiplier": 1},  # long documents: chunked by packing
            {"name": "replay", "dataset": "alpaca", "share": 0.1, "profile": "replay"},
        ]
    }
    cfg["recipes"]["tiny_cpt"] = {
        **cfg["recipes"]["tiny_lora"],
        "objective": "cpt",
        "max_length": 64,
        "val_rows": 4,
        "eval_every": 3,
    }
    cfg["runs"]["cpt_run"] = {"mixture": "cpt_mix", "recipe": "tiny_cpt"}
    cfg["runs"]["sft_on_cpt"] = {"mixture": "mix_a", "recipe": "tiny_lora", "init_from": "cpt_run"}
    return cfg


def test_cpt_then_sft_lineage_and_the_refused_orders():
    cfg = validate_config(_cpt_config(tiny_config()))
    assert ModelGraph(cfg).lineage("sft_on_cpt") == [
        "run cpt_run (continued pretraining): mixture cpt_mix x recipe tiny_cpt",
        "run sft_on_cpt: mixture mix_a x recipe tiny_lora, continuing cpt_run",
    ]
    # SFT then CPT: the knowledge run on top of the behaviour one is refused with the reason
    cfg = _cpt_config(tiny_config())
    cfg["runs"]["cpt_run"]["init_from"] = "run_a"
    assert "continued pretraining on top of 'run_a', an sft run: the order is CPT then SFT" in config_errors(
        cfg
    )
    # chat rows in a CPT mixture that are not marked as replay
    cfg = _cpt_config(tiny_config())
    cfg["mixtures"]["cpt_mix"]["components"][1]["profile"] = "general"
    assert (
        "run 'cpt_run' is continued pretraining (objective cpt) and 'alpaca' has chat rows; CPT trains "
        "on raw text"
    ) in config_errors(cfg)


@pytest.mark.e2e
def test_cpt_sft_stack_and_a_grpo_run_are_evaluated_and_tabled(tiny_workflow, tmp_path):
    run = copy_run(tiny_workflow, tmp_path / "run")
    cfg = _cpt_config(run.cfg)
    cfg["recipes"]["tiny_grpo"] = {
        "objective": "grpo",
        "r": 4,
        "alpha": 8,
        "learning_rate": 0.01,
        "max_steps": 4,
        "batch_size": 4,
        "num_generations": 2,
        "max_completion_length": 4,
        "logging_steps": 1,
        "save_every": 2,
        "rewards": [{"verifier": {"benchmark": "arithmetic"}}, {"format": "[0-9]", "weight": 0.5}],
    }
    cfg["runs"]["rl"] = {"mixture": "mix_a", "recipe": "tiny_grpo", "init_from": "run_a"}
    run.cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    run.snakemake("results/tables/delta.csv")
    res = run.work / "results"
    cpt = read_json(res / "adapters/cpt_run/metrics.json")
    assert cpt["objective"] == "cpt" and cpt["replay_rows_as_text"] > 0 and cpt["text_rows"] > 0
    assert cpt["eval_curve"][-1]["eval_loss"] < cpt["eval_curve"][0]["eval_loss"]  # held-out C4 rows
    stacked = read_json(res / "adapters/sft_on_cpt/metrics.json")
    assert stacked["objective"] == "sft" and stacked["init_from"].endswith("adapters/cpt_run")
    rl = read_json(res / "adapters/rl/metrics.json")
    assert rl["objective"] == "grpo" and rl["steps"] == 4 and len(rl["reward_curve"]) == 4
    assert {"rewards/reward0/mean", "rewards/reward1/mean", "completions/mean_length"} <= set(
        rl["reward_curve"][0]
    )
    assert sum(v for k, v in rl["groups"].items() if k != "mixed_share") == 4 * 4 // 2
    delta = pd.read_csv(res / "tables/delta.csv")
    assert {"cpt_run", "sft_on_cpt", "rl", "rl@step2"} <= set(delta.model)
    report = (res / "mixtures/cpt_mix/report.md").read_text()
    assert "| domain | c4 | human | human |" in report
