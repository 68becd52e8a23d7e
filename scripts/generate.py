"""Rule generate: a model answers a prompt set; the answers become a dataset (rows.jsonl,
rejected.jsonl, manifest.json under results/data/<generation>/) in the schema every dataset
has, each row's ``origin`` naming the model, its weights' hash and the generation
(deltaflow.generation). Generating goes through the eval path (bench.run.raw_outputs):
cached by content, resumed by chunks after a kill, vLLM when eval.backend is vllm.
"""

import json
import logging
from collections import Counter
from pathlib import Path

from deltaflow.bench.raw_outputs import token_counter
from deltaflow.bench.run import LazyModel, cache_key, generation_code, raw_outputs
from deltaflow.bench.served import key_settings, load_ref, ref_identity
from deltaflow.bench.spec import BenchmarkSpec
from deltaflow.generation import build_rows, eval_spec, prompt_docs
from deltaflow.io import atomic_path, read_jsonl, sha256_text, write_jsonl
from deltaflow.provenance import device_class, output_versions, write_manifest
from deltaflow.rulekit import start_job

started = start_job(snakemake)
log = logging.getLogger("generate")
p, inp, out = snakemake.params, snakemake.input, snakemake.output
name = snakemake.wildcards.generation
gen = p.spec
spec = eval_spec(name, gen)
base_dir = Path(inp.base).parent
cache_dir = Path(p.cache_dir)

vspec = BenchmarkSpec.from_dict(p.verifier) if p.verifier else None
docs = prompt_docs(name, gen, read_jsonl(inp.prompts), verified=vspec is not None, vspec=vspec)
text = "".join(json.dumps(d, sort_keys=True) + "\n" for d in docs)
docs_path = cache_dir / "docs" / f"{sha256_text(text)[:32]}.jsonl"
if not docs_path.exists():
    with atomic_path(docs_path) as tmp:
        tmp.write_text(text)
log.info(
    "%s: %d prompts from %s/%s, %d sample(s) each, mode %s",
    name,
    len(docs),
    gen["prompts"]["dataset"],
    gen["prompts"]["split"],
    gen["sampling"]["samples"],
    gen["mode"],
)


def on_vllm(ref):
    """vLLM generates for a workflow model or a local folder (not a GGUF, not a hub id offline)."""
    return p.backend == "vllm" and not ref.get("gguf") and not ref.get("served") and "hub" not in ref


def outputs_of(role, ref):
    """The raw outputs of one model on the prompts, and what identifies them."""
    identity = ref_identity(ref, Path(inp.base))
    backend = "vllm" if on_vllm(ref) else "hf"
    if backend == "vllm":
        from deltaflow.bench.vllm_backend import run_worker_job, vllm_python, worker_versions

        versions = worker_versions(vllm_python(p.vllm_python))
    else:
        versions = output_versions()
    settings = key_settings(
        ref,
        {
            "batch_size": p.batch_size,
            "device": p.device,
            "backend": backend,
            "device_class": device_class(p.device),
        },
    )
    key = cache_key(
        model_identity=identity,
        spec=spec,
        docs_path=docs_path,
        settings=settings,
        code=generation_code(backend),
        versions=versions,
    )
    model = None
    if backend == "vllm":
        if not (cache_dir / key / "outputs.jsonl").exists():
            model_dir = Path(ref.get("path") or ref.get("merged_dir") or base_dir)
            adapter = Path(ref["adapter_dir"]) if ref.get("adapter_dir") else None
            todo = {
                "spec": spec.to_dict(),
                "docs": str(docs_path),
                "work_dir": str(cache_dir / (key + ".partial")),
            }
            run_worker_job(
                python=vllm_python(p.vllm_python),
                model_dir=model_dir,
                arms=[{"model": name, "adapter_dir": adapter, "benchmarks": [todo]}],
                chunk_size=p.chunk_size,
                options=p.vllm_options,
                job_dir=cache_dir / f".vllm-{name}-{role}",
            )
    else:
        opts = {"batch_size": p.batch_size, "device": p.device, "threads": snakemake.threads}
        served_cache = cache_dir / "served" / f"{name}-{role}"  # a served teacher's answers
        model = LazyModel(lambda: load_ref(ref, base_dir, request_cache=served_cache, **opts))
    count = None
    if "hub" not in ref:
        where = Path(ref["path"]) if "path" in ref else base_dir
        count = token_counter(
            where,
            adapter_dir=Path(ref["adapter_dir"]) if ref.get("adapter_dir") else None,
            merged_dir=next(
                (
                    Path(d)
                    for d in (ref.get("merged_dir"), (ref.get("served") or {}).get("tokenizer_dir"))
                    if d
                ),
                None,
            ),
        )
    raws, hit, health = raw_outputs(
        model, spec, docs_path, cache_dir=cache_dir, key=key, chunk_size=p.chunk_size, count_tokens=count
    )
    label = ref.get("model") or (
        f"hub:{ref['hub']}@{ref['revision']}" if "hub" in ref else f"path:{ref['path']}"
    )
    return raws, {
        "model": label,
        "model_sha256": sha256_text(json.dumps(identity, sort_keys=True))[:16],
        "backend": backend,
        "cache": {"key": key, "hit": hit},
        "generation_health": health,
    }


raws, made_by = outputs_of("model", p.models["model"])
rejected_raws, rejected_by = None, None
if "rejected_model" in p.models:
    rejected_raws, rejected_by = outputs_of("rejected_model", p.models["rejected_model"])

row_origin = {
    "model": made_by["model"],
    "model_sha256": made_by["model_sha256"],
    "generation": name,
    "written_by": p.origin["written_by"],
    "prompts_by": p.origin["prompts_by"],
}
if rejected_by:
    row_origin.update(rejected_model=rejected_by["model"], rejected_model_sha256=rejected_by["model_sha256"])
rows, rejected, counts = build_rows(
    name, gen, docs, raws, origin=row_origin, vspec=vspec, rejected_raws=rejected_raws
)
log.info(
    "%s: %d rows from %d prompts, %d prompts rejected%s",
    name,
    counts["rows"],
    counts["prompts"],
    counts["rejected"],
    f"; verifier {vspec.name} passed {counts['samples_passed']} of {counts['samples_checked']} samples"
    if vspec
    else "",
)
if counts.get("samples_hacked"):
    log.warning(
        "%s: %d samples gamed the verifier's tests (ended the run before the tests finished, or "
        "compared an always-equal value); they count as failed",
        name,
        counts["samples_hacked"],
    )
if not rows:
    reasons = Counter(r["reason"] for r in rejected)
    raise RuntimeError(
        f"generation '{name}': no rows from {len(docs)} prompts; by reason: {dict(reasons)}. "
        "See the responses in the log's cache entry; loosen the verifier or raise sampling.samples"
    )
write_jsonl(out.rejected, rejected)
write_jsonl(out.rows, rows)
write_manifest(
    out.manifest,
    "generation",
    inputs={"prompts": inp.prompts, "models": list(inp.models), "base": inp.base, "code": list(inp.code)},
    params={"name": name, "spec": gen, "verifier": vspec.name if vspec else None},
    started=started,
    extra={
        "source": {"type": "generation", "prompts": gen["prompts"], "model": made_by["model"]},
        "sampling": gen["sampling"],
        "decoding": spec.decoding,
        "mode": gen["mode"],
        "made_by": made_by,
        "rejected_by": rejected_by,
        "origin": p.origin,
        **counts,
        "rows_by_split": dict(Counter(r["split"] for r in rows)),
        "rejected_by_reason": dict(Counter(r["reason"].split(":")[0] for r in rejected)),
    },
)
