"""A model's raw outputs on a benchmark's docs, through lm-evaluation-harness: what the output
cache stores, and the only eval code its key depends on (it imports nothing that scores).

lm-eval does the prompting, chat templates, batching, log-likelihoods and generation (its
``repeats`` give k samples per item). We call ``lm_eval.simple_evaluate`` from Python (its CLI
writes timestamped file names Snakemake cannot declare), a chunk of docs at a time so a killed
eval resumes, and keep one raw output per doc with stable ids and hashes of prompt and
decoding. Scoring is deltaflow.bench.scoring's (it calls lm-eval's filters and exact_match) and
is checked against lm-eval's own per-sample metrics wherever lm-eval computed them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from ..io import atomic_path, read_jsonl, safetensors_sha256, sha256_path, sha256_text, write_jsonl
from ..progress import meter, report
from ..vocab import adapter_has_tokenizer, load_base_for_adapter
from .lmeval import fewshot_file, lm_eval_docs_file, lm_eval_task_config
from .spec import BenchmarkSpec, decoding_spec

log = logging.getLogger(__name__)


def decoding_hash(spec: BenchmarkSpec) -> str:
    return sha256_text(json.dumps(decoding_spec(spec), sort_keys=True))[:16]


def generation_spec(spec: BenchmarkSpec) -> dict:
    """What decides a model's raw outputs on the docs (not how they are scored): a change to
    the answer regex, ignore list or metric re-scores saved outputs instead of re-running the
    model."""
    out = {
        "output_type": spec.output_type,
        "decoding": decoding_spec(spec),
        "lm_eval": spec.lm_eval,
    }
    if spec.loader == "lm_eval":  # lm-eval's own task: its YAML (hash), version and overrides
        out["lm_eval_task"] = spec.source
    return out


def raw_output(sample: dict, spec: BenchmarkSpec, dhash: str) -> dict:
    """The model's raw output for one doc from an lm-eval logged sample: the choices'
    log-likelihoods, or the k generated responses. lm-eval's own per-sample metric values are
    kept so scoring can be checked against them."""
    contexts = [a[0] for a in sample["arguments"]]
    prompt = contexts[0] if len(set(contexts)) == 1 else contexts
    raw = {
        "doc_id": sample["doc"]["doc_id"],
        "prompt": prompt,
        "prompt_hash": sha256_text(json.dumps(prompt))[:16]
        if isinstance(prompt, list)
        else sha256_text(prompt)[:16],
        "decoding_hash": dhash,
    }
    if spec.output_type == "multiple_choice":
        raw["loglikelihoods"] = [float(r[0]) for r in sample["filtered_resps"]]
    else:
        raw["responses"] = [str(r) for r in sample["resps"][0]]
    raw["lm_eval"] = sample.get("_metrics") or {
        k: float(sample[k]) for k in ("acc", "acc_norm", "exact_match") if k in sample
    }
    return raw


def model_identity(
    base_manifest: Path,
    *,
    adapter_dir: Path | None = None,
    merged_dir: Path | None = None,
    gguf: Path | None = None,
) -> dict:
    """What decides a model's outputs, for cache keys: the base weights' hash and the adapter's
    files, the merged weights' hash, or the GGUF file's hash (run by llama.cpp)."""
    from ..io import read_json

    if gguf is not None:
        return {"gguf": sha256_path(gguf), "backend": "llama.cpp"}
    if merged_dir is not None:
        manifest = Path(merged_dir) / "manifest.json"
        # a full fine-tune's checkpoint has no manifest of its own: its weights are hashed here
        weights = (
            read_json(manifest)["weights_sha256"] if manifest.exists() else safetensors_sha256(merged_dir)
        )
        return {"merged": weights}
    identity = {"base_weights": read_json(base_manifest)["weights_sha256"]}
    if adapter_dir is not None:
        identity["adapter"] = {
            f.name: _adapter_config_sha256(f) if f.suffix == ".json" else sha256_path(f)
            for f in sorted(Path(adapter_dir).glob("adapter_*"))
        }
    return identity


def _adapter_config_sha256(path: Path) -> str:
    """PEFT writes ``target_modules`` from a Python set, in a different order in every process:
    the same adapter trained twice has byte-different configs. Hash it canonically (lists of
    module names sorted, keys sorted) so an identical retrained adapter hits the eval cache."""
    from ..io import read_json

    cfg = read_json(path)
    for key in ("target_modules", "modules_to_save", "exclude_modules", "trainable_token_indices"):
        if isinstance(cfg.get(key), list) and all(isinstance(v, str) for v in cfg[key]):
            cfg[key] = sorted(cfg[key])
    return sha256_text(json.dumps(cfg, sort_keys=True))


def load_model(
    base_dir: Path,
    *,
    adapter_dir: Path | None = None,
    merged_dir: Path | None = None,
    gguf: Path | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    threads: int = 2,
):
    """The model as an lm-eval LM, loaded once per eval job and shared by its benchmarks:
    the base with a PEFT adapter applied unmerged (HFLM), a merged full model (HFLM), or a GGUF
    file through llama.cpp (``llamacpp.make_lm``) with the merged model's tokenizer."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if gguf is not None:
        from ..llamacpp import make_lm

        return make_lm(gguf, merged_dir, threads=threads)
    from .shared_context import SharedContextHFLM  # lm-eval HFLM, one forward per MCQ context

    if merged_dir is not None:
        return SharedContextHFLM(
            pretrained=str(merged_dir), device=device, batch_size=batch_size, dtype="float32"
        )
    if adapter_has_tokenizer(adapter_dir):
        return _lm_with_new_tokens(base_dir, adapter_dir, batch_size=batch_size, device=device)
    return SharedContextHFLM(
        pretrained=str(base_dir),
        peft=str(adapter_dir) if adapter_dir else None,
        device=device,
        batch_size=batch_size,
        dtype="float32",
    )


