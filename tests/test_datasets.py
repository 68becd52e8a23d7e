import gzip
import json

import pytest

from deltaflow.bench.synthetic_tasks import generate_task
from deltaflow.datasets import normalize_dataset, normalize_records
from deltaflow.errors import DataError
from deltaflow.io import read_jsonl


def test_alpaca_rows_normalize_and_bad_rows_are_kept_as_rejections():
    recs = [
        {"instruction": "Say hi", "input": "", "output": "hi"},
        {"instruction": "Add", "input": "2 and 3", "output": "5"},
        {"instruction": "Empty answer", "input": "", "output": "  "},
        {"output": "no instruction"},
        "not an object",
    ]
    out = normalize_records(recs, fmt="alpaca", name="al", split="train", origin="human", where="f.json")
    assert [r["messages"][0]["content"] for r in out.rows] == ["Say hi", "Add\n\n2 and 3"]
    assert out.rows[1]["messages"][1] == {"role": "assistant", "content": "5"}
    assert {r["id"] for r in out.rows} == {"al-0", "al-1"}
    assert [r["record"] for r in out.rejected] == [2, 3, 4]
    assert "empty assistant turn" in out.rejected[0]["reason"]
    assert out.rejected[0]["where"] == "f.json[2]"


def test_sharegpt_preference_rows():
    recs = [
        {
            "conversations": [{"from": "human", "value": "Q?"}],
            "chosen": {"from": "gpt", "value": "good"},
            "rejected": {"from": "gpt", "value": "bad"},
        },
        {
            "conversations": [{"from": "human", "value": "Q2"}],
            "chosen": {"value": ""},
            "rejected": {"value": "x"},
        },
    ]
    out = normalize_records(
        recs, fmt="sharegpt_preference", name="p", split="train", origin="human", where="d"
    )
    assert out.rows[0]["messages"] == [{"role": "user", "content": "Q?"}]
    assert (out.rows[0]["chosen"], out.rows[0]["rejected"]) == ("good", "bad")
    assert len(out.rejected) == 1 and "chosen" in out.rejected[0]["reason"]


def test_real_llamafactory_preference_file_normalizes():
    out = normalize_dataset(
        "dpo",
        {
            "type": "sdist_file",
            "sdist": "llamafactory==0.9.5",
            "path": "data/dpo_en_demo.json",
            "format": "sharegpt_preference",
            "origin": "model-generated",
            "split": "train",
        },
    )
    assert len(out.rows) + len(out.rejected) == 300
    assert len(out.rows) >= 290
    assert all(r["chosen"] and r["rejected"] for r in out.rows)


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"messages": []}\n{"messages": [oops]}\n')
    with pytest.raises(DataError, match=r"rows.jsonl:2: malformed JSON line"):
        read_jsonl(path)


def test_gzip_jsonl_is_read(tmp_path):
    path = tmp_path / "x.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(json.dumps({"a": 1}) + "\n")
    assert read_jsonl(path) == [{"a": 1}]


def test_wrong_format_gives_clear_error(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"instruction": "x", "output": "y"}]))
    with pytest.raises(DataError, match="no usable rows out of 1.*check `format:`"):
        normalize_dataset("a", {"type": "file", "path": str(path), "format": "sharegpt"})


@pytest.mark.parametrize("task", ["arithmetic", "mcq_letters", "spelling"])
def test_generated_tasks_disjoint_and_deterministic(task):
    rows = generate_task(task, train_rows=50, eval_rows=30, seed=3, name="t")
    again = generate_task(task, train_rows=50, eval_rows=30, seed=3, name="t")
    assert rows == again
    train = {r["item_key"] for r in rows if r["split"] == "train"}
    evals = {r["item_key"] for r in rows if r["split"] == "eval"}
    assert len(train) == 50 and len(evals) == 30 and not train & evals
    prompts_train = {r["messages"][0]["content"] for r in rows if r["split"] == "train"}
    assert not prompts_train & {r["messages"][0]["content"] for r in rows if r["split"] == "eval"}
    for r in rows:
        assert r["messages"][1]["content"] == r["label"]


