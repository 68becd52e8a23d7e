"""Rule benchmark_docs: the fixed item subset of one benchmark, drawn from its item pool."""
from deltaflow.benchmarks import select_subset
from deltaflow.io import read_jsonl, write_jsonl
from deltaflow.provenance import write_manifest
from deltaflow.rulekit import start_job

started = start_job(snakemake)  # noqa: F821
spec = snakemake.params.spec
docs = select_subset(read_jsonl(snakemake.input.pool), spec.get("n"), spec.get("seed", 1234))
write_jsonl(snakemake.output.docs, docs)
write_manifest(snakemake.output.manifest, "benchmark_docs", inputs=dict(snakemake.input.items()),
               params={"spec": spec}, started=started,
               extra={"n": len(docs), "doc_ids": [d["doc_id"] for d in docs]})
