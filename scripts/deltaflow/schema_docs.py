"""Render the config schema (deltaflow/schema.yaml) as the key reference in config/README.md.

`python -m deltaflow.schema_docs` rewrites the part between the markers; a test
fails when the README and the schema disagree, so every key stays documented.
"""

from __future__ import annotations

import json
import sys

from .config import REPO_ROOT, load_schema

BEGIN, END = "<!-- BEGIN KEYS (generated from schema.yaml) -->", "<!-- END KEYS -->"
README = REPO_ROOT / "config" / "README.md"


def _type(sub: dict) -> str:
    if "enum" in sub:
        return " \\| ".join(f"`{v}`" for v in sub["enum"])
    if "oneOf" in sub and all("type" in o or "const" in o for o in sub["oneOf"]):
        return " or ".join(str(o["type"]) if "type" in o else f"`{o['const']}`" for o in sub["oneOf"])
    t = sub.get("type", "object" if "properties" in sub else "")
    return " or ".join(t) if isinstance(t, list) else str(t)


def _rows(schema: dict, defs: dict, prefix: str):
    props = schema.get("properties", {})
    for key, sub in props.items():
        if "$ref" in sub:
            sub = defs[sub["$ref"].split("/")[-1]]
        path = f"{prefix}{key}"
        default = f"`{json.dumps(sub['default'])}`" if "default" in sub and sub["default"] != {} else ""
        desc = " ".join(sub.get("description", "").split()).replace("|", "\\|")
        yield f"| `{path}` | {_type(sub)} | {default} | {desc} |"
        if "properties" in sub:
            yield from _rows(sub, defs, path + ".")
        extra = sub.get("additionalProperties")
        if isinstance(extra, dict):
            ref = extra.get("$ref")
            target = defs[ref.split("/")[-1]] if ref else extra
            yield from _rows(target, defs, f"{path}.<name>.")
        items = sub.get("items")
        if isinstance(items, dict):
            target = defs[items["$ref"].split("/")[-1]] if "$ref" in items else items
            yield from _rows(target, defs, f"{path}[].")


def render() -> str:
    schema = load_schema()
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    lines += list(_rows(schema, schema.get("$defs", {}), ""))
    return "\n".join(lines)


def updated_readme() -> str:
    text = README.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{render()}\n{END}{tail}"


if __name__ == "__main__":
    README.write_text(updated_readme())
    sys.stdout.write(f"wrote {README}\n")
