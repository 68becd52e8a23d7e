"""Incremental reruns: an edit reruns exactly the jobs downstream of it, nothing else.

Runs the tiny two-mixture workflow once, then asserts on the dry-run job list after each
edit (Snakemake 9.27's `--list-changes params` misreports; the dry run's jobs are right).
The workflow files are copied so that a code edit can be made without touching the repo.
"""

import json
import re
import subprocess
import sys

import pytest
import yaml
from conftest import copy_run, planned, run_snakemake, write_config

pytestmark = pytest.mark.e2e


def planned_jobs(workdir, cfg_path, snakefile, env=None):
    proc = run_snakemake(workdir, cfg_path, "-n", snakefile=snakefile, env=env)
    return planned(proc.stdout + proc.stderr)[0]


@pytest.fixture(scope="module")
def done(tiny_workflow, tmp_path_factory):
    """A copy of the session's tiny run for this module's dry runs (each test restores what it
    edits)."""
    run = copy_run(tiny_workflow, tmp_path_factory.mktemp("reruns"))
    return run.work, run.cfg, run.wf


@pytest.fixture
def fresh(tiny_workflow, tmp_path):
    """A private copy of the session's tiny run for a test that runs jobs on it (never restored:
    nothing else reads it)."""
    run = copy_run(tiny_workflow, tmp_path)
    return run.work, run.cfg, run.wf


# the tables and what reads them: gates/selection, the release check, plots, the model card
TABLES_AND_AFTER = {
    ("delta_table", ""),
    ("select_model", ""),
    ("release_check", ""),
    ("plots", ""),
    ("model_card", ""),
}


def edited(work, cfg, mutate):
    new = yaml.safe_load(yaml.safe_dump(cfg))
    mutate(new)
    return write_config(work, new)


def test_nothing_to_do_after_a_run(done):
    work, _cfg, wf = done
    assert planned_jobs(work, work / "config.yaml", wf / "Snakefile") == set()


def test_editing_one_mixture_reruns_only_its_run(fresh):
    work, cfg, wf = fresh
    path = edited(work, cfg, lambda c: c["mixtures"]["mix_b"]["components"][0].update(fraction=0.75))
    assert planned_jobs(work, path, wf / "Snakefile") == {
        ("mixture", "mixture=mix_b"),
        ("adapter", "run=run_b"),
        ("evaluate", "model=run_b"),
        ("evaluate", "model=run_b@step3"),
        *TABLES_AND_AFTER,
    }
    # run it: exactly that mixture's manifest changes
    mixtures = work / "results/mixtures"
    before = {m: (mixtures / m / "manifest.json").read_bytes() for m in ("mix_a", "mix_b")}
    train_b = (mixtures / "mix_b/train.jsonl").read_bytes()
    run_snakemake(
        work,
        path,
        "results/mixtures/mix_a/manifest.json",
        "results/mixtures/mix_b/manifest.json",
        snakefile=wf / "Snakefile",
    )
    assert (mixtures / "mix_a/manifest.json").read_bytes() == before["mix_a"]
    assert (mixtures / "mix_b/manifest.json").read_bytes() != before["mix_b"]
    assert (mixtures / "mix_b/train.jsonl").read_bytes() != train_b
    # and back: the same config and seed give a byte-identical train file
    write_config(work, cfg)
    run_snakemake(
        work, work / "config.yaml", "results/mixtures/mix_b/train.jsonl", snakefile=wf / "Snakefile"
    )
    assert (mixtures / "mix_b/train.jsonl").read_bytes() == train_b


def test_editing_one_benchmark_n_reruns_that_benchmark_for_every_model(fresh):
    work, cfg, wf = fresh
    path = edited(work, cfg, lambda c: c["benchmarks"]["arc_easy"].update(n=6))
    assert planned_jobs(work, path, wf / "Snakefile") == {
        # the item pool (what mixtures are decontaminated against) does not depend on n:
        # no mixture, adapter or benchmark_items job reruns
        ("benchmark_docs", "benchmark=arc_easy"),
        ("evaluate", "model=base"),
        ("evaluate", "model=run_a"),
        ("evaluate", "model=run_b"),
        ("evaluate", "model=run_b@step3"),
        ("evaluate", "model=run_dpo"),
        ("evaluate", "model=a_dpo_ties"),
        ("evaluate", "model=run_a.x0.5"),
        *TABLES_AND_AFTER,
    }
    # The eval jobs rerun (one per model; two are run here), but only arc_easy is recomputed:
    # the other benchmarks' results come from the content-addressed cache, byte-identical.
    models = ("base", "run_a")
    targets = [f"results/evals/{m}/summary.json" for m in models]
    before = {p: p.read_bytes() for p in (work / "results/evals").glob("*/gsm8k.jsonl")}
    run_snakemake(work, path, *targets, snakefile=wf / "Snakefile")
    for model in models:
        arc = json.loads((work / f"results/evals/{model}/arc_easy.json").read_text())
        assert arc["n"] == 6 and arc["cache"]["hit"] is False
        for bench in ("arithmetic", "gsm8k"):
            assert (
                json.loads((work / f"results/evals/{model}/{bench}.json").read_text())["cache"]["hit"] is True
            )
    assert {p: p.read_bytes() for p in before} == before
    # back to the original n: every result is in the cache, nothing is recomputed
    write_config(work, cfg)
    run_snakemake(work, work / "config.yaml", *targets, snakefile=wf / "Snakefile")
    for model in models:
        for bench in ("arithmetic", "arc_easy", "gsm8k"):
            assert (
                json.loads((work / f"results/evals/{model}/{bench}.json").read_text())["cache"]["hit"] is True
            )


