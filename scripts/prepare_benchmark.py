"""Rule benchmark_docs: the fixed item subset of one benchmark."""
from deltaflow.benchmarks import prepare_docs
from deltaflow.io import write_jsonl
from deltaflow.provenance import write_manifest
from deltaflow.rulekit import start_job

started = start_job(snakemake)  # noqa: F821
spec = snakemake.params.spec
rows = snakemake.input.rows if "rows" in snakemake.input.keys() else None
docs = prepare_docs(spec, rows)
write_jsonl(snakemake.output.docs, docs)
write_manifest(snakemake.output.manifest, "benchmark_docs", inputs=dict(snakemake.input.items()),
               params={"spec": spec}, started=started,
               extra={"n": len(docs), "doc_ids": [d["doc_id"] for d in docs]})
