"""Normalize raw dataset sources to deltaflow's row schema.

Every row: ``id``, ``source``, ``split``, ``origin`` and chat ``messages``
(list of {role, content}); preference rows also carry ``chosen`` and
``rejected`` (assistant strings) with ``messages`` holding the prompt turns.
Generated task rows also carry ``label`` (and ``label_set`` for MCQ); rows in the messages
format may carry what a GRPO reward checks completions with (``VERIFY_FIELDS``: code tests,
instruction checkers).

Rows that cannot be normalized are not dropped silently: they are returned as
rejections with the reason and the source line, and counted in the manifest.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import sources
from .bench.synthetic_tasks import generate_task
from .errors import DataError
from .io import opener, read_jsonl, read_text
from .origins import declared_origin
from .templates import TemplateError, is_false, render, syntax_errors
from .training.objective import RL_OBJECTIVES

ROLE_MAP = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "model": "assistant",
}


@dataclass
class NormalizedDataset:
    rows: list[dict]
    rejected: list[dict] = field(default_factory=list)
    source: dict = field(default_factory=dict)
    excluded: int = 0  # rows a mapping's where: filter left out


def _read_records(path: Path) -> list[dict]:
    name = str(path)
    if name.endswith((".jsonl", ".jsonl.gz")):
        return read_jsonl(path)
    if name.endswith(".json"):
        try:
            data = json.loads(read_text(path))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc}); fix the file") from exc
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
        return data
    raise DataError(f"{path}: unsupported file type; use .json (a list) or .jsonl")


def _msg(role, content):
    return {"role": role, "content": content}


def _from_alpaca(rec: dict, prompts_only: bool = False) -> dict:
    instruction, inp, output = rec.get("instruction"), rec.get("input", ""), rec.get("output")
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError("missing or empty 'instruction'")
    user = instruction if not inp else f"{instruction}\n\n{inp}"
    if prompts_only and output is None:  # a prompt without an answer
        return {"messages": [_msg("user", user)]}
    if not isinstance(output, str) or not output.strip():
        raise ValueError("missing or empty 'output' (empty assistant turn)")
    return {"messages": [_msg("user", user), _msg("assistant", output)]}


def _sharegpt_turns(turns) -> list[dict]:
    if not isinstance(turns, list) or not turns:
        raise ValueError("missing or empty 'conversations'")
    out = []
    for t in turns:
        role = ROLE_MAP.get(t.get("from"))
        if role is None:
            raise ValueError(f"unknown speaker {t.get('from')!r}")
        out.append(_msg(role, t.get("value", "")))
    return out


def _from_sharegpt(rec: dict, prompts_only: bool = False) -> dict:
    msgs = _sharegpt_turns(rec.get("conversations"))
    _check_chat(msgs, prompts_only)
    return {"messages": msgs}


def _from_sharegpt_preference(rec: dict, prompts_only: bool = False) -> dict:
    prompt = _sharegpt_turns(rec.get("conversations"))
    chosen, rejected = rec.get("chosen"), rec.get("rejected")
    for key, val in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(val, dict) or not str(val.get("value", "")).strip():
            raise ValueError(f"missing or empty '{key}' response")
    return {"messages": prompt, "chosen": chosen["value"], "rejected": rejected["value"]}


def _from_messages(rec: dict, prompts_only: bool = False) -> dict:
    msgs = rec.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ValueError("missing or empty 'messages'")
    for m in msgs:
        if (
            not isinstance(m, dict)
            or m.get("role") not in ("system", "user", "assistant")
            or not isinstance(m.get("content"), str)
        ):
            raise ValueError("each message needs role (system|user|assistant) and string content")
    out = {"messages": [_msg(m["role"], m["content"]) for m in msgs]}
    if "chosen" in rec or "rejected" in rec:
        out["chosen"], out["rejected"] = rec.get("chosen"), rec.get("rejected")
    else:
        _check_chat(out["messages"], prompts_only)
    for key in ("label", "label_set"):
        if key in rec:
            out[key] = rec[key]
    out.update(_verification(rec))
    return out


# What a row may carry for a GRPO reward to check a completion with the registry's scorers:
# code tests run in the sandbox (mbpp style: the completion is the program, then ``tests``;
# humaneval style: ``code_prompt`` + completion + ``tests`` + check(``entry_point``)), and
# IFBench/IFEval instruction checkers (``instructions``: [{id, kwargs}]).
VERIFY_FIELDS = ("tests", "entry_point", "code_prompt", "instructions")


def _verification(rec: dict) -> dict:
    out = {k: rec[k] for k in VERIFY_FIELDS if rec.get(k) is not None}
    for key in ("tests", "entry_point", "code_prompt"):
        if key in out and not isinstance(out[key], str):
            raise ValueError(f"'{key}' must be a string (Python source)")
    if "instructions" in out:
        ins = out["instructions"]
        if (
            not isinstance(ins, list)
            or not ins
            or not all(
                isinstance(i, dict) and isinstance(i.get("id"), str) and isinstance(i.get("kwargs", {}), dict)
                for i in ins
            )
        ):
            raise ValueError("'instructions' must be a non-empty list of {id: <checker id>, kwargs: {...}}")
        out["instructions"] = [{"id": i["id"], "kwargs": dict(i.get("kwargs") or {})} for i in ins]
    return out


def _from_text(rec: dict, prompts_only: bool = False) -> dict:
    text = rec.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("missing or empty 'text'")
    return {"text": text, "messages": []}


# the reason a chat row without an answer is rejected (counted per reason in the manifest)
NO_ANSWER = "conversation does not end with an assistant turn"


def _check_chat(msgs: list[dict], prompts_only: bool = False) -> None:
    """A training row ends with a non-empty assistant turn; a prompt set's row may end with its
    (non-empty) user turn instead: the prompt, answered by a generation or a GRPO policy."""
    if prompts_only and msgs[-1]["role"] == "user":
        if not msgs[-1]["content"].strip():
            raise ValueError("empty user turn (a prompt set's row ends with the prompt)")
        return
    if msgs[-1]["role"] != "assistant":
        raise ValueError(NO_ANSWER)
    if not msgs[-1]["content"].strip():
        raise ValueError("empty assistant turn")


# datasets.<name>.mapping: a row of any shape to deltaflow's row schema, each key a field name or
# a Jinja template over the row's fields (the vocabulary of a declared benchmark's template:)
CHECKED_ROWS = 5  # a mapping is checked strictly on a source's first rows (config check, dataset job)


class Excluded(Exception):
    """A row its dataset's ``mapping.where`` leaves out (counted, not rejected)."""


