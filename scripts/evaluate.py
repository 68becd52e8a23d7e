"""Rule evaluate: one model x all of its benchmarks through lm-eval (the model is loaded once).

Writes per-sample JSONL + metrics (with a manifest) per benchmark and a summary.json listing
them with their hashes. Each (model x benchmark)
result is also stored under a content-addressed cache key, so when the job reruns because one
benchmark changed, the others are copied from the cache rather than recomputed.
"""
import logging
import shutil
from pathlib import Path

from deltaflow.evaluation import cache_key, evaluate_benchmark, load_model
from deltaflow.io import atomic_dir, atomic_path, read_json, sha256_path, write_json, write_jsonl
from deltaflow.provenance import build_manifest
from deltaflow.rulekit import start_job

started = start_job(snakemake)  # noqa: F821
log = logging.getLogger("evaluate")
p = snakemake.params  # noqa: F821
inp = snakemake.input  # noqa: F821
base_dir = Path(inp.base).parent
# a run's final adapter or one of its checkpoints (results/adapters/<run>/checkpoints/step<N>)
adapter_dir = Path(p.adapter_dir) if p.adapter_dir else None
settings = {"batch_size": p.batch_size, "device": p.device}

merged_dir = Path(p.merged_dir) if p.merged_dir else None
gguf = Path(p.gguf) if p.gguf else None

identity = {"base_weights": read_json(inp.base)["weights_sha256"]}
if adapter_dir is not None:
    identity["adapter"] = {f.name: sha256_path(f) for f in sorted(adapter_dir.glob("adapter_*"))}
if gguf is not None:  # llama.cpp on the GGUF file, tokenized with the merged model's tokenizer
    identity = {"gguf": sha256_path(gguf), "backend": "llama.cpp"}
elif merged_dir is not None:
    identity = {"merged": read_json(merged_dir / "manifest.json")["weights_sha256"]}

lm = None
summary = {"model": snakemake.wildcards.model, "benchmarks": {}}  # noqa: F821
for i, (spec, docs) in enumerate(zip(p.specs, inp.docs)):
    bench = spec["name"]
    key = cache_key(model_identity=identity, spec=spec, docs_path=Path(docs), settings=settings,
                    code=[Path(c) for c in inp.code])
    entry = Path(p.cache_dir) / key
    if (entry / "metrics.json").exists():
        log.info("[%d/%d] %s: cached result %s", i + 1, len(p.specs), bench, key)
        metrics = read_json(entry / "metrics.json")
        metrics["cache"] = {"key": key, "hit": True}
    else:
        if lm is None:
            lm = load_model(base_dir, adapter_dir=adapter_dir, merged_dir=merged_dir, gguf=gguf,
                            batch_size=p.batch_size, device=p.device, threads=p.threads)
        log.info("[%d/%d] %s: evaluating %s", i + 1, len(p.specs), bench, snakemake.wildcards.model)  # noqa: F821
        records, metrics = evaluate_benchmark(lm, spec, Path(docs))
        with atomic_dir(entry) as tmp:
            write_jsonl(tmp / "samples.jsonl", records)
            write_json(tmp / "metrics.json", metrics)
        metrics["cache"] = {"key": key, "hit": False}
        log.info("[%d/%d] %s: score %.4f (n=%d, %.1f s)", i + 1, len(p.specs), bench, metrics["score"],
                 metrics["n"], metrics["eval_s"])
    metrics["model"] = snakemake.wildcards.model  # noqa: F821
    model_inputs = {k: inp[k] for k in ("base", "adapter", "merged", "gguf") if k in inp.keys()}
    metrics["manifest"] = build_manifest("eval", inputs={**model_inputs, "docs": docs, "code": list(inp.code)},
                                         params={"spec": spec, **settings, "adapter_dir": p.adapter_dir,
                                                 "merged_dir": p.merged_dir, "gguf": p.gguf},
                                         started=started)
    with atomic_path(snakemake.output.samples[i]) as tmp:  # noqa: F821
        shutil.copyfile(entry / "samples.jsonl", tmp)
    write_json(snakemake.output.metrics[i], metrics)  # noqa: F821
    summary["benchmarks"][bench] = {
        "score": metrics["score"], "n": metrics["n"], "cache_hit": metrics["cache"]["hit"],
        "metrics": snakemake.output.metrics[i], "samples": snakemake.output.samples[i],  # noqa: F821
        "metrics_sha256": sha256_path(snakemake.output.metrics[i]),  # noqa: F821
        "samples_sha256": sha256_path(snakemake.output.samples[i]),  # noqa: F821
    }
# written last: the tables stage depends on this one file per model (not on every per-benchmark
# file, which would cost Snakemake a DAG lookup each) and checks the hashes it lists
write_json(snakemake.output.summary, summary)  # noqa: F821