def test_editing_a_recipe_reruns_its_runs(done):
    work, cfg, wf = done
    path = edited(work, cfg, lambda c: [r.update(learning_rate=0.02) for r in c["recipes"].values()])
    jobs = planned_jobs(work, path, wf / "Snakefile")
    assert {j for j in jobs if j[0] == "adapter"} == {
        ("adapter", "run=run_a"),
        ("adapter", "run=run_b"),
        ("adapter", "run=run_dpo"),
    }
    assert not any(j[0] in ("mixture", "dataset", "base_model", "benchmark_docs") for j in jobs)
    assert {j for j in jobs if j[0] == "evaluate"} == {
        ("evaluate", "model=run_a"),
        ("evaluate", "model=run_b"),
        ("evaluate", "model=run_b@step3"),
        ("evaluate", "model=run_dpo"),
        ("evaluate", "model=a_dpo_ties"),
        ("evaluate", "model=run_a.x0.5"),
    }
    # one recipe: its run and what continues that run's adapter (run_dpo's init_from)
    path = edited(work, cfg, lambda c: c["recipes"]["tiny_dora"].update(learning_rate=0.02))
    jobs = planned_jobs(work, path, wf / "Snakefile")
    assert {j for j in jobs if j[0] in ("adapter", "evaluate")} == {
        ("adapter", "run=run_b"),
        ("evaluate", "model=run_b"),
        ("evaluate", "model=run_b@step3"),
    }
    path = edited(work, cfg, lambda c: c["recipes"]["tiny_lora"].update(learning_rate=0.02))
    jobs = planned_jobs(work, path, wf / "Snakefile")
    # ... and the merge and sweep arm built from those adapters
    assert {j for j in jobs if j[0] in ("adapter", "merge_adapters", "evaluate")} == {
        ("adapter", "run=run_a"),
        ("adapter", "run=run_dpo"),
        ("evaluate", "model=run_a"),
        ("evaluate", "model=run_dpo"),
        ("merge_adapters", "merge=a_dpo_ties"),
        ("merge_adapters", "merge=run_a.x0.5"),
        ("evaluate", "model=a_dpo_ties"),
        ("evaluate", "model=run_a.x0.5"),
    }
    write_config(work, cfg)


def test_gate_or_axis_edit_reruns_no_eval(done):
    work, cfg, wf = done
    path = edited(work, cfg, lambda c: c["gates"].update(strict=True, **{"lambda": 3.0}))
    assert planned_jobs(work, path, wf / "Snakefile") == TABLES_AND_AFTER - {("delta_table", "")}
    # regrouping a benchmark's axis changes the axis rows: the tables rerun, no eval does
    path = edited(work, cfg, lambda c: c["benchmarks"]["gsm8k"].update(axis="knowledge"))
    assert planned_jobs(work, path, wf / "Snakefile") == TABLES_AND_AFTER
    write_config(work, cfg)


def test_touch_without_change_reruns_nothing(done):
    work, _cfg, wf = done
    data = work / "results/data/arithmetic/rows.jsonl"
    data.touch()
    (wf / "scripts/deltaflow/mixture.py").touch()
    assert planned_jobs(work, work / "config.yaml", wf / "Snakefile") == set()


def test_code_change_reruns_that_stage(done):
    work, _cfg, wf = done
    plots = wf / "scripts/deltaflow/plots.py"
    stats = wf / "scripts/deltaflow/stats.py"
    originals = {f: f.read_text() for f in (plots, stats)}
    try:
        plots.write_text(originals[plots] + "\n# a change\n")
        # (the release check runs after the plots, so it follows them)
        assert planned_jobs(work, work / "config.yaml", wf / "Snakefile") == {
            ("plots", ""),
            ("release_check", ""),
        }
        # the stats module: the tables and everything downstream of them, nothing upstream
        stats.write_text(originals[stats] + "\n# a change\n")
        assert planned_jobs(work, work / "config.yaml", wf / "Snakefile") == TABLES_AND_AFTER
    finally:
        for f, text in originals.items():
            f.write_text(text)


