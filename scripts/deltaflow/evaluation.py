"""Run a model's benchmarks through lm-evaluation-harness and write per-sample records.

lm-eval does the prompting, batching, log-likelihoods, generation, filtering and
scoring. We call ``lm_eval.simple_evaluate`` from Python (its CLI writes
timestamped file names Snakemake cannot declare) and turn its logged samples
into one JSONL record per doc with stable ids and hashes of prompt and decoding.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from .benchmarks import decoding_spec, lm_eval_task_config
from .io import read_jsonl, sha256_path, sha256_text

log = logging.getLogger(__name__)


def decoding_hash(spec: dict) -> str:
    return sha256_text(json.dumps(decoding_spec(spec), sort_keys=True))[:16]


def _to_record(sample: dict, spec: dict, dhash: str) -> dict:
    doc = sample["doc"]
    metric = spec["metric"]
    args = sample["arguments"]
    prompt = args[0][0]
    rec = {
        "doc_id": doc["doc_id"],
        "prompt": prompt,
        "prompt_hash": sha256_text(prompt)[:16],
        "decoding_hash": dhash,
        "target": sample["target"],
        "score": float(sample[metric]),
    }
    if spec["output_type"] == "multiple_choice":
        lls = [float(r[0]) for r in sample["filtered_resps"]]
        rec.update({"choices": doc["choices"], "loglikelihoods": lls,
                    "prediction": max(range(len(lls)), key=lls.__getitem__)})
    else:
        rec.update({"response": sample["resps"][0][0], "extracted": sample["filtered_resps"][0]})
    return rec


def load_model(base_dir: Path, *, adapter_dir: Path | None = None, merged_dir: Path | None = None,
               gguf: Path | None = None, batch_size: int = 16, device: str = "cpu", threads: int = 2):
    """The model as an lm-eval LM, loaded once per eval job and shared by its benchmarks:
    the base with a PEFT adapter applied unmerged (HFLM), a merged full model (HFLM), or a GGUF
    file through llama.cpp (``llamacpp.make_lm``) with the merged model's tokenizer."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if gguf is not None:
        from .llamacpp import make_lm

        return make_lm(gguf, merged_dir, threads=threads)
    from lm_eval.models.huggingface import HFLM

    if merged_dir is not None:
        return HFLM(pretrained=str(merged_dir), device=device, batch_size=batch_size, dtype="float32")
    return HFLM(pretrained=str(base_dir), peft=str(adapter_dir) if adapter_dir else None,
                device=device, batch_size=batch_size, dtype="float32")


def evaluate_benchmark(lm, spec: dict, docs_path: Path) -> tuple[list[dict], dict]:
    """One benchmark through lm-eval on an already loaded model: per-sample records + metrics."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    t0 = time.time()
    task_cfg = lm_eval_task_config(spec, docs_path)
    dec = decoding_spec(spec)
    out = lm_eval.simple_evaluate(
        model=lm,
        tasks=[task_cfg],
        task_manager=TaskManager(include_defaults=False),
        apply_chat_template=bool(dec["chat_template"]),
        log_samples=True,
        bootstrap_iters=0,
        random_seed=0, numpy_random_seed=1234, torch_random_seed=1234, fewshot_random_seed=1234,
    )
    name = task_cfg["task"]
    dhash = decoding_hash(spec)
    samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
    records = [_to_record(s, spec, dhash) for s in samples]
    n_docs = len(read_jsonl(docs_path))
    if len(records) != n_docs:
        raise RuntimeError(f"lm-eval returned {len(records)} samples for {n_docs} docs")
    metric = spec["metric"]
    key = next(k for k in out["results"][name] if k.startswith(f"{metric},"))
    score = float(out["results"][name][key])
    mean = sum(r["score"] for r in records) / len(records)
    if abs(mean - score) > 1e-9:
        raise RuntimeError(f"lm-eval aggregate {score} != mean of sample scores {mean}")
    metrics = {
        "benchmark": spec["name"],
        "task": spec["task"],
        "axis": spec["axis"],
        "metric": metric,
        "lm_eval_key": key,
        "score": score,
        "n": len(records),
        "decoding": dec,
        "decoding_hash": dhash,
        "eval_s": round(time.time() - t0, 2),
        "lm_eval_version": lm_eval.__version__ if hasattr(lm_eval, "__version__") else None,
        "task_config": task_cfg,
    }
    return records, metrics


def cache_key(*, model_identity: dict, spec: dict, docs_path: Path, settings: dict, code: list[Path]) -> str:
    """Content address of one (model x benchmark) evaluation.

    A batched eval job reruns whenever any of its benchmarks changes; results whose key is
    unchanged (same weights, same docs, same spec and decoding, same settings, same eval
    code) are reused from the cache instead of being recomputed.
    """
    parts = {
        "model": model_identity,
        "spec": spec,
        "docs": sha256_path(docs_path),
        "settings": settings,
        "code": {Path(c).name: sha256_path(c) for c in sorted(code)},
    }
    return sha256_text(json.dumps(parts, sort_keys=True, default=str))[:32]
