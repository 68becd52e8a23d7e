"""Prepare a benchmark's fixed item subset as ``docs.jsonl`` and its lm-eval task config.

Every doc has ``doc_id`` (stable, from the source), ``query``, ``text`` (the item's own
words, for decontamination) and either ``choices`` + ``gold`` (multiple choice) or
``answer`` (generation). The subset
is chosen by (n, seed) once, so every model sees exactly the same items.
"""

from __future__ import annotations

import random
from pathlib import Path

from . import sources
from .errors import DataError
from .io import read_jsonl


def _arc(row: dict) -> dict:
    labels, texts = row["choices"]["label"], row["choices"]["text"]
    if row["answerKey"] not in labels:
        raise ValueError(f"answerKey {row['answerKey']!r} not among labels {labels}")
    return {"doc_id": row["id"], "query": f"Question: {row['question']}\nAnswer:",
            "choices": [f" {t}" for t in texts], "gold": labels.index(row["answerKey"]),
            "text": row["question"]}


def _gsm8k_requests(row: dict) -> dict:
    doc = row["doc"]
    answer = doc["answer"].split("####")[-1].strip().replace(",", "")
    return {"doc_id": f"gsm8k-{doc['id']}", "query": f"Question: {doc['question']}\nAnswer:",
            "answer": answer, "text": doc["question"]}


def _task_rows(row: dict) -> dict:
    return {"doc_id": row["id"], "query": row["messages"][0]["content"], "answer": row["label"],
            "text": row["messages"][0]["content"]}


LOADERS = {"arc": _arc, "gsm8k_requests": _gsm8k_requests, "task_rows": _task_rows}


def load_source_rows(spec: dict, dataset_rows: Path | None = None) -> list[dict]:
    src = spec["source"]
    if src["type"] == "dataset":
        if dataset_rows is None:
            raise DataError(f"benchmark '{spec['name']}' needs its dataset's rows file")
        return [r for r in read_jsonl(dataset_rows) if r["split"] == "eval"]
    if src["type"] == "package_disk":
        from datasets import load_from_disk

        return [dict(r) for r in load_from_disk(str(sources.resolve_file(src)))]
    if src["type"] == "hf":
        from .datasets import load_hf

        return load_hf(src)
    return read_jsonl(sources.resolve_file(src))


def select_subset(docs: list[dict], n: int | None, seed: int) -> list[dict]:
    """A seeded subset of ``n`` docs in source order (all of them when n is None)."""
    if n is None or n >= len(docs):
        return list(docs)
    idx = sorted(random.Random(seed).sample(range(len(docs)), n))
    return [docs[i] for i in idx]


def prepare_items(spec: dict, dataset_rows: Path | None = None) -> list[dict]:
    """Every item of the benchmark's source as a doc (the pool subsets are drawn from, and
    what training data is decontaminated against)."""
    loader = LOADERS[spec["loader"]]
    raw = load_source_rows(spec, dataset_rows)
    docs = []
    for i, row in enumerate(raw):
        try:
            docs.append(loader(row))
        except (KeyError, ValueError, TypeError) as exc:
            raise DataError(f"benchmark '{spec['name']}': source row {i} cannot be read by loader "
                            f"'{spec['loader']}': {exc!r}") from exc
    ids = [d["doc_id"] for d in docs]
    if len(set(ids)) != len(ids):
        raise DataError(f"benchmark '{spec['name']}': duplicate doc ids in the source")
    return docs


def prepare_docs(spec: dict, dataset_rows: Path | None = None) -> list[dict]:
    """The benchmark's fixed subset: (n, seed) drawn from its item pool."""
    return select_subset(prepare_items(spec, dataset_rows), spec.get("n"), spec.get("seed", 1234))


def item_spec(spec: dict) -> dict:
    """The part of a benchmark spec that decides its item pool (not n, seed or decoding), so
    changing a benchmark's n does not rerun the mixtures decontaminated against its items."""
    return {k: spec[k] for k in ("name", "source", "loader") if k in spec}


def decoding_spec(spec: dict) -> dict:
    """The decoding settings that belong to the benchmark (same for every model)."""
    d = dict(spec.get("decoding", {}))
    d.setdefault("chat_template", False)
    d.setdefault("num_fewshot", 0)
    return d


def lm_eval_task_config(spec: dict, docs_path: Path) -> dict:
    """An lm-eval task config (the dict form of a task YAML) over our docs file."""
    task = {
        "task": f"deltaflow_{spec['name']}",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(Path(docs_path).resolve())}},
        "test_split": "test",
        "doc_to_text": "{{query}}",
        "num_fewshot": spec["decoding"].get("num_fewshot", 0),
        "metadata": {"version": 1.0},
    }
    dec = decoding_spec(spec)
    if spec["output_type"] == "multiple_choice":
        task.update({
            "output_type": "multiple_choice",
            "doc_to_choice": "{{choices}}",
            "doc_to_target": "gold",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        })
    elif spec["output_type"] == "generate_until":
        task.update({
            "output_type": "generate_until",
            "doc_to_target": "{{answer}}",
            "generation_kwargs": {
                "until": dec.get("until", ["\n"]),
                "max_gen_toks": dec.get("max_gen_toks", 32),
                "do_sample": dec.get("temperature", 0.0) > 0,
                "temperature": dec.get("temperature", 0.0),
            },
            "metric_list": [{
                "metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                "ignore_case": True, "ignore_punctuation": False,
                "regexes_to_ignore": spec.get("ignore", []),
            }],
        })
        steps = []
        if spec.get("extract"):
            steps.append({"function": "regex", "regex_pattern": spec["extract"]["regex"],
                          "group_select": spec["extract"].get("group_select", 0)})
        else:
            steps.append({"function": "remove_whitespace"})
        steps.append({"function": "take_first"})
        task["filter_list"] = [{"name": "extract", "filter": steps}]
    else:
        raise DataError(f"benchmark '{spec['name']}': unsupported output_type {spec['output_type']!r}")
    return task

