"""One benchmark on one model: the single evaluation path that the evaluate rule, the lm-eval
parity tests and the benches all call.

1. Raw outputs (choice log-likelihoods or k responses per item) come from the output cache,
   keyed by what decides them (``cache_key``): the weights, the docs, the generation spec, the
   settings and device class, the generation code (derived from its imports, see codedeps) and
   the versions of the packages that compute them. A miss runs lm-eval chunk by chunk
   (evaluation.generate_outputs); a killed eval resumes from its last finished chunk.
2. Scoring (deltaflow.scoring) runs every time from the raw outputs, so a parser fix re-scores
   without a model, and is checked against lm-eval's own per-sample values on fresh outputs.
3. The metrics record what a table and an audit need: scores, n, decoding and its hash, the
   scoring spec, the lm-eval task config and lm-eval's version, the cache key and whether it hit.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

from .benchmarks import decoding_spec, lm_eval_task_config
from .codedeps import code_closure, module_path
from .evaluation import decoding_hash, generate_outputs, generation_spec
from .io import atomic_dir, read_jsonl, sha256_path, sha256_text, write_jsonl
from .provenance import output_versions
from .scoring import score_all

log = logging.getLogger(__name__)


class BenchmarkResult(NamedTuple):
    records: list[dict]
    metrics: dict
    raws: list[dict]


class LazyModel:
    """A model loaded on first use: an eval job whose benchmarks all hit the cache never
    loads it."""

    def __init__(self, load: Callable[[], Any]):
        self._load = load
        self._lm = None

    def get(self):
        if self._lm is None:
            self._lm = self._load()
        return self._lm


def generation_code(backend: str = "hf") -> list[Path]:
    """The deltaflow modules that decide raw outputs: evaluation's transitive imports (the
    llama.cpp backend it loads lazily included), plus the vLLM worker's for that backend.
    Scoring is not among them: a parser fix re-scores saved outputs."""
    entries = [module_path("evaluation")] + ([module_path("vllm_backend")] if backend == "vllm" else [])
    return code_closure(*entries)


def cache_key(*, model_identity: dict, spec: dict, docs_path: Path, settings: dict,
              code: list[Path] | None = None, versions: dict | None = None) -> str:
    """Content address of one (model x benchmark) evaluation's raw outputs.

    A batched eval job reruns whenever any of its benchmarks changes; outputs whose key is
    unchanged (same weights, docs, generation spec and decoding, settings and device class,
    generation code, and versions of the packages that compute them) are reused instead of
    being recomputed; any difference is a miss, never a silent reuse.
    """
    backend = settings.get("backend", "hf")
    code = code if code is not None else generation_code(backend)
    parts = {
        "model": model_identity,
        "spec": generation_spec(spec),
        "docs": sha256_path(docs_path),
        "settings": settings,
        "code": {Path(c).name: sha256_path(c) for c in sorted(code)},
        "versions": versions if versions is not None else output_versions(),
    }
    return sha256_text(json.dumps(parts, sort_keys=True, default=str))[:32]


def evaluate_benchmark(model, spec: dict, docs_path: Path, *, cache_dir: Path | None = None,
                       key: str | None = None, chunk_size: int = 32) -> BenchmarkResult:
    """One benchmark on a model: (per-item records, metrics, raw outputs).

    ``model`` is an lm-eval LM, a ``LazyModel``, or None when every chunk was already generated
    by another process (the vLLM worker writes them under ``<cache_dir>/<key>.partial``). With
    ``cache_dir`` and ``key`` the raw outputs are read from / saved to ``<cache_dir>/<key>``;
    without them nothing is cached.
    """
    t0 = time.time()
    docs_path = Path(docs_path)
    entry = Path(cache_dir) / key if cache_dir is not None and key else None
    hit = entry is not None and (entry / "outputs.jsonl").exists()
    if hit:
        log.info("%s: saved outputs %s (scoring only)", spec["name"], key)
        raws = read_jsonl(entry / "outputs.jsonl")
    else:
        lm = model.get() if isinstance(model, LazyModel) else model
        log.info("%s: evaluating (%s)", spec["name"], "new outputs" if entry is None else f"cache key {key}")
        if entry is None:
            with tempfile.TemporaryDirectory() as tmp:
                raws = generate_outputs(lm, spec, docs_path, Path(tmp), chunk_size=chunk_size)
        else:
            partial = entry.with_name(key + ".partial")
            raws = generate_outputs(lm, spec, docs_path, partial, chunk_size=chunk_size)
            with atomic_dir(entry) as tmp:
                write_jsonl(tmp / "outputs.jsonl", raws)
            shutil.rmtree(partial, ignore_errors=True)
    records, metrics = score_all(spec, read_jsonl(docs_path), raws)
    if not hit:  # lm-eval's per-sample values were computed with this scoring spec
        check_against_lm_eval(spec, raws, records)
    metrics.update(benchmark_metrics(spec, records))
    metrics["eval_s"] = round(time.time() - t0, 2)
    metrics["lm_eval_version"] = output_versions(("lm_eval",))["lm_eval"]
    metrics["task_config"] = lm_eval_task_config(spec, docs_path)
    if entry is not None:
        metrics["cache"] = {"key": key, "hit": hit}
    return BenchmarkResult(records, metrics, raws)


def check_against_lm_eval(spec: dict, raws: list[dict], records: list[dict]) -> None:
    """Our per-item scores must equal lm-eval's own for the metrics it computed (greedy
    generation and multiple choice): the scoring code is ours, the numbers are lm-eval's."""
    for raw, rec in zip(raws, records):
        for k, v in raw.get("lm_eval", {}).items():
            if k in rec and abs(float(rec[k]) - v) > 1e-9:
                raise RuntimeError(f"{spec['name']} doc {rec['doc_id']}: our {k} {rec[k]} != lm-eval's {v}; "
                                   "the scoring code has drifted from lm-eval's")


def benchmark_metrics(spec: dict, records: list[dict]) -> dict:
    return {
        "benchmark": spec["name"],
        "task": spec["task"],
        "axis": spec["axis"],
        "n": len(records),
        "decoding": decoding_spec(spec),
        "decoding_hash": decoding_hash(spec),
        "generation_spec": generation_spec(spec),
        "scoring": {k: spec.get(k) for k in ("metric", "extract", "ignore", "code") if k in spec},
    }
