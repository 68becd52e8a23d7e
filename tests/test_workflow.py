"""Real Snakemake runs of the whole DAG on the tiny config (random 2-layer Llama, ~20-row data)."""

import json
import re
import shutil
import subprocess
from collections import Counter

import pandas as pd
import pytest
from conftest import SECRET, copy_run, run_snakemake, tiny_config, write_config

from deltaflow.io import read_jsonl

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tiny_run(tiny_workflow):
    """The session's shared tiny run (conftest.tiny_workflow): read only."""
    return tiny_workflow.work, tiny_workflow.cfg_path, tiny_workflow.proc


def test_mixture_rows_per_component(tiny_run):
    workdir, _, _ = tiny_run
    rows = read_jsonl(workdir / "results/mixtures/mix_a/train.jsonl")
    assert Counter(r["mixture_component"] for r in rows) == {"arithmetic": 60, "replay": 10}
    assert {r["mixture"] for r in rows} == {"mix_a"}
    assert all(r["source"] in ("arithmetic", "alpaca") for r in rows)
    manifest = json.loads((workdir / "results/mixtures/mix_a/manifest.json").read_text())
    comps = {c["name"]: c for c in manifest["mixture"]["components"]}
    assert comps["arithmetic"]["rows"] == 60 and comps["arithmetic"]["available_rows"] == 20
    assert comps["replay"]["rows"] == 10 and comps["replay"]["available_rows"] == 24
    # tokens are counted with the base tokenizer over the chat-rendered rows
    assert manifest["mixture"]["tokens"] > 10 * len(rows)
    assert set(manifest["inputs"]) == {
        "dataset:arithmetic",
        "dataset:alpaca",
        "base",
        "code",
        "benchmark_items:arithmetic",
        "benchmark_items:arc_easy",
        "benchmark_items:gsm8k",
    }
    assert {(r["mixture_component"], r["mixture_profile"]) for r in rows} == {
        ("arithmetic", "capability"),
        ("replay", "release"),
    }
    assert manifest["mixture"]["bounds"]["min_share.capability"] == {
        "bound": 0.5,
        "realized": 0.857143,
        "ok": True,
    }
    # decontaminated against the listed benchmarks' full item pools (not only the n subset)
    d = manifest["mixture"]["decontamination"]
    assert d["benchmarks"] == ["arc_easy", "arithmetic", "gsm8k"] and d["hits"] == 0
    assert d["eval_items"] > 1000  # ARC-Easy + GSM8K test sets + the arithmetic eval split
    report = (workdir / "results/mixtures/mix_a/report.md").read_text()
    assert "**0 overlap**" in report and "| capability | arithmetic |" in report
    assert (workdir / "results/mixtures/mix_a/rejected.jsonl").exists()


def test_dpo_on_top_of_sft_raises_the_preference_margin(tiny_run):
    workdir, _, _ = tiny_run
    metrics = json.loads((workdir / "results/adapters/run_dpo/metrics.json").read_text())
    assert metrics["objective"] == "dpo" and metrics["reference"] == "base"
    assert metrics["init_from"] == "results/adapters/run_a" and metrics["steps"] == 6
    before, after = metrics["preference_before"], metrics["preference_after"]
    # TRL's implicit reward margin (chosen - rejected, vs the base as reference) on the
    # training pairs goes up with training
    assert after["rewards/margins"] > before["rewards/margins"]
    manifest = json.loads((workdir / "results/adapters/run_dpo/manifest.json").read_text())
    assert "init" in manifest["inputs"] and manifest["params"]["init_from"] == "run_a"
    # only the trained adapter is saved (not TRL's frozen "ref" copy)
    assert not (workdir / "results/adapters/run_dpo/ref").exists()


