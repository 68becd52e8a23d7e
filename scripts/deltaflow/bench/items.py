"""A benchmark's items: the pool (every item of its source, as docs), the fixed subset every
model is scored on (chosen once by n and seed), and the fixed few-shot examples.

Every model sees exactly the same items, and the same shots in the same order.
"""

from __future__ import annotations

import json
import logging
import random
from functools import partial
from pathlib import Path

from ..errors import DataError
from .lmeval import load_docs
from .loaders import LOADERS, Excluded, load_source_rows, template_doc
from .spec import BenchmarkSpec, decoding_spec

log = logging.getLogger(__name__)


def select_subset(docs: list[dict], n: int | None, seed: int) -> list[dict]:
    """A seeded subset of ``n`` docs in source order (all of them when n is None)."""
    if n is None or n >= len(docs):
        return list(docs)
    idx = sorted(random.Random(seed).sample(range(len(docs)), n))
    return [docs[i] for i in idx]


def prepare_items(
    spec: BenchmarkSpec, dataset_rows: Path | None = None, excluded: list | None = None
) -> list[dict]:
    """Every item of the benchmark's source as a doc (the pool subsets are drawn from, and
    what training data is decontaminated against). Rows a loader leaves out (``Excluded``)
    are logged, and appended to ``excluded`` as {row, reason} for the caller's manifest."""
    excluded = [] if excluded is None else excluded
    if spec.loader == "lm_eval":  # lm-eval's own task: its docs as lm-eval processes them
        return load_docs(spec)
    if spec.loader == "template":  # declared in YAML (loaders.template_doc)
        loader = partial(template_doc, spec)
    else:
        loader = LOADERS[spec.loader]
    raw = load_source_rows(spec, dataset_rows)
    if not raw:
        raise DataError(
            f"benchmark '{spec.name}': its source has no rows ({json.dumps(spec.source)}); "
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
                f"benchmark '{spec.name}': source row {i} cannot be read by loader '{spec.loader}': {exc!r}"
            ) from exc
    if excluded:
        log.warning(
            "%s: %d source rows excluded; first: row %d: %s",
            spec.name,
            len(excluded),
            excluded[0]["row"],
            excluded[0]["reason"],
        )
    first: dict = {}
    for i, d in enumerate(docs):
        if d["doc_id"] in first:
            raise DataError(
                f"benchmark '{spec.name}': doc id {d['doc_id']!r} of item {i} repeats item "
                f"{first[d['doc_id']]}; doc ids must be unique (declared benchmarks: make "
                "template.doc_id unique, or leave it out to number the rows)"
            )
        first[d["doc_id"]] = i
    return docs


def prepare_docs(spec: BenchmarkSpec, dataset_rows: Path | None = None) -> list[dict]:
    """The benchmark's fixed subset: (n, seed) drawn from its item pool."""
    return select_subset(prepare_items(spec, dataset_rows), spec.n, spec.seed)


def _same_item(doc: dict) -> tuple:
    return doc["doc_id"], " ".join(str(doc.get("text", "")).split()).lower()


def choose_shots(spec: BenchmarkSpec, pool: list[dict], scored: list[dict]) -> list[dict]:
    """The benchmark's fixed few-shot examples (``decoding.num_fewshot`` k): from ``pool`` (the
    item pool, or the ``fewshot.source``'s items) less every scored item (same doc id or same
    text), either the listed ``fewshot.ids`` in their order (curated shots, as OLMES fixes them)
    or k drawn with ``fewshot.seed``. Every model sees the same shots in the same order."""
    k = decoding_spec(spec)["num_fewshot"]
    if not k:
        return []
    fs = spec.fewshot or spec.fewshot_defaults()
    taken = {key for d in scored for key in zip(("id", "text"), _same_item(d))}
    candidates = [d for d in pool if not {("id", _same_item(d)[0]), ("text", _same_item(d)[1])} & taken]
    if fs.get("ids"):
        by_id = {d["doc_id"]: d for d in candidates}
        scored_ids = {d["doc_id"] for d in scored}
        for i in fs["ids"]:
            if i in scored_ids:
                raise DataError(
                    f"benchmark '{spec.name}': fewshot.ids has {i!r}, one of the scored items; "
                    "a shot must never be an item the model is scored on"
                )
            if i not in by_id:
                raise DataError(
                    f"benchmark '{spec.name}': fewshot.ids has {i!r}, which is not in the few-shot "
                    f"pool ({len(candidates)} items); e.g. {[d['doc_id'] for d in candidates[:3]]}"
                )
        if len(fs["ids"]) != k:
            raise DataError(
                f"benchmark '{spec.name}': fewshot.ids lists {len(fs['ids'])} shots but "
                f"decoding.num_fewshot is {k}"
            )
        return [by_id[i] for i in fs["ids"]]
    if len(candidates) < k:
        raise DataError(
            f"benchmark '{spec.name}': {k} shots wanted but the few-shot pool has only "
            f"{len(candidates)} items outside the scored ones; lower n, or give fewshot.source"
        )
    return random.Random(fs["seed"]).sample(candidates, k)


def with_shots(spec: BenchmarkSpec, shots: list[dict]) -> BenchmarkSpec:
    """The spec with its chosen few-shot examples attached (they decide the prompts)."""
    return spec.replace(shots=list(shots)) if shots else spec


def item_spec(spec: BenchmarkSpec) -> dict:
    """The part of a benchmark spec that decides its item pool (not n, seed or decoding), so
    changing a benchmark's n does not rerun the mixtures decontaminated against its items."""
    keys = (
        ("name", "source", "loader")
        + (("template", "output_type") if spec.loader == "template" else ())
        + (("output_type",) if spec.loader == "lm_eval" else ())
    )
    return {k: getattr(spec, k) for k in keys if getattr(spec, k) is not None}
