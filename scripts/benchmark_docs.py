"""Rule benchmark_docs: the fixed item subset of one benchmark, drawn from its item pool, and
its fixed few-shot examples (none when decoding.num_fewshot is 0), never among the scored items."""

from deltaflow.bench.items import choose_shots, prepare_items, select_subset
from deltaflow.bench.spec import BenchmarkSpec
from deltaflow.io import read_jsonl, sha256_text, write_jsonl
from deltaflow.provenance import write_manifest
from deltaflow.rulekit import start_job

started = start_job(snakemake)
spec = BenchmarkSpec.from_dict(snakemake.params.spec)
pool = read_jsonl(snakemake.input.pool)
docs = select_subset(pool, spec.n, spec.seed)
fs_source = (spec.fewshot or {}).get("source")
shots = choose_shots(spec, prepare_items(spec.replace(source=fs_source)) if fs_source else pool, docs)
write_jsonl(snakemake.output.docs, docs)
write_jsonl(snakemake.output.fewshot, shots)
write_manifest(
    snakemake.output.manifest,
    "benchmark_docs",
    inputs=dict(snakemake.input.items()),
    params={"spec": snakemake.params.spec},
    started=started,
    extra={
        "n": len(docs),
        "doc_ids": [d["doc_id"] for d in docs],
        "fewshot_ids": [d["doc_id"] for d in shots],
        "fewshot_sha256": sha256_text("".join(d["doc_id"] for d in shots)) if shots else None,
    },
)