def test_preference_mixture_is_built_and_reported(tiny_run):
    workdir, _, _ = tiny_run
    rows = read_jsonl(workdir / "results/mixtures/pref/train.jsonl")
    assert rows and all(r["chosen"] and r["rejected"] and r["mixture_component"] == "dpo" for r in rows)
    manifest = json.loads((workdir / "results/mixtures/pref/manifest.json").read_text())
    assert manifest["mixture"]["kind"] == "preference"
    assert manifest["mixture"]["decontamination"]["benchmarks"] == ["gsm8k"]
    assert "## Contamination" in (workdir / "results/mixtures/pref/report.md").read_text()


def test_delta_table_rows_and_numbers(tiny_run):
    workdir, _, _ = tiny_run
    df = pd.read_csv(workdir / "results/tables/delta.csv")
    ours = df[df.source == "evaluated"]
    # 7 models x (3 benchmarks + 3 axes + macro), then the reference's 3 + 3 + macro
    assert len(ours) == 49 and len(df) == 56
    assert set(df.model) == {
        "base",
        "run_a",
        "run_b",
        "run_b@step3",
        "run_dpo",
        "a_dpo_ties",
        "run_a.x0.5",
        "fixture-ref",
    }
    bench = ours[ours.level == "benchmark"]
    n = {b: int(v) for b, v in bench[bench.model == "run_a"].set_index("benchmark")["n"].items()}
    assert n == {"arithmetic": 10, "arc_easy": 8, "gsm8k": 3}
    for _, row in bench.iterrows():
        samples = read_jsonl(workdir / f"results/evals/{row.model}/{row.benchmark}.jsonl")
        assert len(samples) == row.n
        assert round(100 * sum(s["score"] for s in samples) / len(samples), 2) == row.score
        assert row.delta_pts == pytest.approx(row.score - row.base_score, abs=0.011)
        assert row.ci_low <= row.delta_pts <= row.ci_high and 0 <= row.mcnemar_p <= 1
    assert set(ours[ours.level == "axis"].benchmark) == {"knowledge", "target", "math"}
    assert (ours[ours.model == "base"].delta_pts == 0).all()
    ref = df[df.model == "fixture-ref"]
    assert set(ref.source) == {"reference (not re-run)"} and ref.ci_low.isna().all()
    md = (workdir / "results/tables/delta.md").read_text()
    assert "### run_a vs base" in md and "| arithmetic (10)" in md and "fixture-ref*" in md
    assert "run_b_minus_run_a" in md
    cmp = pd.read_csv(workdir / "results/tables/comparisons.csv")
    assert set(cmp.comparison) == {
        "run_a_minus_base",
        "run_b_minus_base",
        "run_b@step3_minus_base",
        "run_dpo_minus_base",
        "a_dpo_ties_minus_base",
        "run_a.x0.5_minus_base",
        "run_b_minus_run_a",
        "run_b_minus_run_a@acc_norm",
        "run_a_minus_base@scorer.rep4",
    }
    row = cmp[(cmp.comparison == "run_b_minus_run_a") & (cmp.benchmark == "arc_easy")].iloc[0]
    assert row.right_better + row.left_better + row.tie == pytest.approx(1.0) and row.n == 8
    # on another metric: only the benchmarks recording it for every item (acc_norm: the MCQ one)
    on = cmp[(cmp.comparison == "run_b_minus_run_a@acc_norm") & (cmp.level == "benchmark")]
    assert list(on.benchmark) == ["arc_easy"]
    recs = {m: read_jsonl(workdir / f"results/evals/{m}/arc_easy.jsonl") for m in ("run_a", "run_b")}
    mean = sum(b["acc_norm"] - a["acc_norm"] for a, b in zip(recs["run_a"], recs["run_b"])) / 8
    assert on.iloc[0].delta_pts == pytest.approx(100 * mean, abs=0.01)
    rep = cmp[(cmp.comparison == "run_a_minus_base@scorer.rep4") & (cmp.level == "benchmark")]
    assert list(rep.benchmark) == ["gsm8k"]


