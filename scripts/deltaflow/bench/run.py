"""One benchmark on one model: the single evaluation path that the evaluate rule, the lm-eval
parity tests and the benches all call.

1. Raw outputs (choice log-likelihoods or k responses per item) come from the output cache,
   keyed by what decides them (``cache_key``): the weights, the docs, the generation spec, the
   settings and device class, the generation code (derived from its imports, see codedeps) and
   the versions of the packages that compute them. A miss runs lm-eval chunk by chunk
   (deltaflow.bench.raw_outputs); a killed eval resumes from its last finished chunk.
2. Scoring (deltaflow.bench.scoring) runs every time from the raw outputs, so a parser fix
   re-scores without a model, and is checked against lm-eval's own per-sample values on fresh
   outputs.
3. The metrics record what a table and an audit need: scores, n, decoding and its hash, the
   scoring spec, the lm-eval task config and lm-eval's version, the cache key and whether it hit.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from ..codedeps import code_closure, module_path
from ..errors import DeltaflowError
from ..io import atomic_dir, read_jsonl, sha256_path, sha256_text, write_json, write_jsonl
from ..provenance import output_versions
from .lmeval import lm_eval_task_config
from .raw_outputs import decoding_hash, generate_outputs, generation_spec
from .scorer import apply_scorer
from .scoring.metrics import score_all
from .spec import BenchmarkSpec, decoding_spec

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
    entries = [module_path("bench.raw_outputs")] + (
        [module_path("bench.vllm_backend")] if backend == "vllm" else []
    )
    return code_closure(*entries)


def _code_hashes(code: list[Path]) -> dict[str, str]:
    """Each code file's hash under its path below the files' common folder (``bench/run.py``,
    ``__init__.py``): a package's modules share base names, so the name alone would collide."""
    root = Path(os.path.commonpath([Path(c).resolve().parent for c in code])) if code else Path()
    return {Path(c).resolve().relative_to(root).as_posix(): sha256_path(c) for c in sorted(code)}


def cache_key(
    *,
    model_identity: dict,
    spec: BenchmarkSpec,
    docs_path: Path,
    settings: dict,
    code: list[Path] | None = None,
    versions: dict | None = None,
) -> str:
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
        "code": _code_hashes(code),
        "versions": versions if versions is not None else output_versions(),
    }
    return sha256_text(json.dumps(parts, sort_keys=True, default=str))[:32]


GENERATION_TYPES = ("generate_until", "code", "instruction", "open_ended")


def generation_health(
    spec: BenchmarkSpec, raws: list[dict], count_tokens: Callable[[str], int] | None
) -> dict:
    """How many generated responses are empty (nothing but whitespace) and how many were cut
    at ``max_gen_toks`` (re-tokenized with the model's tokenizer: a response of max_gen_toks
    tokens or more ended by the length cap, not by a stop sequence). ``count_tokens`` None:
    truncation is not measured (recorded as such)."""
    responses = [r for raw in raws for r in raw["responses"]]
    cap = decoding_spec(spec).get("max_gen_toks", 32)
    empty = sum(1 for r in responses if not r.strip())
    health = {
        "responses": len(responses),
        "empty": empty,
        "empty_share": round(empty / len(responses), 4) if responses else 0.0,
        "max_gen_toks": cap,
    }
    if count_tokens is not None:
        cut = sum(1 for r in responses if r.strip() and count_tokens(r) >= cap)
        health.update(truncated=cut, truncated_share=round(cut / len(responses), 4) if responses else 0.0)
    health["thresholds"] = dict(spec.guards)  # the schema fills both defaults
    return health


def check_health(spec: BenchmarkSpec, health: dict) -> None:
    """A generation eval whose responses are mostly empty or mostly cut at the length cap
    failed (a dead endpoint, a broken template, a stop sequence that never comes): stop with
    the numbers rather than score zeros. The raw outputs stay cached, so raising a threshold
    (``guards``) re-scores without the model."""
    limits = health["thresholds"]
    problems = []
    if health["empty_share"] > limits["max_empty_share"]:
        problems.append(
            f"{health['empty']} of {health['responses']} responses are empty "
            f"({health['empty_share']:.1%} > max_empty_share {limits['max_empty_share']:.0%})"
        )
    if health.get("truncated_share", 0.0) > limits["max_truncated_share"]:
        problems.append(
            f"{health['truncated']} of {health['responses']} responses were cut at max_gen_toks "
            f"{health['max_gen_toks']} ({health['truncated_share']:.1%} > max_truncated_share "
            f"{limits['max_truncated_share']:.0%})"
        )
    if problems:
        # a generation stage's spec names itself (deltaflow.generation.eval_spec); a benchmark's is its name
        subject, keys = spec.guard_subject or (f"benchmark '{spec.name}'", "for this benchmark")
        raise DeltaflowError(
            f"{subject}: its generations look failed, not scored: {'; '.join(problems)}. "
            "Look at the responses in the eval cache; if this is expected (a short max_gen_toks by design), "
            f"raise `guards` (max_empty_share / max_truncated_share) {keys} in the config"
        )


