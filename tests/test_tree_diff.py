"""`deltaflow compare --against`: two result trees compared cell by cell, paired over items,
with the tables' own statistics and refusals; changed cells only by default; the other tree a
directory or a git revision that tracks results/."""

import subprocess

import pytest
from conftest import REPO

from deltaflow.cli import main
from deltaflow.errors import DeltaflowError
from deltaflow.io import sha256_path, write_json, write_jsonl
from deltaflow.tables import TableSettings
from deltaflow.tree_diff import diff_trees, tree_results

CONFIG = str(REPO / "tests/configs/tiny.yaml")


def write_tree(root, cells: dict, decoding="greedy"):
    """cells: {(model, benchmark): [scores]} written as the eval jobs write them."""
    for (model, bench), scores in cells.items():
        d = root / "results/evals" / model
        d.mkdir(parents=True, exist_ok=True)
        rec = [{"doc_id": f"q{i}", "score": s, "prompt_hash": f"p{i}"} for i, s in enumerate(scores)]
        write_jsonl(d / f"{bench}.jsonl", rec)
        write_json(d / f"{bench}.json", {"score": sum(scores) / len(scores), "n": len(scores), "metric": "acc",
                                         "axis": "knowledge", "decoding_hash": decoding, "decoding": {"d": decoding}})  # fmt: skip
    for model in {m for m, _ in cells}:
        d = root / "results/evals" / model
        entries = {
            b: {
                kind: f"results/evals/{model}/{b}.{ext}"
                for kind, ext in (("metrics", "json"), ("samples", "jsonl"))
            }
            for m, b in cells
            if m == model
        }
        for e in entries.values():
            e.update({f"{k}_sha256": sha256_path(root / e[k]) for k in ("metrics", "samples")})
        write_json(d / "summary.json", {"model": model, "benchmarks": entries})
    return root / "results"


BEFORE = {("base", "a"): [1, 0, 0, 1] * 5, ("run", "a"): [1, 1, 0, 0] * 5, ("run", "b"): [0, 1] * 10}


def test_changed_cells_are_paired_over_items_and_unchanged_ones_left_out(tmp_path):
    after = dict(BEFORE)
    after[("run", "a")] = [1, 1, 1, 1] + [1, 1, 0, 0] * 4  # two items flipped to correct
    after[("run2", "a")] = [1] * 20  # a new model: in this tree only
    a, b = write_tree(tmp_path / "old", BEFORE), write_tree(tmp_path / "new", after)
    settings = TableSettings()
    df = diff_trees(tree_results(a), tree_results(b), settings)
    assert list(zip(df.model, df.benchmark, df.status)) == [
        ("run", "a", "changed"),
        ("run2", "a", "only here"),
    ]
    row = df.iloc[0]
    assert (row.against, row.here, row.delta_pts, row.changed_items, row.n) == (50.0, 60.0, 10.0, 2, 20)
    assert row.mcnemar_p == pytest.approx(0.5) and row.ci_low <= 10.0 <= row.ci_high
    every = diff_trees(tree_results(a), tree_results(b), settings, every_cell=True)
    assert len(every) == 4 and set(every.status) == {"changed", "unchanged", "only here"}
    assert diff_trees(tree_results(a), tree_results(b), settings, models=["base"]).empty


def test_other_items_or_decoding_are_refused_with_the_tables_errors(tmp_path):
    a = write_tree(tmp_path / "old", BEFORE)
    b = write_tree(tmp_path / "new", BEFORE, decoding="sampled")
    with pytest.raises(
        DeltaflowError, match=r"a: base \(--against\) and base \(here\) were decoded differently"
    ):
        diff_trees(tree_results(a), tree_results(b), TableSettings())
    c = write_tree(tmp_path / "short", {**BEFORE, ("run", "b"): [0, 1] * 9})
    with pytest.raises(DeltaflowError, match="were scored on different items"):
        diff_trees(tree_results(a), tree_results(c), TableSettings())


def test_against_a_git_revision_on_the_command_line(tmp_path, capsys):
    repo = tmp_path / "exp"
    results = write_tree(repo, BEFORE)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git[:3], "init", "-q"], check=True)
    subprocess.run([*git, "add", "results"], check=True)
    subprocess.run([*git, "commit", "-qm", "last week"], check=True)
    write_tree(repo, {**BEFORE, ("run", "b"): [1, 1] * 10})  # today's results, not committed
    assert main(["compare", "--against", "HEAD", "--results", str(results), "--config", CONFIG]) == 0
    out = capsys.readouterr().out
    assert "| run     | b" in out and "1 changed cell(s)" in out and "| base" not in out
    assert (
        main(
            ["compare", "--against", "HEAD", "--all", "--csv", "--results", str(results), "--config", CONFIG]
        )
        == 0
    )
    assert capsys.readouterr().out.count("\n") == 4  # header + 3 cells
    assert main(["compare", "--against", "nope", "--results", str(results), "--config", CONFIG]) == 2
    assert "neither a results directory nor a git revision" in capsys.readouterr().err