def test_a_scorer_hook_adds_its_metric_to_every_item(tiny_run):
    """benchmarks.gsm8k.scorer (the shipped repetition-rate example): every item's record holds
    its value, recomputed here from the response; the benchmark's metrics hold the mean and the
    function's identity (module hash, the file the eval job took as an input)."""
    from deltaflow.bench.example_scorers import _repeated_4grams

    workdir, _, _ = tiny_run
    for model in ("base", "run_a"):
        recs = read_jsonl(workdir / f"results/evals/{model}/gsm8k.jsonl")
        assert [r["scorer"]["rep4"] for r in recs] == [_repeated_4grams(r["response"]) for r in recs]
        block = json.loads((workdir / f"results/evals/{model}/gsm8k.json").read_text())["scorer"]
        assert block["function"] == "deltaflow.bench.example_scorers:repetition_rate" and block["n"] == 3
        assert block["means"]["rep4"] == pytest.approx(sum(r["scorer"]["rep4"] for r in recs) / 3, abs=1e-6)
        assert (
            block["module_file"].endswith("deltaflow/bench/example_scorers.py")
            and len(block["source_sha256"]) == 64
        )
    assert "scorer" not in read_jsonl(workdir / "results/evals/run_a/arc_easy.jsonl")[0]
    assert (workdir / "results/tables/delta.html").read_text().startswith("<!DOCTYPE html>")


