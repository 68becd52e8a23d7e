"""The example configs (config/examples/*.yaml): each one validates and dry-runs (`snakemake -n`),
and the planned DAG holds the jobs the example is written for: an adapter job per run, an eval job
per model (runs, checkpoints, sweep arms, merges, exports, outside models), a judge job per model
where a benchmark is judged, the imports, the generations, the tables and the card.

The examples name hub models and datasets at placeholder revisions: a dry run only builds the DAG,
so nothing is downloaded (HF_HUB_OFFLINE is set all the same). Each example runs in its own working
directory holding a copy of config/examples/, because `benchmark_dirs` and every relative path in a
config are relative to the directory snakemake runs in (the repo root for a real run).
"""

import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from conftest import REPO, planned, run_snakemake

EXAMPLES_DIR = REPO / "config/examples"
EXAMPLES = sorted(p.stem for p in EXAMPLES_DIR.glob("*.yaml"))

# The jobs each example must plan, as (rule, wildcards): written out by hand, not derived from the
# workflow's own model graph, so that a run, arm or import silently dropped from the DAG fails here.
FINAL = {("delta_table", ""), ("select_model", ""), ("model_card", ""), ("release_check", ""), ("plots", "")}


def _adapters(*runs):
    return {("adapter", f"run={r}") for r in runs}


def _evals(*models):
    return {("evaluate", f"model={m}") for m in models}


def _judged(*models):
    return {("judge", f"model={m}") for m in models}


def _outside(*models):
    return {("outside_model", f"outside={m}") for m in models}


def _items(*benchmarks):
    return {("benchmark_items", f"benchmark={b}") for b in benchmarks}


_CHAT_RUNS = (
    "chat_v2",
    "chat_v3_retune",
    "chat_v4_raft",
    "chat_long",
    "chat_recovered",
    "chat_v4_hot",
    "chat_v3_v04",
    "chat_v5",
)
_RL_RUNS = ("raw_base", "think_base", "think_base_rl", "think_phase3", "think_phase3_rl")
_SLAYER_RUNS = (
    "slayer_v2",
    "slayer_v2_rslora",
    "slayer_v2_dpo",
    "slayer_v2_lora",
    "knowledge",
    "style_on_knowledge",
)
_SLAYER_MODELS = (
    "base",
    *_SLAYER_RUNS,
    "slayer_v1",
    "bielik_7b",
    "bielik_11b",
    "slayer_v2@epoch1",  # per-epoch checkpoints are arms (best, not last)
    "slayer_v2_rslora@epoch1",
    "slayer_v2_lora@epoch1",
    "style_on_knowledge@epoch1",
    "slayer_v2_lora.x0.3",  # the rescue sweep
    "slayer_v2_lora.x0.5",
    "slayer_v2_lora.x0.7",
    "knowledge_plus_style",  # knowledge adapter merged with the behaviour adapter
    "slayer_v2.merged",  # the shipped exports
    "slayer_v2.q8_0.gguf",
    "slayer_v2.q4_k_m.gguf",
)
_KLEJ = ("klej_psc", "klej_ppc", "klej_dyk", "klej_8tags", "klej_polemo2_in")

