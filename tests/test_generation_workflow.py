"""Model-written data through the workflow, on a copy of the shared tiny run: a self-replay
generation by the base over a stub prompt set with a benchmark item planted in it (caught by the
mixture's decontamination), best-of-n and pass-over-fail pairs checked by a verifier on sampled
answers, preference pairs from a teacher folder over a trained run, in mixtures with their
origins in the report, and the origin policy refusing the teacher's vendor."""

import json
import shutil

import pytest
import yaml
from conftest import copy_run

from deltaflow.io import read_json, read_jsonl


@pytest.mark.e2e
def test_generations_feed_mixtures_with_their_origins(tiny_workflow, tmp_path):
    run = copy_run(tiny_workflow, tmp_path / "run")
    res = run.work / "results"
    # a benchmark question as a "general prompt": the generated row's user turn is that item
    planted = max((d["text"] for d in read_jsonl(res / "benchmarks/arc_easy/items.jsonl")), key=len)
    prompts = tmp_path / "prompts.json"
    prompts.write_text(
        json.dumps(
            [
                {"instruction": q, "output": "ok"}
                for q in ("Name a colour.", "Say hello.", planted, "Count to three.")
            ]
        )
    )
    # verifiable prompts: the reference answer "e", matched by `contains` (the tiny model's
    # sampled text holds an "e" in some samples and not in others: seeded, so always the same)
    checked = tmp_path / "checked.json"
    checked.write_text(
        json.dumps(
            [{"instruction": q, "output": "e"} for q in ("Name a colour.", "Say hello.", "Count to three.")]
        )
    )
    teacher = tmp_path / "teacher"
    shutil.copytree(res / "models/base", teacher)
    cfg = run.cfg
    cfg["datasets"]["stub_prompts"] = {
        "type": "file",
        "path": str(prompts),
        "format": "alpaca",
        "origin": "human",
        "license": "mit",
    }
    # the tiny random model is no chat model: through a chat template it ends every answer at once
    # (the silent-generation guard fails such a generation); plain prompts give it text to write
    cfg["datasets"]["checked"] = {"type": "file", "path": str(checked), "format": "alpaca", "origin": "human"}
    sampled = {"max_tokens": 6, "chat_template": False, "samples": 3, "temperature": 1.0, "seed": 2}
    cfg["generations"] = {
        "best_gen": {
            "model": "base",
            "prompts": {"dataset": "checked"},
            "mode": "best_of_n",
            "keep": "passing",
            "verifier": {"match": "contains"},
            "sampling": sampled,
            "guards": {"max_truncated_share": 1.0},
        },
        "pair_gen": {
            "model": "base",
            "prompts": {"dataset": "checked"},
            "mode": "pairs",
            "verifier": {"match": "contains"},
            "sampling": sampled,
            "guards": {"max_truncated_share": 1.0},
        },
        "self_gen": {
            "model": "base",
            "prompts": {"dataset": "stub_prompts"},
            "sampling": {"max_tokens": 6, "chat_template": False},
            "guards": {"max_truncated_share": 1.0},
        },
        "teacher_pairs": {
            "model": {"path": str(teacher)},
            "origin": {"model": "teacher-7b", "vendor": "acme"},
            "license": "apache-2.0",
            "rejected_model": "run_a",
            "mode": "pairs",
            "prompts": {"dataset": "alpaca", "n": 4, "seed": 0},
            "sampling": {"max_tokens": 6, "temperature": 1.0, "seed": 1, "chat_template": False},
            "guards": {"max_truncated_share": 1.0},
        },
    }
    cfg["mixtures"]["mix_b"]["components"].append({"dataset": "self_gen", "multiplier": 1})
    cfg["mixtures"]["pref"]["components"].append({"dataset": "teacher_pairs", "multiplier": 1})
    cfg["mixtures"]["pref"]["decontamination"] = {"benchmarks": ["gsm8k"]}
    run.cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    targets = [
        "results/mixtures/mix_b/report.md",
        "results/mixtures/pref/report.md",
        "results/data/best_gen/rows.jsonl",
        "results/data/pair_gen/rows.jsonl",
    ]
    run.snakemake(*targets)

    # self-replay: one SFT row per prompt, origin naming the model, its hash and the generation
    rows = read_jsonl(res / "data/self_gen/rows.jsonl")
    assert [r["prompt_id"] for r in rows] == [f"stub_prompts-{i}" for i in range(4)]
    assert rows[0]["messages"][0] == {"role": "user", "content": "Name a colour."}
    origin = rows[0]["origin"]
    assert (
        origin["model"] == "base" and origin["generation"] == "self_gen" and len(origin["model_sha256"]) == 16
    )
    assert origin["written_by"] == ["tiny-random-llama"] and origin["prompts_by"] == ["human"]
    manifest = read_json(res / "data/self_gen/manifest.json")
    assert manifest["sampling"]["max_tokens"] == 6 and manifest["made_by"]["cache"]["hit"] is False
    assert manifest["rows"] == 4 and manifest["origin"]["licences"] == ["mit", "unknown"]
    # the planted benchmark item is caught in the mixture like any contaminated row
    removed = read_jsonl(res / "mixtures/mix_b/rejected.jsonl")
    assert any(r["id"] == "self_gen-stub_prompts-2" and "arc_easy" in r["reason"] for r in removed)
    report = (res / "mixtures/mix_b/report.md").read_text()
    assert "| self_gen | self_gen | tiny-random-llama | human | base (self_gen) |" in report
    assert "| alpaca | alpaca | model-generated | model-generated |  |" in report  # declared, not generated

    # best of n: every distinct sample that holds the reference, counted against the samples
    best = read_jsonl(res / "data/best_gen/rows.jsonl")
    best_manifest = read_json(res / "data/best_gen/manifest.json")
    assert best and all("e" in r["messages"][1]["content"] for r in best)
    assert best_manifest["samples_checked"] == 9 and best_manifest["samples_passed"] == len(best)
    assert best_manifest["sampling"]["samples"] == 3 and best_manifest["decoding"]["seed"] == 2
    # pairs from one model: a passing sample chosen over a failing one
    for p in read_jsonl(res / "data/pair_gen/rows.jsonl"):
        assert "e" in p["chosen"] and "e" not in p["rejected"]
    # pairs: the teacher's sampled answer over run_a's, in the preference schema DPO reads
    pairs = read_jsonl(res / "data/teacher_pairs/rows.jsonl")
    pairs_manifest = read_json(res / "data/teacher_pairs/manifest.json")
    assert len(pairs) + pairs_manifest["rejected"] == 4 and pairs
    assert all(
        isinstance(p["chosen"], str) and isinstance(p["rejected"], str) and p["chosen"] != p["rejected"]
        for p in pairs
    )
    assert (
        pairs[0]["origin"]["model"] == f"path:{teacher}" and pairs[0]["origin"]["rejected_model"] == "run_a"
    )
    assert {"teacher-7b", "acme", "run_a"} <= set(pairs[0]["origin"]["written_by"])
    assert "teacher_pairs" in (res / "mixtures/pref/report.md").read_text()
    # the second run is all cache: nothing to do
    assert "Nothing to be done" in run.snakemake(*targets, "-n").stdout

    # the policy: forbidding the teacher's vendor refuses the pairs before any job runs
    cfg["mixtures"]["pref"]["policy"] = {"forbid_origins": ["acme"]}
    run.cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = run.snakemake(*targets, "-n", check=False)
    assert out.returncode != 0
    assert (
        "component teacher_pairs (dataset teacher_pairs) has training targets written by acme"
        in out.stdout + out.stderr
    )