def test_gates_selection_plots_and_model_card(tiny_run):
    workdir, _, _ = tiny_run
    sel = json.loads((workdir / "results/tables/selection.json").read_text())
    gates = json.loads((workdir / "results/tables/gates.json").read_text())
    assert set(gates) == {"run_a", "run_b", "run_b@step3", "run_dpo", "a_dpo_ties", "run_a.x0.5"}
    assert sel["chosen"] in gates
    assert sel["lambda"] == 0.5 and sel["target_axes"] == ["target"] and sel["guarded_axes"] == ["knowledge"]
    assert {c["model"] for c in sel["candidates"]} == set(gates) and sel["frontier"]
    assert (workdir / "results/tables/release_check.txt").read_text().startswith("PASS: ")
    for png in ("forest", "loss_curves", "pareto"):
        assert (workdir / f"results/plots/{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (workdir / "results/model_card.md").read_text()
    chosen = sel["chosen"]
    mixture = {
        "run_a": "mix_a",
        "run_b": "mix_b",
        "run_b@step3": "mix_b",
        "run_dpo": "pref",
        "a_dpo_ties": "mix_a",
        "run_a.x0.5": "mix_a",
    }[chosen]
    for text in (
        f"# {chosen}: adapter on tiny-random-llama",
        "## Delta vs base",
        "## Release gates",
        "## How this model was made",
        f"## Training data: mixture `{mixture}`",
        "## Recipe",
        "## Provenance",
        "config sha256",
        "git commit",
        "base weights sha256",
        "trl 1.",
        "**0 overlap**",
        "fixture-ref",
    ):
        assert text in card, text


def test_model_card_metadata_the_hub_reads_and_the_release_folder(tiny_run):
    """The card opens with the Hub's YAML block, parsed back by huggingface_hub (offline): the
    model-index holds the delta table's scores; the chosen model's folder holds its adapter,
    the tokenizer it is used with and the card as README.md."""
    from huggingface_hub import ModelCard

    from deltaflow.config import load_config
    from deltaflow.models import ModelGraph

    workdir, cfg_path, _ = tiny_run
    chosen = json.loads((workdir / "results/tables/selection.json").read_text())["chosen"]
    card = ModelCard((workdir / "results/model_card.md").read_text())
    data = card.data
    assert data.library_name == "peft" and data.base_model == "tiny-random-llama" and data.license == "other"
    assert "deltaflow" in data.tags and data.model_name == chosen
    graph = ModelGraph(load_config(cfg_path, check_files=False))
    assert data.datasets == graph.training_datasets(chosen)
    assert data.to_dict()["dataset_origins"]["alpaca"]["origin"] == "model-generated"
    # every origin and licence that reached the chosen model's training, through the DAG
    from deltaflow.origins import Origins

    origin = Origins(load_config(cfg_path, check_files=False)).model(chosen)
    assert f"- Training targets written by: {', '.join(sorted(origin.written_by))}" in card.content
    assert "dataset alpaca: model-generated (licence unknown)" in card.content
    df = pd.read_csv(workdir / "results/tables/delta.csv")
    rows = df[(df.model == chosen) & (df.level == "benchmark") & (df.source == "evaluated")]
    got = {(r.dataset_name, r.metric_type): r.metric_value for r in data.eval_results}
    assert got == {(r.benchmark, r.metric): r.score for r in rows.itertuples()}
    release = workdir / "results/release" / chosen
    assert sorted(p.name for p in (workdir / "results/release").iterdir() if not p.name.startswith(".")) == [
        chosen
    ]
    files = {p.name for p in release.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md"} <= files
    assert (release / "README.md").read_text() == (workdir / "results/model_card.md").read_text()
    adapter = workdir / graph.node(chosen).adapter_dir / "adapter_model.safetensors"
    assert (release / "adapter_model.safetensors").read_bytes() == adapter.read_bytes()


def test_strict_gate_fails_the_run_but_keeps_the_tables(tiny_workflow, tmp_path):
    run = copy_run(tiny_workflow, tmp_path)
    work = run.work
    cfg = run.cfg  # the shared run's own config (it lists the decontamination benchmarks)
    cfg["gates"].update(strict=True, target={"target": {"min_gain_pts": 50.0}})
    proc = run.snakemake(configfile=write_config(work, cfg), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "release gate failed (gates.strict is true)" in out
    assert "target axis target: Δ +0.00 pts < required gain +50.00" in out
    # only the selection stage reran; the tables and the card (which records the failure) exist
    assert "rule evaluate" not in out and "rule adapter" not in out
    assert not (work / "results/tables/release_check.txt").exists()
    assert "**FAIL**" in (work / "results/model_card.md").read_text()


def test_release_also_ships_more_models_each_with_its_card_and_notes(tiny_workflow, tmp_path):
    """release.also: a folder and a card for each listed model besides the chosen one; one that
    misses its gates is released all the same and its card names the gates it missed; notes
    (a postmortem) go into its card. Only the card stage reruns (and the selection, for the gate)."""
    run = copy_run(tiny_workflow, tmp_path)
    cfg = run.cfg
    cfg["gates"]["target"] = {"target": {"min_gain_pts": 50.0}}  # no model passes
    also = ["run_b@step3", "run_a.x0.5"]
    cfg["release"] = {"also": also, "notes": {"run_a.x0.5": "Postmortem: half the delta, kept for study."}}
    proc = run.snakemake(configfile=write_config(run.work, cfg))
    out = proc.stdout + proc.stderr
    assert "rule evaluate" not in out and "rule adapter" not in out and "rule model_card" in out
    res = run.work / "results"
    chosen = json.loads((res / "tables/selection.json").read_text())["chosen"]
    folders = sorted(p.name for p in (res / "release").iterdir() if not p.name.startswith("."))
    assert folders == sorted({chosen, *also})
    assert (res / "release" / chosen / "README.md").read_text() == (res / "model_card.md").read_text()
    for model in (m for m in also if m != chosen):
        card = (res / "release" / model / "README.md").read_text()
        from huggingface_hub import ModelCard

        assert ModelCard(card).data.model_name == model
        assert (
            f"Released besides the chosen model ({chosen}), as release.also lists it, although it "
            "misses its gates: target axis target: Δ"
        ) in card
        assert ("## Notes\n\nPostmortem: half the delta" in card) == (model == "run_a.x0.5")
        assert (res / "release" / model / "adapter_model.safetensors").exists()


def test_same_items_for_every_model(tiny_run):
    workdir, _, _ = tiny_run
    for bench in ("arithmetic", "arc_easy", "gsm8k"):
        ids = [
            [r["doc_id"] for r in read_jsonl(workdir / f"results/evals/{m}/{bench}.jsonl")]
            for m in ("base", "run_a")
        ]
        docs = [d["doc_id"] for d in read_jsonl(workdir / f"results/benchmarks/{bench}/docs.jsonl")]
        assert ids[0] == ids[1] == docs


def test_adapter_changed_the_model(tiny_run):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    workdir, _, _ = tiny_run
    base_dir = workdir / "results/models/base"
    tok = AutoTokenizer.from_pretrained(base_dir)
    ids = tok("What is 12 + 34? Answer with the number only.", return_tensors="pt").input_ids
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    with torch.no_grad():
        before = base(ids).logits
    tuned = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_dir), workdir / "results/adapters/run_a"
    )
    with torch.no_grad():
        after = tuned(ids).logits
    assert (after - before).abs().max().item() > 1e-3
    metrics = json.loads((workdir / "results/adapters/run_a/metrics.json").read_text())
    assert metrics["steps"] == 6 and len(metrics["loss_curve"]) == 3
    assert metrics["tokens_seen"] > 0 and metrics["tokens_per_s"] > 0 and metrics["peak_memory_mb"] > 0
    recipe = json.loads((workdir / "results/adapters/run_a/recipe.json").read_text())
    assert recipe["recipe"]["r"] == 4 and recipe["mixture"] == "mix_a"


def test_dora_rslora_run_and_its_checkpoint_arm(tiny_run):
    import torch
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    workdir, _, _ = tiny_run
    run_b = workdir / "results/adapters/run_b"
    cfg = json.loads((run_b / "adapter_config.json").read_text())
    assert cfg["use_dora"] is True and cfg["use_rslora"] is True
    with safe_open(run_b / "adapter_model.safetensors", "pt") as f:
        keys = list(f.keys())
    # DoRA = a learned magnitude vector per adapted layer, beside the LoRA A/B matrices
    assert any("lora_magnitude_vector" in k for k in keys) and any("lora_A" in k for k in keys)
    step3 = run_b / "checkpoints/step3"
    assert (step3 / "adapter_model.safetensors").read_bytes() != (
        run_b / "adapter_model.safetensors"
    ).read_bytes()
    metrics = json.loads((run_b / "metrics.json").read_text())
    assert [c["step"] for c in metrics["checkpoints"]] == [3] and metrics["peft"]["method"] == "dora"
    # the checkpoint is a model of its own in the eval grid, loaded from its own folder
    ev = json.loads((workdir / "results/evals/run_b@step3/arc_easy.json").read_text())
    assert ev["manifest"]["params"]["adapter_dir"] == "results/adapters/run_b/checkpoints/step3"
    base_dir = workdir / "results/models/base"
    ids = AutoTokenizer.from_pretrained(base_dir)("What is 2 + 2?", return_tensors="pt").input_ids
    with torch.no_grad():
        before = AutoModelForCausalLM.from_pretrained(base_dir)(ids).logits
        after = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), run_b)(ids).logits
    assert (after - before).abs().max().item() > 1e-3