def ref_identity(ref: dict, base_manifest: Path) -> dict:
    """What decides the outputs of a model named by reference (judges, generators): a workflow
    model's weights (``adapter_dir`` / ``merged_dir`` / ``gguf``, see ``model_identity``), a
    local folder's files (``path``), or a pinned hub revision (``hub`` + ``revision``)."""

    def opt(key):
        return Path(ref[key]) if ref.get(key) else None

    if "path" in ref:
        return {
            "path_files": {f.name: sha256_path(f) for f in sorted(Path(ref["path"]).iterdir()) if f.is_file()}
        }
    if "hub" in ref:
        return {"hub": ref["hub"], "revision": ref["revision"]}
    return model_identity(
        base_manifest, adapter_dir=opt("adapter_dir"), merged_dir=opt("merged_dir"), gguf=opt("gguf")
    )


def load_ref(ref: dict, base_dir: Path, *, batch_size: int = 16, device: str = "cpu", threads: int = 2):
    """A model named by reference (see ``ref_identity``) as an lm-eval LM."""

    def opt(key):
        return Path(ref[key]) if ref.get(key) else None

    if "path" in ref:  # a full local model, loaded as a merged one is
        return load_model(base_dir, merged_dir=Path(ref["path"]), batch_size=batch_size, device=device)
    if "hub" in ref:
        from .shared_context import SharedContextHFLM

        return SharedContextHFLM(
            pretrained=ref["hub"],
            revision=ref["revision"],
            device=device,
            batch_size=batch_size,
            dtype="float32",
        )
    return load_model(
        base_dir,
        adapter_dir=opt("adapter_dir"),
        merged_dir=opt("merged_dir"),
        gguf=opt("gguf"),
        batch_size=batch_size,
        device=device,
        threads=threads,
    )


def token_counter(base_dir: Path, *, adapter_dir: Path | None = None, merged_dir: Path | None = None):
    """Counts a response's tokens with the evaluated model's tokenizer (the adapter's when it
    brought new tokens, the merged model's for merged and GGUF exports), loaded on first use:
    the silent-generation guard measures responses cut at max_gen_toks with it."""
    state: dict = {}

    def count(text: str) -> int:
        if "tok" not in state:
            from transformers import AutoTokenizer

            where = adapter_dir if adapter_has_tokenizer(adapter_dir) else (merged_dir or base_dir)
            state["tok"] = AutoTokenizer.from_pretrained(str(where))
        return len(state["tok"](text, add_special_tokens=False)["input_ids"])

    return count


def _lm_with_new_tokens(base_dir: Path, adapter_dir: Path, *, batch_size: int, device: str):
    """An adapter that brought new tokens, applied unmerged: the base extended to its vocabulary
    (vocab.load_base_for_adapter), then PEFT on top, handed to HFLM as a model.

    lm-eval's own ``peft=`` path resizes with transformers' random mean-resizing and then calls
    ``tie_weights()``, which fails on a PEFT model with trainable token rows (transformers
    looks for ``embed_tokens.weight`` behind PEFT's wrapper). PEFT ties the rows itself when it
    loads the adapter, so that call is skipped on this one model.
    """
    import torch
    from peft import PeftModel

    from .shared_context import SharedContextHFLM

    base, tok = load_base_for_adapter(base_dir, adapter_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapter_dir)).to(device).eval()
    model.tie_weights = lambda *a, **k: None
    return SharedContextHFLM(pretrained=model, tokenizer=tok, batch_size=batch_size)


