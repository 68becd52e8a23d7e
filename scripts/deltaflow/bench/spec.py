"""What a benchmark is: ``BenchmarkSpec``, the typed spec every stage takes, checked against its
JSON schema (``spec.schema.yaml`` beside this file, which holds every default a spec has), and
the parts of it that decide its decoding.

A spec is the registry definition (a registry file, or lm-eval's task) merged with the config's
overrides (deltaflow.bench.from_config); the decoding part is the same for every model, so two
specs that decode alike hash alike. Rules hand specs to their scripts as plain dicts
(``to_dict``), which ``from_dict`` reads back.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io import load_yaml, sha256_text

SCHEMA_PATH = Path(__file__).with_name("spec.schema.yaml")


@functools.cache
def schema() -> dict:
    return load_yaml(SCHEMA_PATH, what="benchmark spec schema")


def defaults() -> dict:
    """Every top-level spec default, from the schema (a fresh copy)."""
    return {k: copy.deepcopy(v["default"]) for k, v in schema()["properties"].items() if "default" in v}


def _nested_defaults(key: str) -> dict:
    """The defaults of an object property's own keys (``guards``, ``fewshot``)."""
    props = schema()["properties"][key].get("properties", {})
    return {k: copy.deepcopy(v["default"]) for k, v in props.items() if "default" in v}


def _errors(instance: dict, subschema: dict | None = None) -> list[str]:
    """Schema errors of ``instance`` against the spec schema, or against one of its ``$defs``
    (its ``$ref``s resolve against the whole schema)."""
    import jsonschema  # not at module level: the vLLM worker's environment imports this module without it

    validator = jsonschema.Draft202012Validator(schema())
    found = validator.iter_errors(instance) if subschema is None else validator.descend(instance, subschema)
    out = []
    for err in sorted(found, key=lambda e: [str(p) for p in e.absolute_path]):
        where = ".".join(str(p) for p in err.absolute_path)
        out.append(f"{where or '(top level)'}: {err.message}")
    return out


def check_registry_file(data: Any, path: Path) -> None:
    """A registry YAML against the schema's ``registry_file``: an unknown key, a missing one or a
    value of the wrong type is a config error naming the file and the key."""
    errors = (
        _errors(data, schema()["$defs"]["registry_file"])
        if isinstance(data, dict)
        else ["a benchmark file holds a YAML mapping"]
    )
    if errors:
        raise ConfigError(f"benchmark file {path}: " + "; ".join(errors))


@dataclasses.dataclass(frozen=True, kw_only=True)
class BenchmarkSpec:
    """One benchmark as every stage sees it. The fields are the schema's properties; a field the
    schema gives no default is None when the registry and the config leave it out."""

    name: str
    task: str | None
    description: str
    axis: str | None
    source: dict | None
    loader: str | None
    output_type: str | None
    metric: str | None
    headline: str | None
    metric_keys: list
    unrecorded_metrics: list
    data: dict | None
    n: int | None
    seed: int
    decoding: dict
    guards: dict
    extract: dict | None
    match: str
    numeric_tolerance: float
    ignore: list
    template: dict | None
    code: dict | None
    lm_eval: dict
    fewshot: dict | None
    judge: dict | None
    scorer: str | None
    guard_subject: list | None
    shots: list

    @classmethod
    def from_dict(cls, data: dict, *, check: bool = True) -> BenchmarkSpec:
        """A spec from its dict form (a merged registry entry, or ``to_dict``'s output): the
        schema's defaults filled in, then checked against the schema. ``check=False`` only for a
        dict ``to_dict`` wrote (the vLLM worker's job file: its environment has no jsonschema)."""
        filled = {**defaults(), **copy.deepcopy(dict(data))}
        for key in ("guards", "fewshot"):  # a partial mapping keeps the other keys' defaults
            if isinstance(filled.get(key), dict):
                filled[key] = {**_nested_defaults(key), **filled[key]}
        errors = _errors(filled) if check else []
        if errors:
            name = data.get("name", "?") if isinstance(data, dict) else "?"
            raise ConfigError(f"benchmark '{name}': " + "; ".join(errors))
        return cls(**{f.name: filled.get(f.name) for f in dataclasses.fields(cls)})

    def to_dict(self) -> dict:
        return copy.deepcopy(dataclasses.asdict(self))

    def replace(self, **changes) -> BenchmarkSpec:
        """A copy with ``changes`` (checked like any spec)."""
        return BenchmarkSpec.from_dict({**self.to_dict(), **changes})

    @staticmethod
    def fewshot_defaults() -> dict:
        """``fewshot`` when a benchmark gives none: its keys' defaults."""
        return _nested_defaults("fewshot")


def is_judged(spec: BenchmarkSpec) -> bool:
    """A judged benchmark: the eval job writes responses only and the judge job scores them
    (deltaflow.bench.judging). Kept here so the eval stage does not import the judge's statistics."""
    return bool(spec.judge)


DECODING_KEYS = ("chat_template", "num_fewshot", "max_gen_toks", "until", "temperature", "top_p", "samples")


def decoding_spec(spec: BenchmarkSpec) -> dict:
    """The decoding settings that belong to the benchmark (same for every model). Defaults are
    filled in so that two specs that decode alike hash alike. With few-shot examples attached
    (``with_shots``) their ids and a hash of their content are part of it, so results prompted
    with different shots never compare and never share a cache entry."""
    d = dict(spec.decoding)
    # decoding defaults depend on the output type, which JSON schema defaults cannot say: here
    d.setdefault("chat_template", False)
    d.setdefault("num_fewshot", 0)
    if spec.shots:
        d["fewshot_ids"] = [s["doc_id"] for s in spec.shots]
        d["fewshot_sha256"] = sha256_text(json.dumps(spec.shots, sort_keys=True))[:16]
    if spec.output_type != "multiple_choice":
        d.setdefault("temperature", 0.0)
        d.setdefault("samples", 1)
        d.setdefault("top_p", 1.0)
    return d