def test_merge_and_sweep_arms_record_their_inputs_and_are_evaluated(tiny_run):
    workdir, _, _ = tiny_run
    ties = json.loads((workdir / "results/merges/a_dpo_ties/manifest.json").read_text())
    assert ties["params"]["method"] == "ties" and ties["params"]["adapters"] == {"run_a": 0.6, "run_dpo": 0.4}
    assert ties["density"] == 0.5 and ties["seed"] == 0
    assert [e["path"] for e in ties["inputs"]["adapters"]] == [
        "results/adapters/run_a/manifest.json",
        "results/adapters/run_dpo/manifest.json",
    ]
    assert all(len(e["sha256"]) == 64 for e in ties["inputs"]["adapters"])
    sweep = json.loads((workdir / "results/merges/run_a.x0.5/manifest.json").read_text())
    assert sweep["params"]["kind"] == "sweep" and sweep["params"]["adapters"] == {"run_a": 0.5}
    for model in ("a_dpo_ties", "run_a.x0.5"):
        assert (workdir / f"results/merges/{model}/adapter_model.safetensors").exists()
        assert set(
            json.loads((workdir / f"results/evals/{model}/summary.json").read_text())["benchmarks"]
        ) == {"arithmetic", "arc_easy", "gsm8k"}


def test_every_artifact_has_a_manifest_with_input_hashes(tiny_run):
    workdir, _, _ = tiny_run
    base = json.loads((workdir / "results/models/base/manifest.json").read_text())
    assert base["source"]["type"] == "random_init" and len(base["weights_sha256"]) == 64
    adapter = json.loads((workdir / "results/adapters/run_a/manifest.json").read_text())
    assert len(adapter["inputs"]["train"]["sha256"]) == 64
    assert adapter["packages"]["trl"].startswith("1.")
    ev = json.loads((workdir / "results/evals/run_a/arithmetic.json").read_text())
    assert set(ev["manifest"]["inputs"]) == {"base", "docs", "adapter", "code"}
    assert ev["manifest"]["base_model"]["source"]["type"] == "random_init"
    assert (workdir / "results/data/alpaca/rejected.jsonl").exists()