def _mapped(value, rec: dict, name: str, key: str) -> str:
    out = render(value, rec, f"datasets.{name}.mapping.{key}")
    if out is None:
        raise ValueError(f"mapping.{key}: the row's '{value}' is null")
    return out if isinstance(out, str) else json.dumps(out) if isinstance(out, (list, dict)) else str(out)


def from_mapping(rec: dict, mapping: dict, name: str, prompts_only: bool = False) -> dict:
    """One raw record through ``datasets.<name>.mapping`` to a normalized row (without its id,
    source, split and origin); raises Excluded for a row the ``where:`` filter leaves out,
    TemplateError for a template the row's fields do not fit, ValueError for a bad row."""
    get = lambda key: _mapped(mapping[key], rec, name, key)
    # a null where: field leaves the row out, as a declared benchmark's template reads it
    if "where" in mapping and is_false(render(mapping["where"], rec, f"datasets.{name}.mapping.where")):
        raise Excluded
    if "text" in mapping:
        row = _from_text({"text": get("text")}, prompts_only)
    else:
        msgs = [_msg(role, get(role)) for role in ("system", "user", "assistant") if role in mapping]
        raw = {"messages": msgs}
        if "chosen" in mapping:
            raw.update(chosen=get("chosen"), rejected=get("rejected"))
            for key in ("chosen", "rejected"):
                if not raw[key].strip():
                    raise ValueError(f"empty '{key}' response (mapping.{key})")
        row = _from_messages(raw, prompts_only)
    if "label" in mapping:
        row["label"] = get("label")
    if "id" in mapping:
        row["_id"] = get("id")
    return row


