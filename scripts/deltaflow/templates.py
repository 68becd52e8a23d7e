"""Field templates over a source row: one vocabulary for a declared benchmark's ``template:``
and a dataset's ``mapping:``.

A value is a row field's name, a Jinja template over the row's fields (lm-eval's
``doc_to_text`` semantics, rendered by lm-eval's own ``apply_template``: strict undefined, so a
missing field is an error, never an empty string), a list or an int.
"""

from __future__ import annotations

from typing import Any


class TemplateError(ValueError):
    """A template does not fit a row (the key, the row's fields)."""


def render(value, row: dict, key: str) -> Any:
    """``value`` (a field name or a template) on ``row``; ``key`` names it in errors."""
    from jinja2 import TemplateError as JinjaError
    from lm_eval.utils import apply_template

    if isinstance(value, (int, list)):
        return value
    if not isinstance(value, str):
        raise TemplateError(f"{key} must be a field name, a template, a list or an int; got {value!r}")
    if value in row:
        return row[value]
    try:
        return apply_template(value, row)
    except JinjaError as exc:
        fields = ", ".join(sorted(k for k in row if not k.startswith("_")))
        raise TemplateError(f"{key} {value!r}: {exc} (the row's fields: {fields})") from None


def is_false(value) -> bool:
    """A ``where:`` filter's rendered value that excludes the row."""
    return str(value).strip().lower() in ("false", "0", "", "none")


def syntax_errors(mapping: dict, key: str) -> list[str]:
    """Config errors for the string values of ``mapping`` that do not parse as Jinja."""
    from jinja2 import TemplateSyntaxError
    from lm_eval.utils import env

    errors = []
    for k, v in mapping.items():
        if isinstance(v, str):
            try:
                env.parse(v)
            except TemplateSyntaxError as exc:
                errors.append(f"config key '{key}.{k}': the template {v!r} does not parse: {exc}")
    return errors
