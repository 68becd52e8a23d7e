"""datasets.<name>.mapping: rows of any shape through Jinja templates over their own fields
(a declared benchmark's vocabulary), checked on the first rows before any job."""

import json

import pytest
from conftest import REPO, tiny_config

from deltaflow.config import validate_config
from deltaflow.datasets import normalize_dataset
from deltaflow.errors import ConfigError, DataError

ALPACA = str(REPO / "tests/fixtures/alpaca_tiny.json")
ALPACA_MAPPING = {"user": "{{instruction}}{% if input %}\n\n{{input}}{% endif %}", "assistant": "output"}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_an_alpaca_mapping_gives_the_rows_of_format_alpaca():
    known = normalize_dataset("al", {"type": "file", "path": ALPACA, "format": "alpaca", "origin": "human"})
    mapped = normalize_dataset(
        "al", {"type": "file", "path": ALPACA, "mapping": ALPACA_MAPPING, "origin": "human"}
    )
    assert len(known.rows) > 3
    assert mapped.rows == known.rows
    assert mapped.excluded == 0


def test_the_real_llamafactory_pairs_mapped_from_their_fields_equal_the_known_format():
    spec = {"type": "sdist_file", "sdist": "llamafactory==0.9.5", "path": "data/dpo_en_demo.json"}
    known = normalize_dataset("dpo", {**spec, "format": "sharegpt_preference", "max_rows": 40})
    mapped = normalize_dataset(
        "dpo",
        {
            **spec,
            "max_rows": 40,
            "mapping": {
                "user": "{{conversations[-1]['value']}}",
                "chosen": "{{chosen['value']}}",
                "rejected": "{{rejected['value']}}",
                # multi-turn prompts are left out here (counted), the rest must match
                "where": "{{conversations | length == 1}}",
            },
        },
    )
    single = [r for r in known.rows if len(r["messages"]) == 1]
    assert len(single) >= 10
    assert mapped.rows == single
    assert mapped.excluded == len(known.rows) + len(known.rejected) - len(mapped.rows) - len(mapped.rejected)


def test_dolly_and_klej_shaped_rows_with_where_id_label_and_system(tmp_path):
    dolly = [
        {"instruction": "Name a colour.", "context": "", "response": "Red.", "category": "open_qa"},
        {
            "instruction": "Summarize.",
            "context": "Cats sleep.",
            "response": "They sleep.",
            "category": "summarization",
        },
        {"instruction": "Skip me", "context": "", "response": "x", "category": "brainstorming"},
        {"instruction": "No answer", "context": "", "response": "", "category": "open_qa"},
        {"instruction": "Null answer", "context": "", "response": None, "category": "open_qa"},
    ]
    out = normalize_dataset(
        "dolly",
        {
            "type": "file",
            "path": write_jsonl(tmp_path / "dolly.jsonl", dolly),
            "mapping": {
                "system": "You are helpful.",
                "user": "{{instruction}}{% if context %}\n\n{{context}}{% endif %}",
                "assistant": "response",
                "label": "category",
                "id": "dolly-{{_index if _index is defined else instruction | lower | replace(' ', '_')}}",
                "where": "{{category != 'brainstorming'}}",
            },
            "max_reject_fraction": 0.5,
        },
    )
    assert [r["messages"] for r in out.rows] == [
        [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Red."},
        ],
        [
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "Summarize.\n\nCats sleep."},
            {"role": "assistant", "content": "They sleep."},
        ],
    ]
    assert [r["label"] for r in out.rows] == ["open_qa", "summarization"]
    assert [r["id"] for r in out.rows] == ["dolly-dolly-name_a_colour.", "dolly-dolly-summarize."]
    assert out.excluded == 1  # brainstorming, left out by where: and counted
    assert [(r["record"], r["reason"]) for r in out.rejected] == [
        (3, "empty assistant turn"),
        (4, "mapping.assistant: the row's 'response' is null"),
    ]

    klej = [{"sentence": "Dobry film.", "target": "1"}, {"sentence": "Zły film.", "target": "0"}]
    out = normalize_dataset(
        "klej",
        {
            "type": "file",
            "path": write_jsonl(tmp_path / "klej.jsonl", klej),
            "mapping": {"user": "Sentiment: {{sentence}}", "assistant": "target", "label": "target"},
        },
    )
    assert [(r["messages"][0]["content"], r["messages"][1]["content"], r["label"]) for r in out.rows] == [
        ("Sentiment: Dobry film.", "1", "1"),
        ("Sentiment: Zły film.", "0", "0"),
    ]