def test_second_dry_run_has_nothing_to_do(tiny_workflow):
    proc = tiny_workflow.snakemake("-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_bad_config_fails_before_any_job(tmp_path):
    cfg = tiny_config()
    cfg["mixtures"]["mix_a"]["components"][0]["dataset"] = "arithmetc"
    proc = run_snakemake(tmp_path, write_config(tmp_path, cfg), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "mixtures.mix_a.components[0].dataset" in out and "unknown dataset 'arithmetc'" in out
    assert not (tmp_path / "results").exists()


def test_malformed_data_row_names_file_and_line(tmp_path):
    cfg = tiny_config()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
        '{"messages": [}\n'
    )
    cfg["datasets"]["alpaca"] = {"type": "file", "path": str(bad), "format": "messages"}
    proc = run_snakemake(tmp_path, write_config(tmp_path, cfg), "results/data/alpaca/rows.jsonl", check=False)
    assert proc.returncode != 0
    assert "bad.jsonl:2: malformed JSON line" in proc.stdout + proc.stderr
    assert not (tmp_path / "results/data/alpaca/rows.jsonl").exists()


def _audit(workdir, model, benchmark):
    from deltaflow.audit import audit_chain
    from deltaflow.config import load_config
    from deltaflow.models import ModelGraph

    return audit_chain(
        workdir, ModelGraph(load_config(workdir / "config.yaml", check_files=False)), model, benchmark
    )


def test_audit_traces_a_cell_to_data_recipe_model_and_code(tiny_run):
    from deltaflow.audit import format_chain

    workdir, _, _ = tiny_run
    chain = _audit(workdir, "run_a", "arithmetic")
    run = next(s for s in chain["steps"] if s["step"] == "run")
    assert run["params"]["mixture"] == "mix_a" and run["params"]["recipe"]["r"] == 4
    assert {c["name"] for c in chain["mixtures"]["mix_a"]["components"]} == {"arithmetic", "replay"}
    assert chain["datasets"]["alpaca"]["raw"][0]["path"].endswith("alpaca_tiny.json")
    assert chain["base_model"]["source"]["type"] == "random_init"
    assert chain["changed"] == []
    text = format_chain(chain)
    assert text.startswith("run_a x arithmetic:") and "replay: 10 rows" in text
    assert "alpaca_tiny.json (sha256" in text and "base model:" in text
    assert "every recorded hash matches the disk" in text


@pytest.mark.parametrize(
    "model, kind, chain_models",
    [
        ("base", "base", []),
        ("run_b@step3", "checkpoint", ["run_b@step3", "run_b"]),
        ("run_dpo", "run", ["run_dpo", "run_a"]),
        ("a_dpo_ties", "merge", ["a_dpo_ties", "run_a", "run_dpo"]),
        ("run_a.x0.5", "sweep", ["run_a.x0.5", "run_a"]),
    ],
)
def test_audit_traces_every_kind_of_model(tiny_run, model, kind, chain_models):
    """Every model of the tiny config traces through the model graph: a merge through each
    input adapter's own chain (run_dpo continues run_a), a checkpoint or sweep arm through its
    run, each run to its mixture and datasets."""
    workdir, _, _ = tiny_run
    chain = _audit(workdir, model, "gsm8k")
    assert chain["kind"] == kind and chain["changed"] == []
    assert [
        s["name"] for s in chain["steps"] if s["step"] in ("run", "checkpoint", "merge", "sweep")
    ] == chain_models
    mixtures = {"run_a": "mix_a", "run_b": "mix_b", "run_dpo": "pref"}
    assert set(chain["mixtures"]) == {mixtures[m] for m in chain_models if m in mixtures}
    assert [s["step"] for s in chain["steps"]][:3] == ["table", "eval", "benchmark"]
    assert chain["steps"][-1]["step"] == "base"
    for step in chain["steps"]:  # each step: its file, params, code version and packages
        assert (workdir / step["file"]).exists() and step["code"]["git_commit"] and step["packages"]["torch"]
        assert all(f["sha256_now"] for f in step["files"]), step["name"]


def test_audit_flags_a_file_changed_after_the_table(tiny_workflow, tmp_path):
    from deltaflow.audit import format_chain
    from deltaflow.cli import main

    run = copy_run(tiny_workflow, tmp_path)
    train = run.work / "results/mixtures/mix_a/train.jsonl"
    train.write_text(train.read_text() + "\n")  # one byte more, after the fact
    chain = _audit(run.work, "run_a.x0.5", "arithmetic")
    assert [(c["step"], c["name"], c["path"]) for c in chain["changed"]] == [
        ("run", "run_a", "results/mixtures/mix_a/train.jsonl")
    ]
    assert "train: results/mixtures/mix_a/train.jsonl (CHANGED (recorded" in format_chain(chain)
    # the command line: text and JSON, the config's model graph, a clear error for an unknown model
    import contextlib
    import io
    import os

    cwd = os.getcwd()
    os.chdir(run.work)
    try:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["audit", "run_a.x0.5", "arithmetic", "--config", "config.yaml", "--json"]) == 0
        assert json.loads(out.getvalue())["changed"][0]["path"] == "results/mixtures/mix_a/train.jsonl"
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main(["audit", "run_z", "arithmetic", "--config", "config.yaml"]) == 2
        assert "'run_z' is not a model of this config" in err.getvalue()
    finally:
        os.chdir(cwd)