def _lm_eval_samples(lm, spec: BenchmarkSpec, docs_path: Path) -> list[dict]:
    from unittest import mock

    import lm_eval
    import lm_eval.evaluator
    from lm_eval.tasks import TaskManager

    if spec.shots:  # lm-eval reads the benchmark's fixed shots from a file beside the docs
        write_jsonl(fewshot_file(docs_path), spec.shots)
    if spec.loader == "lm_eval":  # lm-eval's own task reads its own docs (with our ids)
        write_jsonl(
            lm_eval_docs_file(docs_path),
            [{**d["lm_eval_doc"], "doc_id": d["doc_id"]} for d in read_jsonl(docs_path)],
        )
    task_cfg = lm_eval_task_config(spec, docs_path)
    # lm-eval ends every call with an environment report (torch's collect_env: `pip list` and
    # more), ~0.8 s each time here, and we call it once per chunk of docs; deltaflow records its
    # own provenance (package versions, host) in every manifest, so the report is skipped
    with mock.patch.object(lm_eval.evaluator, "add_env_info", lambda storage: None):
        out = lm_eval.simple_evaluate(
            model=lm,
            tasks=[task_cfg],
            task_manager=TaskManager(include_defaults=False),
            apply_chat_template=bool(decoding_spec(spec)["chat_template"]),
            log_samples=True,
            bootstrap_iters=0,
            # a sampled generation's own seed (generations.<n>.sampling.seed) when it has one
            random_seed=0,
            numpy_random_seed=1234,
            torch_random_seed=decoding_spec(spec).get("seed", 1234),
            fewshot_random_seed=1234,
        )
    samples = out["samples"][task_cfg["task"]]
    if spec.loader == "lm_eval":
        samples = _merge_filters(samples, spec)
    return sorted(samples, key=lambda s: s["doc_id"])


def _merge_filters(samples: list[dict], spec: BenchmarkSpec) -> list[dict]:
    """lm-eval logs one sample per (doc, filter); one per doc, with every per-sample metric as
    ``<metric>,<filter>`` (lm-eval's result keys) under ``_metrics``."""
    by_doc: dict = {}
    for s in samples:
        first = by_doc.setdefault(s["doc"]["doc_id"], {**s, "_metrics": {}})
        for key in spec.metric_keys:
            metric, filt = key.rsplit(",", 1)
            if s.get("filter", "none") == filt and metric in s:
                first["_metrics"][key] = float(s[metric])
    return list(by_doc.values())


def generate_outputs(
    lm, spec: BenchmarkSpec, docs_path: Path, work_dir: Path, *, chunk_size: int = 32, on_chunk=None
) -> list[dict]:
    """Raw outputs for every doc, ``chunk_size`` docs per lm-eval call. Each finished chunk is
    written atomically under ``work_dir``; a run killed mid-way resumes from the chunks already
    there (a chunk whose doc ids do not match is recomputed). With ``lm=None`` every chunk must
    already be saved (by the vLLM worker, see vllm_backend)."""
    docs = read_jsonl(docs_path)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    dhash = decoding_hash(spec)
    chunks = [docs[i : i + chunk_size] for i in range(0, len(docs), chunk_size)]
    outputs: list[dict] = []
    resumed = 0
    started, done_here = time.time(), 0  # docs computed in this job (resumed chunks are free)
    for ci, chunk in enumerate(chunks):
        path = work_dir / f"chunk-{ci:05d}.jsonl"
        ids = [d["doc_id"] for d in chunk]
        if path.exists():
            rows = read_jsonl(path)
            if [r["doc_id"] for r in rows] == ids and all(r["decoding_hash"] == dhash for r in rows):
                outputs.extend(rows)
                resumed += 1
                continue
        if lm is None:
            raise RuntimeError(f"{spec.name}: chunk {ci} was not generated (missing {path}); rerun the eval")
        t0 = time.time()
        chunk_docs = work_dir / "chunk-docs.jsonl"  # lm-eval reads the chunk from a file
        write_jsonl(chunk_docs, chunk)
        samples = _lm_eval_samples(lm, spec, chunk_docs)
        if sorted(s["doc"]["doc_id"] for s in samples) != sorted(ids):
            raise RuntimeError(f"lm-eval returned {len(samples)} samples for {len(chunk)} docs")
        by_id = {s["doc"]["doc_id"]: raw_output(s, spec, dhash) for s in samples}
        # the item's share of its batch's wall time (a scorer's latency metric reads it)
        per_item = round((time.time() - t0) / len(chunk), 4)
        rows = [{**by_id[i], "seconds": per_item} for i in ids]
        with atomic_path(path) as tmp:
            write_jsonl(tmp, rows)
        outputs.extend(rows)
        done_here += len(chunk)
        todo = len(docs) - len(outputs) + done_here  # the docs this job computes, resumed chunks aside
        report(
            f"{spec.name}: chunk {ci + 1}/{len(chunks)} ({len(chunk)} docs) in {time.time() - t0:.1f} s; "
            f"{len(outputs)}/{len(docs)} docs {meter(done_here, todo, time.time() - started, 'docs')}"
            + (f"; {resumed} chunks resumed from a previous run" if resumed else ""),
            last=len(outputs) == len(docs),
        )
        if on_chunk is not None:
            on_chunk(ci)
    if resumed:
        log.info("%s: %d of %d chunks were resumed from %s", spec.name, resumed, len(chunks), work_dir)
    return outputs