def test_a_text_mapping_makes_document_rows(tmp_path):
    docs = [{"title": "A", "body": "first"}, {"title": "B", "body": "second"}]
    out = normalize_dataset(
        "docs",
        {
            "type": "file",
            "path": write_jsonl(tmp_path / "d.jsonl", docs),
            "mapping": {"text": "{{title}}: {{body}}"},
        },
    )
    assert [(r["text"], r["messages"]) for r in out.rows] == [("A: first", []), ("B: second", [])]


def mapped_config(path, mapping, **extra):
    cfg = tiny_config()
    cfg["datasets"]["mapped"] = {"type": "file", "path": path, "mapping": mapping, **extra}
    cfg["mixtures"]["mix_a"]["components"].append({"name": "mapped", "dataset": "mapped", "rows": 2})
    return cfg


def test_a_mapping_that_does_not_fit_the_files_first_rows_is_a_config_error(tmp_path):
    path = write_jsonl(tmp_path / "dolly.jsonl", [{"instruction": "Q", "response": "A"}] * 3)
    validate_config(mapped_config(path, {"user": "instruction", "assistant": "response"}))
    with pytest.raises(ConfigError) as err:
        validate_config(mapped_config(path, {"user": "{{instructions}}", "assistant": "response"}))
    msg = str(err.value)
    assert "datasets.mapped.mapping" in msg and "row 0" in msg and str(path) in msg
    assert "'instructions' is undefined" in msg and "instruction, response" in msg
    with pytest.raises(
        ConfigError, match=r"datasets\.mapped\.mapping\.user': the template .* does not parse"
    ):
        validate_config(mapped_config(path, {"user": "{{instruction", "assistant": "response"}))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"format": "alpaca"}, "give format .* or mapping .*, not both"),
        ({"mapping": {"user": "q", "text": "t"}}, "give user .* or text .* alone"),
        ({"mapping": {"user": "q", "chosen": "c"}}, "chosen and rejected go together"),
        ({"mapping": {"prompt": "q"}}, "unknown key 'prompt'"),
    ],
)
def test_mapping_shapes_are_refused_by_the_schema(spec, message):
    cfg = tiny_config()
    cfg["datasets"]["alpaca"] = {"type": "file", "path": ALPACA, "mapping": {"user": "instruction"}}
    cfg["datasets"]["alpaca"].update(spec)
    if "format" in spec:
        cfg["datasets"]["alpaca"]["mapping"] = ALPACA_MAPPING
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg, check_files=False)


def test_a_mapped_preference_dataset_in_an_sft_mixture_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"q": "Q", "a": "A", "b": "B"}])
    cfg = mapped_config(path, {"user": "q", "chosen": "a", "rejected": "b"})
    with pytest.raises(ConfigError, match="draws preference pairs from 'mapped'"):
        validate_config(cfg)


def test_hub_data_is_checked_first_thing_in_the_dataset_job(tmp_path, monkeypatch):
    """For `type: hf` the rows are only readable in the dataset job: a mapping naming a field
    the first rows lack fails there, before any row is normalized, naming the row."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    folder = tmp_path / "hfds"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"question": f"q{i}", "answer": f"a{i}"} for i in range(4)])
    spec = {"type": "hf", "id": str(folder), "revision": "main", "subset": None}
    out = normalize_dataset("hfds", {**spec, "mapping": {"user": "question", "assistant": "answer"}})
    assert [r["messages"][1]["content"] for r in out.rows] == ["a0", "a1", "a2", "a3"]
    with pytest.raises(
        DataError, match=r"dataset 'hfds' \(hf:.*\[0\], row 0\): datasets\.hfds\.mapping\.assistant"
    ):
        normalize_dataset("hfds", {**spec, "mapping": {"user": "question", "assistant": "{{answers}}"}})


def test_a_null_where_field_leaves_the_row_out(tmp_path):
    rows = [
        {"q": "a", "a": "1", "keep": True},
        {"q": "b", "a": "2", "keep": None},
        {"q": "c", "a": "3", "keep": False},
    ]
    out = normalize_dataset(
        "w",
        {
            "type": "file",
            "path": write_jsonl(tmp_path / "w.jsonl", rows),
            "mapping": {"user": "q", "assistant": "a", "where": "keep"},
        },
    )
    assert (
        [r["messages"][0]["content"] for r in out.rows] == ["a"] and out.excluded == 2 and out.rejected == []
    )