NORMALIZERS = {
    "alpaca": _from_alpaca,
    "sharegpt": _from_sharegpt,
    "sharegpt_preference": _from_sharegpt_preference,
    "messages": _from_messages,
    "text": _from_text,
}


def row_format(ds: dict) -> str | None:
    """A dataset's row layout from its config: its ``format``, or for a ``mapping`` ``text``
    (document rows), ``preference`` (chosen/rejected) or ``chat``."""
    mapping = ds.get("mapping")
    if not mapping:
        return ds.get("format")
    return "text" if "text" in mapping else "preference" if "chosen" in mapping else "chat"


def normalize_records(
    records: list[dict],
    *,
    fmt: str | None,
    name: str,
    split: str,
    origin,
    where: str,
    prompts_only: bool = False,
    mapping: dict | None = None,
) -> NormalizedDataset:
    """Rows in deltaflow's schema, and a rejection (with the reason) per record that is not one.
    ``prompts_only``: a prompt set (see prompt_sets), whose rows need no assistant turn.
    ``mapping`` (instead of ``fmt``): datasets.<name>.mapping; rows its ``where:`` leaves out
    are counted in ``excluded``."""
    if mapping is not None:
        check_mapped_rows(records, mapping, name, where, prompts_only)
        normalizer = lambda rec, prompts: from_mapping(rec, mapping, name, prompts)
    else:
        normalizer = NORMALIZERS[fmt]
    rows, rejected, excluded = [], [], 0
    for i, rec in enumerate(records):
        try:
            if not isinstance(rec, dict):
                raise ValueError(f"expected an object, got {type(rec).__name__}")  # noqa: TRY004 (caught below: a rejected row)
            row = normalizer(rec, prompts_only)
        except Excluded:
            excluded += 1
            continue
        except ValueError as exc:
            rejected.append(
                {"source": name, "record": i, "where": f"{where}[{i}]", "reason": str(exc), "raw": rec}
            )
            continue
        row_id = row.pop("_id", rec.get("id"))
        row_id = row_id if isinstance(row_id, (str, int)) else None
        row.update(
            {
                "id": f"{name}-{row_id if row_id is not None else i}",
                "source": name,
                "split": split,
                "origin": origin,
            }
        )
        rows.append(row)
    return NormalizedDataset(rows=rows, rejected=rejected, excluded=excluded)


def check_mapped_rows(records: list, mapping: dict, name: str, where: str, prompts_only: bool) -> None:
    """The mapping fits the source's first rows: a template that names a field those rows do not
    have is a mistake in the mapping, not a bad row (DataError naming the key, row and fields)."""
    for i, rec in enumerate(records[:CHECKED_ROWS]):
        if not isinstance(rec, dict):
            continue
        try:
            from_mapping(rec, mapping, name, prompts_only)
        except TemplateError as exc:
            raise DataError(
                f"dataset '{name}' ({where}[{i}], row {i}): {exc}. Fix datasets.{name}.mapping "
                "(a field name or a Jinja template over the row's fields)"
            ) from None
        except (Excluded, ValueError):
            continue


def load_hf(spec: dict) -> list[dict]:
    """Rows of a Hugging Face dataset at a pinned revision (real hub code; tests use a local copy)."""
    import datasets

    ds = datasets.load_dataset(
        spec["id"], spec.get("subset"), revision=spec["revision"], split=spec.get("split", "train")
    )
    return [dict(r) for r in ds]


