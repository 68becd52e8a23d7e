"""Benchmarks declared in YAML, no Python: ``loader: template`` maps any source's rows to docs
with lm-eval's own ``doc_to_text`` / ``doc_to_choice`` / ``doc_to_target`` semantics, so a
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
Open-ended prompt sets (``output_type: open_ended``, scored by a judge, deltaflow.judging) need
no target; ``doc_to_target``, when given, is a reference answer the judge may be shown.
"""

from __future__ import annotations

import ast
from typing import Any

TEMPLATE_KEYS = ("doc_id", "doc_to_text", "doc_to_choice", "doc_to_target", "text", "where")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class TemplateError(ValueError):
    """A declared benchmark's template does not fit a row (named key, row fields)."""


def _render(value, row: dict, key: str) -> Any:
    from jinja2 import TemplateError as JinjaError
    from lm_eval.utils import apply_template

    if isinstance(value, (int, list)):
        return value
    if not isinstance(value, str):
        raise TemplateError(
            f"template.{key} must be a field name, a template, a list or an int; got {value!r}"
        )
    if value in row:
        return row[value]
    try:
        return apply_template(value, row)
    except JinjaError as exc:
        fields = ", ".join(sorted(k for k in row if not k.startswith("_")))
        raise TemplateError(f"template.{key} {value!r}: {exc} (the row's fields: {fields})") from None


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


def template_doc(spec: dict, row: dict, i: int) -> dict:
    """One source row as a doc of the declared benchmark ``spec``."""
    tpl = spec.get("template") or {}
    ctx = {**row, "_index": i}
    if "where" in tpl and str(_render(tpl["where"], ctx, "where")).strip().lower() in (
        "false",
        "0",
        "",
        "none",
    ):
        from .benchmarks import Excluded

        raise Excluded(f"template.where {tpl['where']!r} is false for this row")
    query = _render(tpl["doc_to_text"], ctx, "doc_to_text")
    doc = {
        "doc_id": str(_render(tpl["doc_id"], ctx, "doc_id")) if "doc_id" in tpl else f"{spec['name']}-{i}",
        "query": str(query),
    }
    if spec["output_type"] == "multiple_choice":
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
    from jinja2 import TemplateSyntaxError
    from lm_eval.utils import env

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
    for k, v in tpl.items():
        if isinstance(v, str):
            try:
                env.parse(v)
            except TemplateSyntaxError as exc:
                errors.append(f"config key '{key}.{k}': the template {v!r} does not parse: {exc}")
    return errors
