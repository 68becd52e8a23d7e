"""Rule judge: one model's responses to every judged benchmark, scored by each benchmark's judge
model (deltaflow.bench.judging): pairwise against the baseline's responses in both orders, or on a
rubric. The judge's questions go through benchmark_eval's one eval path (cached by content,
resumable by chunks); writes per-item verdict records + metrics per benchmark and a summary in
the eval summary's form.
"""

import json
import logging
from pathlib import Path

from deltaflow.bench.judge_metrics import judge_metrics
from deltaflow.bench.judging import (
    judge_docs,
    judge_eval_spec,
    judge_label,
    judge_records,
    responses_of,
    settings,
)
from deltaflow.bench.raw_outputs import decoding_hash
from deltaflow.bench.run import (
    LazyModel,
    benchmark_metrics,
    cache_key,
    generation_code,
    raw_outputs,
    write_benchmark_outputs,
)
from deltaflow.bench.scorer import apply_scorer
from deltaflow.bench.served import key_settings, load_ref, ref_identity
from deltaflow.bench.spec import BenchmarkSpec
from deltaflow.io import atomic_path, read_jsonl, sha256_text, write_json
from deltaflow.provenance import build_manifest, device_class, output_versions
from deltaflow.rulekit import start_job
from deltaflow.suites import write_not_run

started = start_job(snakemake)
log = logging.getLogger("judge")
p = snakemake.params
inp = snakemake.input
model = snakemake.wildcards.model
base_dir = Path(inp.base).parent
cache_dir = Path(p.cache_dir)
versions = output_versions()
hf_settings = {
    "batch_size": p.batch_size,
    "device": p.device,
    "backend": "hf",
    "device_class": device_class(p.device),
}


identities = {label: ref_identity(j, Path(inp.base)) for label, j in p.judges.items()}
judges = {
    label: LazyModel(
        lambda j=j: load_ref(
            j,
            base_dir,
            request_cache=cache_dir / "served" / f"judge-{model}",  # a served judge's answers
            batch_size=p.batch_size,
            device=p.device,
            threads=p.threads,
        )
    )
    for label, j in p.judges.items()
}

summary = {"model": model, "benchmarks": {}}
out = snakemake.output
# each judged benchmark's output files by name (the rule declares all; this model runs those of specs)
files = {Path(f).stem: (f, m) for f, m in zip(out.samples, out.metrics)}
for bench, reason in p.not_run.items():  # outside this model's suites: a not_run record, no results
    write_not_run(model, bench, reason, *files[bench])
for i, spec in enumerate(BenchmarkSpec.from_dict(s) for s in p.specs):
    bench, s, label = spec.name, settings(spec), judge_label(spec)
    docs = read_jsonl(inp.docs[i])
    mine = responses_of(inp.responses[i])
    pairwise = s["kind"] == "pairwise"
    self_baseline = pairwise and s["baseline"] == model
    theirs = None
    if pairwise:
        theirs = (
            mine if self_baseline else responses_of(f"results/evals/{s['baseline']}/{bench}.responses.jsonl")
        )
    jspec = judge_eval_spec(spec)
    hashes = {
        "judge_model": label,
        "judge_model_sha256": sha256_text(json.dumps(identities[label], sort_keys=True))[:16],
        "judge_decoding_hash": decoding_hash(jspec),
    }
    raws, hit = [], True
    if not self_baseline:
        jdocs = judge_docs(spec, docs, mine, theirs)
        # the judge's questions hold the responses: their file's hash is part of the cache key
        text = "".join(json.dumps(d, sort_keys=True) + "\n" for d in jdocs)
        jdocs_path = cache_dir / "docs" / f"{sha256_text(text)[:32]}.jsonl"
        if not jdocs_path.exists():
            with atomic_path(jdocs_path) as tmp:
                tmp.write_text(text)
        key = cache_key(
            model_identity=identities[label],
            spec=jspec,
            docs_path=jdocs_path,
            settings=key_settings(p.judges[label], hf_settings),
            code=generation_code("hf"),
            versions=versions,
        )
        log.info(
            "[%d/%d] %s: %d judgments of %s by %s (%s, %s)",
            i + 1,
            len(p.specs),
            bench,
            len(jdocs),
            model,
            label,
            s["kind"],
            s["mode"],
        )
        raws, hit, _ = raw_outputs(
            judges[label], jspec, jdocs_path, cache_dir=cache_dir, key=key, chunk_size=p.chunk_size
        )
    records = judge_records(spec, docs, mine, raws, theirs, self_baseline=self_baseline, hashes=hashes)
    metrics = judge_metrics(spec, records)
    if spec.scorer:  # the user's own metrics on the judged responses (their timing is the eval's)
        responses = [{"doc_id": d, "responses": r} for d, r in mine.items()]
        metrics["scorer"] = apply_scorer(spec.scorer, docs, responses, records)
    metrics.update(benchmark_metrics(spec, records))
    metrics.update(model=model, cache={"hit": hit}, judge_decoding=jspec.decoding, versions=versions)
    metrics["manifest"] = build_manifest(
        "judge",
        inputs={
            "responses": inp.responses[i],
            "docs": inp.docs[i],
            "baselines": list(inp.baselines),
            "code": list(inp.code),
        },
        params={"spec": spec.to_dict(), "judge_model": p.judges[label]},
        started=started,
    )
    log.info(
        "[%d/%d] %s: %s %.4f (n=%d, %d unparsed of %d judgments)",
        i + 1,
        len(p.specs),
        bench,
        metrics["metric"],
        metrics["score"],
        metrics["n"],
        metrics["unparsed"],
        metrics["judgments"],
    )
    summary["benchmarks"][bench] = write_benchmark_outputs(*files[bench], records, metrics, hit)
write_json(snakemake.output.summary, summary)