def normalize_dataset(name: str, spec: dict) -> NormalizedDataset:
    """Normalize the dataset ``name`` configured as ``spec``."""
    if spec["type"] == "generated":
        rows = generate_task(
            spec["task"],
            train_rows=spec["train_rows"],
            eval_rows=spec["eval_rows"],
            seed=spec.get("seed", 0),
            name=name,
        )
        return NormalizedDataset(rows=rows, source=dict(spec))
    if spec["type"] == "hf":
        records, where = load_hf(spec), f"hf:{spec['id']}@{spec['revision']}"
        source = dict(spec)
    else:
        path = sources.resolve_file(spec)
        records, where = _read_records(path), str(path)
        source = sources.describe(spec)
    if spec.get("max_rows"):
        records = records[: spec["max_rows"]]
    out = normalize_records(
        records,
        fmt=spec.get("format"),
        mapping=spec.get("mapping"),
        name=name,
        split=spec.get("split", "train"),
        origin=declared_origin(spec),
        where=where,
        prompts_only=bool(spec.get("prompts_only")),
    )
    out.source = source
    limit = spec.get("max_reject_fraction", 0.2)
    kept = len(records) - out.excluded  # the rows a mapping's where: filter did not leave out
    if out.rows and len(out.rejected) / kept > limit:
        reasons = Counter(r["reason"] for r in out.rejected)
        first = out.rejected[0]
        raise DataError(
            f"dataset '{name}' ({where}): {len(out.rejected)} of {kept} records rejected, "
            f"more than max_reject_fraction {limit}; by reason: {dict(reasons)}; first: "
            f"{first['where']}: {first['reason']}. Fix the source or `format:`, or raise "
            f"datasets.{name}.max_reject_fraction{_no_answer_hint(name, reasons)}"
        )
    if not out.rows:
        raise DataError(
            f"dataset '{name}' ({where}): no usable rows out of {len(records)}"
            f"{f' ({out.excluded} left out by mapping.where)' if out.excluded else ''}; first problem: "
            f"{out.rejected[0]['reason'] if out.rejected else 'no rows left'} — check `format:` / `mapping:`"
            f"{_no_answer_hint(name, Counter(r['reason'] for r in out.rejected))}"
        )
    return out


def _no_answer_hint(name: str, reasons: Counter) -> str:
    if not reasons.get(NO_ANSWER):
        return ""
    return (
        f". Rows without an assistant turn are prompts without answers: a dataset used only "
        f"for its prompts (a generation's prompt set, a mixture only GRPO runs train) keeps them, "
        f"and so does one marked datasets.{name}.prompts_only: true; '{name}' is also trained on "
        "(a mixture an SFT, DPO or CPT run trains, or one no run trains), which needs an answer in "
        "every row (config/README.md, prompt sets)"
    )


# objectives that read only a row's prompt (and its reference answer, if any), never train on
# its assistant turn
PROMPT_OBJECTIVES = RL_OBJECTIVES


def dataset_uses(config: dict) -> dict[str, dict[str, list[str]]]:
    """Where each of ``config``'s datasets is used, by config key: ``prompts`` (a generation's
    prompt set, a component of a mixture only GRPO runs train), ``training`` (a component of a
    mixture an SFT, DPO or CPT run trains) and ``untrained`` (a component of a mixture no run
    trains: built and reported, not trained)."""
    uses = {name: {"prompts": [], "training": [], "untrained": []} for name in config["datasets"]}
    for gname, gen in (config.get("generations") or {}).items():
        dataset = (gen.get("prompts") or {}).get("dataset")
        if dataset in uses:
            uses[dataset]["prompts"].append(f"generations.{gname}.prompts")
    objectives: dict[str, set] = {}
    for run in config["runs"].values():
        recipe = config.get("recipes", {}).get(run.get("recipe"), {})
        objectives.setdefault(run.get("mixture"), set()).add(recipe.get("objective", "sft"))
    for mname, mix in config["mixtures"].items():
        trained_by = objectives.get(mname, set())
        use = (
            "untrained"
            if not trained_by
            else "prompts"
            if trained_by <= set(PROMPT_OBJECTIVES)
            else "training"
        )
        for i, comp in enumerate(mix["components"]):
            if comp["dataset"] in uses:
                uses[comp["dataset"]][use].append(f"mixtures.{mname}.components[{i}]")
    return uses


def prompt_sets(config: dict) -> set[str]:
    """The datasets normalized as prompt sets (rows may end with their user turn): those marked
    ``prompts_only: true``, and those used only for their prompts."""
    return {
        name
        for name, use in dataset_uses(config).items()
        if config["datasets"][name].get("prompts_only") or (use["prompts"] and not use["training"])
    }