def raw_outputs(
    model,
    spec: BenchmarkSpec,
    docs_path: Path,
    *,
    cache_dir: Path | None = None,
    key: str | None = None,
    chunk_size: int = 32,
    count_tokens: Callable[[str], int] | None = None,
) -> tuple[list[dict], bool, dict | None]:
    """The model's raw outputs on the docs (from the cache, or generated and cached), whether the
    cache had them, and for generation benchmarks their health (``generation_health``), checked
    (``check_health``) before anything is scored. See ``evaluate_benchmark`` for the arguments."""
    docs_path = Path(docs_path)
    entry = Path(cache_dir) / key if cache_dir is not None and key else None
    hit = entry is not None and (entry / "outputs.jsonl").exists()
    lm = None
    if hit:
        log.info("%s: saved outputs %s (scoring only)", spec.name, key)
        raws = read_jsonl(entry / "outputs.jsonl")
    else:
        lm = model.get() if isinstance(model, LazyModel) else model
        log.info("%s: evaluating (%s)", spec.name, "new outputs" if entry is None else f"cache key {key}")
        if entry is None:
            with tempfile.TemporaryDirectory() as tmp:
                raws = generate_outputs(lm, spec, docs_path, Path(tmp), chunk_size=chunk_size)
        else:
            partial = entry.with_name(key + ".partial")
            raws = generate_outputs(lm, spec, docs_path, partial, chunk_size=chunk_size)
            with atomic_dir(entry) as tmp:
                write_jsonl(tmp / "outputs.jsonl", raws)
            shutil.rmtree(partial, ignore_errors=True)
    health = None
    if spec.output_type in GENERATION_TYPES:
        if count_tokens is None and hasattr(lm, "tok_encode"):
            count_tokens = lambda text: len(lm.tok_encode(text))
        health = generation_health(spec, raws, count_tokens)
        check_health(spec, health)
    return raws, hit, health


def evaluate_benchmark(
    model,
    spec: BenchmarkSpec,
    docs_path: Path,
    *,
    cache_dir: Path | None = None,
    key: str | None = None,
    chunk_size: int = 32,
    count_tokens: Callable[[str], int] | None = None,
) -> BenchmarkResult:
    """One benchmark on a model: (per-item records, metrics, raw outputs).

    ``model`` is an lm-eval LM, a ``LazyModel``, or None when every chunk was already generated
    by another process (the vLLM worker writes them under ``<cache_dir>/<key>.partial``). With
    ``cache_dir`` and ``key`` the raw outputs are read from / saved to ``<cache_dir>/<key>``;
    without them nothing is cached. ``count_tokens`` (the model's tokenizer) measures responses
    cut at max_gen_toks; without it an lm-eval LM's own tokenizer is used when one is loaded.
    Generation benchmarks are checked for silent failure (``check_health``) before scoring.
    """
    t0 = time.time()
    raws, hit, health = raw_outputs(
        model, spec, docs_path, cache_dir=cache_dir, key=key, chunk_size=chunk_size, count_tokens=count_tokens
    )
    docs = read_jsonl(docs_path)
    records, metrics = score_all(spec, docs, raws)
    if not hit:  # lm-eval's per-sample values were computed with this scoring spec
        check_against_lm_eval(spec, raws, records)
    if spec.scorer:  # the user's own metrics (bench.scorer), on cached outputs too
        metrics["scorer"] = apply_scorer(spec.scorer, docs, raws, records)
    metrics.update(benchmark_metrics(spec, records))
    if health is not None:
        metrics["generation_health"] = health
    metrics["eval_s"] = round(time.time() - t0, 2)
    metrics["lm_eval_version"] = output_versions(("lm_eval",))["lm_eval"]
    metrics["task_config"] = json_safe(lm_eval_task_config(spec, docs_path))
    if cache_dir is not None and key:
        metrics["cache"] = {"key": key, "hit": hit}
    return BenchmarkResult(records, metrics, raws)


def write_benchmark_outputs(
    samples_path, metrics_path, records: list[dict], metrics: dict, hit: bool
) -> dict:
    """Write one benchmark's per-item records and metrics; return its entry in the model's
    summary.json (scores and the files' hashes, which tables.load_eval_results checks)."""
    write_jsonl(samples_path, records)
    write_json(metrics_path, metrics)
    return {
        "score": metrics["score"],
        "n": metrics["n"],
        "cache_hit": hit,
        "metrics": str(metrics_path),
        "samples": str(samples_path),
        "metrics_sha256": sha256_path(metrics_path),
        "samples_sha256": sha256_path(samples_path),
    }


def json_safe(value):
    """A task config as JSON: an lm-eval task's Python functions (``!function`` entries) by name."""

    def name(obj):
        return (
            f"<function {getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}>"
        )

    return json.loads(json.dumps(value, default=name))


def check_against_lm_eval(spec: BenchmarkSpec, raws: list[dict], records: list[dict]) -> None:
    """Our per-item scores must equal lm-eval's own for the metrics it computed (greedy
    generation and multiple choice): the scoring code is ours, the numbers are lm-eval's."""
    for raw, rec in zip(raws, records):
        for k, v in raw.get("lm_eval", {}).items():
            if k in rec and abs(float(rec[k]) - v) > 1e-9:
                raise RuntimeError(
                    f"{spec.name} doc {rec['doc_id']}: our {k} {rec[k]} != lm-eval's {v}; "
                    "the scoring code has drifted from lm-eval's"
                )


def benchmark_metrics(spec: BenchmarkSpec, records: list[dict]) -> dict:
    return {
        "benchmark": spec.name,
        "task": spec.task,
        "axis": spec.axis,
        "n": len(records),
        "decoding": decoding_spec(spec),
        "decoding_hash": decoding_hash(spec),
        "generation_spec": generation_spec(spec),
        "scoring": {
            k: getattr(spec, k)
            for k in ("metric", "extract", "ignore", "code")
            if getattr(spec, k) not in (None, [])
        },
    }