def test_arithmetic_answers_are_correct():
    for r in generate_task("arithmetic", train_rows=40, eval_rows=10, seed=0, name="a"):
        q = r["messages"][0]["content"].removeprefix("What is ").split("?")[0]
        a, op, b = q.split()
        assert str(int(a) + int(b) if op == "+" else int(a) - int(b)) == r["label"]


def test_mcq_letter_points_at_the_sum():
    for r in generate_task("mcq_letters", train_rows=40, eval_rows=10, seed=0, name="m"):
        lines = r["messages"][0]["content"].splitlines()
        a, op, b = lines[0].removeprefix("What is ").rstrip("?").split()
        value = int(a) + int(b) if op == "+" else int(a) - int(b)
        options = dict(line.split(". ") for line in lines[1:5])
        assert int(options[r["label"]]) == value
        assert sum(int(v) == value for v in options.values()) == 1


def test_too_many_generated_rows_is_an_error():
    with pytest.raises(ValueError, match="would overlap"):
        generate_task("spelling", train_rows=10_000, eval_rows=10, seed=0, name="s")


def test_hf_source_loads_through_datasets_from_a_local_copy(tmp_path, monkeypatch):
    """`type: hf` calls datasets.load_dataset(id, revision=...); here the id is a local
    dataset folder (no network), which load_dataset treats like a hub repo snapshot."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    folder = tmp_path / "my_ds"
    folder.mkdir()
    (folder / "train.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": f"q{i}"},
                        {"role": "assistant", "content": f"a{i}"},
                    ]
                }
            )
            + "\n"
            for i in range(5)
        )
    )
    out = normalize_dataset(
        "hfds",
        {
            "type": "hf",
            "id": str(folder),
            "revision": "main",
            "split": "train",
            "format": "messages",
            "subset": None,
        },
    )
    assert [r["messages"][1]["content"] for r in out.rows] == [f"a{i}" for i in range(5)]
    assert out.source["revision"] == "main"


def test_max_reject_fraction_turns_a_bad_source_into_an_error(tmp_path):
    path = tmp_path / "a.json"
    recs = [{"instruction": f"q{i}", "output": "y"} for i in range(7)] + [
        {"instruction": "q", "output": ""}
    ] * 3
    path.write_text(json.dumps(recs))
    spec = {"type": "file", "path": str(path), "format": "alpaca"}
    with pytest.raises(
        DataError,
        match=r"3 of 10 records rejected, more than max_reject_fraction 0.2.*"
        r"empty 'output'.*raise datasets.a.max_reject_fraction",
    ):
        normalize_dataset("a", spec)
    out = normalize_dataset("a", {**spec, "max_reject_fraction": 0.5})
    assert len(out.rows) == 7 and len(out.rejected) == 3


def test_messages_rows_keep_what_a_grpo_reward_checks_and_bad_ones_are_rejections():
    """Rows in the messages format may carry code tests and instruction checkers (what GRPO's
    code and instruction rewards check completions with); malformed ones are rejections with
    the reason, not dropped and not passed on."""
    turn = [{"role": "user", "content": "Write add."}, {"role": "assistant", "content": "def add(a, b): ..."}]
    recs = [
        {"messages": turn, "tests": "assert add(1, 2) == 3", "entry_point": "add"},
        {"messages": turn, "instructions": [{"id": "format:no_whitespace"}]},
        {"messages": turn, "tests": ["assert add(1, 2) == 3"]},
        {"messages": turn, "instructions": [{"kwargs": {}}]},
    ]
    out = normalize_records(recs, fmt="messages", name="c", split="train", origin="human", where="c.jsonl")
    assert out.rows[0]["tests"] == "assert add(1, 2) == 3" and out.rows[0]["entry_point"] == "add"
    assert out.rows[1]["instructions"] == [{"id": "format:no_whitespace", "kwargs": {}}]
    assert [r["record"] for r in out.rejected] == [2, 3]
    assert "'tests' must be a string" in out.rejected[0]["reason"]
    assert "'instructions' must be a non-empty list of {id" in out.rejected[1]["reason"]