def test_compare_from_the_command_line_equals_the_comparisons_table(tiny_run):
    """`deltaflow compare` recomputes a configured pair from the saved records: the same rows as
    results/tables/comparisons.csv (nothing rerun), and one benchmark alone on request."""
    from deltaflow.cli import compare
    from deltaflow.config import load_config

    workdir, cfg_path, _ = tiny_run
    cfg = load_config(cfg_path, check_files=False)
    ours = compare(workdir, cfg, "run_a", "run_b")
    table = pd.read_csv(workdir / "results/tables/comparisons.csv")
    table = table[table.comparison == "run_b_minus_run_a"].reset_index(drop=True)
    assert len(ours) == len(table) == 7  # 3 benchmarks, 3 axes, macro
    pd.testing.assert_frame_equal(ours.reset_index(drop=True), table, check_dtype=False)
    one = compare(workdir, cfg, "base", "run_a.x0.5", ["arc_easy"])
    assert list(one[one.level == "benchmark"].benchmark) == ["arc_easy"]
    from deltaflow.errors import DeltaflowError

    with pytest.raises(DeltaflowError, match="'run_q' is not a model of this config"):
        compare(workdir, cfg, "run_a", "run_q")


def test_status_says_what_would_rerun_and_why(tiny_workflow, tmp_path):
    from deltaflow.status import format_plan, plan

    run = copy_run(tiny_workflow, tmp_path)
    args = ["-s", str(run.snakefile), "--directory", str(run.work), "--cores", "2"]
    assert plan([*args, "--configfile", str(run.cfg_path)]) == []
    cfg = run.cfg
    cfg["recipes"]["tiny_dora"]["learning_rate"] = 0.02
    jobs = plan([*args, "--configfile", str(write_config(run.work, cfg))])
    by_job = {(j.rule, j.wildcards): j.reason for j in jobs}
    assert "Params have changed" in by_job[("adapter", "run=run_b")]
    assert "Input files updated by another job" in by_job[("evaluate", "model=run_b@step3")]
    assert not any(rule == "adapter" and wc != "run=run_b" for rule, wc in by_job)
    text = format_plan(jobs)
    assert text.startswith(f"{len(jobs)} job(s) would run:") and "adapter run=run_b" in text