EXPECTED = {
    "anti_forgetting_dora": {
        "jobs": _adapters(*_SLAYER_RUNS)
        | _evals(*_SLAYER_MODELS)
        | _judged(*_SLAYER_MODELS)
        | _outside("slayer_v1", "bielik_7b", "bielik_11b")
        | _items(*_KLEJ, "belebele_pl", "pl_style", "pl_exams", "mmlu", "gsm8k", "mbpp", "ifeval")
        | {("generate", "generation=self_replay")}
        | {("mixture", f"mixture={m}") for m in ("train_v2_mix", "style_pairs", "knowledge_mix")}
        | {("merge_adapters", f"merge={m}") for m in ("knowledge_plus_style", "slayer_v2_lora.x0.5")}
        | {("merge_full", "export=slayer_v2"), ("gguf_parity_report", "")},
        "counts": {"adapter": 6, "evaluate": len(_SLAYER_MODELS), "judge": len(_SLAYER_MODELS)},
    },
    "chat_tune_multipliers": {
        "jobs": _adapters(*_CHAT_RUNS)
        | _evals("base", "ghostlm_v04", "chat_v3_canonical", *_CHAT_RUNS)
        | _outside("chat_v3_canonical")
        | _items("ctibench_mcq")
        | {("other_base_model", "base=ghostlm_v04")}
        | {
            ("mixture", f"mixture={m}")
            for m in ("qa_only", "raw_x5", "raw_x5_v04", "raft_x5", "cot_x1_talk_x30", "hybrid")
        },
        "counts": {"adapter": 8, "evaluate": 11, "mixture": 6},
    },
    "method_comparison": {
        "jobs": _adapters("sft", "dpo", "grpo", "rloo", "sft_first_attempt", "sft_1_5b")
        | _evals("base", "instruct", "sft", "dpo", "grpo", "rloo", "instruct_base", "stretch_1_5b")
        | _evals("sft_first_attempt", "sft_1_5b")
        | _outside("instruct")
        | {("other_base_model", f"base={b}") for b in ("instruct_base", "stretch_1_5b")}
        | _items("mmlu", "gsm8k", "truthfulqa_mc1", "ifeval"),
        "counts": {"adapter": 6, "evaluate": 10, "benchmark_items": 4, "mixture": 5},
    },
    "rl_thinking": {
        "jobs": _adapters(*_RL_RUNS)
        | _evals("base", "phase3", *_RL_RUNS)
        | _judged("base", "phase3", *_RL_RUNS)
        | {("other_base_model", "base=phase3")}
        | _items("continuation", "reward_gate", "gsm8k", "math500", "gpqa_diamond"),
        "counts": {"adapter": 5, "evaluate": 7, "judge": 7, "mixture": 5},
    },
    "task_packs": {
        "jobs": _adapters(
            "capability_midtrain", "release_from_base", "release_from_capability", "balanced_research"
        )
        | _evals(
            "base", "capability_midtrain", "release_from_base", "release_from_capability", "balanced_research"
        )
        | _items("arithmetic", "spelling", "identity_refusal")
        | {("mixture", f"mixture={m}") for m in ("release_pack", "capability_pack", "balanced_pack")},
        "counts": {"adapter": 4, "evaluate": 5, "mixture": 3},
    },
}


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory):
    """Every example dry-run once, side by side (each is a few seconds of imports and validation)."""

    # the folders first, in this thread: pytest's mktemp is not thread-safe (two threads creating
    # the session's base folder at once fail with "not a normalized and relative path")
    works = {name: tmp_path_factory.mktemp(name) for name in EXAMPLES}

    def dry_run(name):
        work = works[name]
        shutil.copytree(EXAMPLES_DIR, work / "config/examples")
        return run_snakemake(work, work / f"config/examples/{name}.yaml", "-n", check=False, timeout=300)

    with ThreadPoolExecutor(max_workers=min(len(EXAMPLES), os.cpu_count() or 1)) as pool:
        return dict(zip(EXAMPLES, pool.map(dry_run, EXAMPLES)))


def test_every_example_has_its_expectations():
    assert EXAMPLES, "no example configs found"
    assert sorted(EXPECTED) == EXAMPLES


@pytest.mark.e2e  # five dry runs, ~10-20 s of imports and validation each (about a minute on 2 cores)
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_dry_run_plans_its_jobs(dry_runs, name):
    proc = dry_runs[name]
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{name}: dry run failed ({proc.returncode}):\n{out[-6000:]}"
    assert "This was a dry-run" in out
    jobs, counts = planned(proc.stdout)
    expected = EXPECTED[name]
    missing = (expected["jobs"] | FINAL) - jobs
    assert not missing, f"{name}: jobs missing from the plan: {sorted(missing)}"
    for rule, n in expected["counts"].items():
        assert counts.get(rule) == n, f"{name}: {counts.get(rule)} {rule} jobs planned, expected {n}"
    # nothing ran: a dry run writes no results
    workdir = Path(proc.args[proc.args.index("--directory") + 1])
    assert not (workdir / "results").exists()


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_pins_nothing_it_could_not_check(name):
    """Hub revisions are the placeholder a user must replace, never an invented commit sha."""
    text = (EXAMPLES_DIR / f"{name}.yaml").read_text()
    revisions = re.findall(r"revision:\s*([^\s,}]+)", text)
    assert revisions, f"{name}: no pinned hub source"
    assert set(revisions) == {"PIN-ME-commit-sha"}, f"{name}: {sorted(set(revisions))}"
    assert yaml.safe_load(text)  # plain YAML (anchors and merge keys only)


def test_example_benchmarks_pin_nothing_they_could_not_check():
    for path in sorted((EXAMPLES_DIR / "benchmarks").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        assert spec["source"]["revision"] == "PIN-ME-commit-sha", path.name


def test_the_readme_has_a_section_per_example():
    readme = (EXAMPLES_DIR / "README.md").read_text()
    for name in EXAMPLES:
        assert f"config/examples/{name}.yaml" in readme, name