def test_every_module_edit_reruns_exactly_the_stages_that_import_it(done):
    """Edit every deltaflow module at once: every job is planned, and each job's code inputs
    are exactly the transitive deltaflow imports of its rule's script (where no upstream job
    reruns, the dry run's reason names exactly those files), so an edit to any module a stage
    imports schedules it, and a module it does not import is no input of it. Restored
    afterwards (same content: nothing to do)."""
    from deltaflow.codedeps import code_closure

    work, _cfg, wf = done
    pkg = wf / "scripts/deltaflow"
    originals = {f: f.read_text() for f in pkg.rglob("*.py")}
    scripts = {}
    for smk in (wf / "rules").glob("*.smk"):
        for block in re.split(r"\n(?=rule \w+:)", smk.read_text()):
            m = re.match(r"rule (\w+):", block)
            script = re.search(r'script:\s*\n\s*"\.\./scripts/(\w+\.py)"', block)
            if m and script:
                scripts[m.group(1)] = wf / "scripts" / script.group(1)
    try:
        for f, text in originals.items():
            f.write_text(text + "\n# edited\n")
        proc = run_snakemake(work, work / "config.yaml", "-n", snakefile=wf / "Snakefile")
        blocks = re.split(r"\n(?=(?:local)?rule \w+:)", proc.stdout + proc.stderr)
        seen = set()
        for block in blocks:
            m = re.match(r"(?:local)?rule (\w+):", block.strip())
            if not m or m.group(1) == "all":
                continue
            want = set(code_closure(scripts[m.group(1)], package_dir=pkg))
            inputs = {
                (work / p.strip()).resolve() for p in re.search(r"input: (.*)", block).group(1).split(",")
            }
            assert {p for p in inputs if p.is_relative_to(pkg)} == want, m.group(1)
            # a job no upstream job reruns is scheduled by the edit of its own code alone
            updated = re.search(r"Updated input files: ([^;\n]*)", block)
            if updated:
                assert {(work / p.strip()).resolve() for p in updated.group(1).split(",")} == want, m.group(1)
            else:
                assert "Input files updated by another job" in block, block
            seen.add(m.group(1))
        # every rule of the workflow that ran in the tiny config was planned
        assert seen >= {
            "base_model",
            "dataset",
            "mixture",
            "adapter",
            "benchmark_items",
            "benchmark_docs",
            "evaluate",
            "merge_adapters",
            "delta_table",
            "select_model",
            "release_check",
            "plots",
            "model_card",
        }
    finally:
        for f, text in originals.items():
            f.write_text(text)
    assert planned_jobs(work, work / "config.yaml", wf / "Snakefile") == set()


def test_parser_fix_rescores_saved_outputs_without_a_model(fresh):
    """An answer-parser change (here: GSM8K's regex takes the first number instead of the last)
    reruns every eval job, but each finds its raw outputs cached and only re-scores (two models'
    jobs are run here); `deltaflow rescore` previews the same numbers from the saved outputs."""
    work, _cfg, wf = fresh
    yml = wf / "scripts/deltaflow/bench/registry/gsm8k.yaml"
    original = yml.read_text()
    before = {
        m: json.loads((work / f"results/evals/{m}/gsm8k.jsonl").read_text().splitlines()[0])
        for m in ("base", "run_a")
    }
    try:
        yml.write_text(original.replace("group_select: -1", "group_select: 0"))
        # the preview: no model is loaded (torch is never imported)
        script = (
            f"import sys; sys.path.insert(0, {str(wf / 'scripts')!r}); from deltaflow.cli import main; "
            "rc = main(['rescore', 'gsm8k', '--config', 'config.yaml']); "
            "sys.exit(rc if 'torch' not in sys.modules else 99)"
        )
        proc = subprocess.run(
            [sys.executable, "-c", script], cwd=work, capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stderr
        assert "base" in proc.stdout and "items changed" in proc.stdout
        # the workflow imports deltaflow (and its registry) from the copy edited here
        env = {"PYTHONPATH": str(wf / "scripts")}
        assert {j[0] for j in planned_jobs(work, work / "config.yaml", wf / "Snakefile", env)} >= {"evaluate"}
        models = ("base", "run_a")
        run_snakemake(
            work,
            work / "config.yaml",
            *[f"results/evals/{m}/summary.json" for m in models],
            snakefile=wf / "Snakefile",
            env=env,
        )
        for model in models:
            ev = json.loads((work / f"results/evals/{model}/gsm8k.json").read_text())
            assert ev["cache"]["hit"] is True and ev["scoring"]["extract"]["group_select"] == 0
            log = (work / f"logs/evals/{model}.log").read_text()  # Snakemake starts a rerun job's log afresh
            assert "scoring only" in log and "evaluating" not in log
        for m, rec in before.items():
            now = json.loads((work / f"results/evals/{m}/gsm8k.jsonl").read_text().splitlines()[0])
            assert now["responses"] == rec["responses"]  # same outputs, new parse
    finally:
        yml.write_text(original)