def check_prompt_sets(config: dict, *, check_files: bool = True):
    """A mixture that trains on a prompt set (``prompts_only: true``) with SFT, DPO or CPT: its
    rows have no answers to train on. Yields one error per component. ``check_files``: unused
    (deltaflow.config's ``CHECKS`` signature)."""
    for name, use in dataset_uses(config).items():
        if not config["datasets"][name].get("prompts_only"):
            continue
        for key in use["training"]:
            mname = key.split(".")[1]
            runs = sorted(
                f"'{r}' ({config['recipes'][run['recipe']]['objective']})"
                for r, run in config["runs"].items()
                if run["mixture"] == mname
                and run["recipe"] in config["recipes"]
                and config["recipes"][run["recipe"]]["objective"] not in PROMPT_OBJECTIVES
            )
            yield (
                f"config key '{key}.dataset': dataset '{name}' is a prompt set (datasets.{name}.prompts_only: "
                f"true: user turns, no answers) and {'run' if len(runs) == 1 else 'runs'} {', '.join(runs)} "
                f"{'trains' if len(runs) == 1 else 'train'} on mixture '{mname}', which "
                "needs an answer in every row. Train on it with a GRPO recipe only, use it as a generation's "
                f"prompt set (generations.<name>.prompts.dataset: {name}) and train on the generation, or "
                "give the rows answers and drop prompts_only"
            )


def _first_records(path: Path, n: int) -> list:
    """The first ``n`` records of a raw file (a JSONL file is read only that far)."""
    if str(path).endswith((".jsonl", ".jsonl.gz")):
        out = []
        with opener(path)(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                if line.strip() and len(out) < n:
                    out.append(json.loads(line))
                if len(out) >= n:
                    break
        return out
    return _read_records(path)[:n]


def check_dataset_mappings(config: dict, *, check_files: bool):
    """A dataset's ``mapping:`` parses, and (with ``check_files``, for a file that can be read
    now) fits the file's first rows: before any job. Hub data is checked first thing in its
    dataset job."""
    for name, ds in config["datasets"].items():
        mapping = ds.get("mapping")
        if not mapping:
            continue
        errors = syntax_errors(mapping, f"datasets.{name}.mapping")
        yield from errors
        if errors or not check_files or ds["type"] not in ("file", "package_file", "sdist_file"):
            continue
        try:
            path = sources.resolve_file(ds)
            records = _first_records(path, CHECKED_ROWS)
        except (DataError, OSError, ValueError):  # missing or unreadable: its own check or the job says so
            continue
        try:
            check_mapped_rows(records, mapping, name, str(path), bool(ds.get("prompts_only")))
        except DataError as exc:
            yield f"config key 'datasets.{name}.mapping': {exc}"


def dataset_splits(ds: dict) -> list[str]:
    """The splits a dataset (or a generation: its one split) provides after normalization."""
    if "prompts" in ds:  # generations.<name>
        return [ds["split"]]
    if ds["type"] == "generated":
        return ["train", "eval"]
    return [ds["split"]]


def check_dataset_files(config: dict, *, check_files: bool):
    """A ``type: file`` dataset's file and an ``hf`` dataset's local folder exist (with
    ``check_files``)."""
    datasets = config["datasets"]
    for name, ds in datasets.items():
        if ds["type"] == "file" and check_files and "path" in ds and not Path(ds["path"]).exists():
            yield (
                f"config key 'datasets.{name}.path': file '{ds['path']}' does not exist "
                f"(paths are relative to the working directory {os.getcwd()})"
            )
        local_id = ds["type"] == "hf" and str(ds.get("id", "")).startswith(("/", "./", "../", "~"))
        if check_files and local_id and not Path(ds["id"]).expanduser().exists():
            yield (
                f"config key 'datasets.{name}.id': local dataset folder '{ds['id']}' does not exist "
                f"(paths are relative to the working directory {os.getcwd()})"
            )