def test_manifests_hold_no_secrets(tiny_run):
    """Tokens in the environment of the run (see tiny_run) reach no manifest or metrics file."""
    workdir, _, _ = tiny_run
    files = list((workdir / "results").rglob("*.json"))
    assert len(files) >= 15
    for p in files:
        assert SECRET not in p.read_text(), p


def test_html_report_renders_in_headless_chromium(tiny_workflow, tmp_path):
    """`snakemake --report` gives one HTML file; Chromium runs its JavaScript and shows our
    result categories (tables, plots, model card) in the rendered page."""
    report = tmp_path / "report.html"
    tiny_workflow.snakemake("--report", str(report))
    html = report.read_text()
    assert "rulegraph" in html and "delta.csv" in html and "forest.png" in html
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (make system-tools installs it as root)")
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=15000",
            "--dump-dom",
            report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    ).stdout
    # the category links exist only once React has rendered the page
    for category in ("Tables", "Plots", "Model card", "Selection", "Mixtures"):
        assert f"<span>{category}</span>" in dom and f"<span>{category}</span>" not in html, category
    assert "deltaflow run: base model tiny-random-llama" in dom


def test_long_jobs_report_progress_with_a_rate_and_an_eta(tiny_workflow):
    """Training steps and eval chunks log their progress with tqdm's elapsed<ETA, rate meter;
    the lines reach the console snakemake runs in, prefixed with the job; the libraries' own
    bars refresh at most every 30 s in the logs (TQDM_MININTERVAL, set by the Snakefile)."""
    train = (tiny_workflow.work / "logs/adapters/run_a.log").read_text()
    assert re.search(r"step \d+/\d+ loss [\d.]+ \[\d\d:\d\d<\d\d:\d\d, +[\d.]+ steps/s\]", train), train[
        -2000:
    ]
    evals = (tiny_workflow.work / "logs/evals/base.log").read_text()
    assert re.search(r"arithmetic: chunk \d+/\d+ \(\d+ docs\) in [\d.]+ s; \d+/\d+ docs \[", evals), evals[
        -2000:
    ]
    if tiny_workflow.proc is not None:  # the worker that ran the workflow holds its console
        assert re.search(r"\[adapter run=run_a\] step \d+/\d+ loss", tiny_workflow.proc.stderr)
