"""Rule dataset: normalize one raw source to rows.jsonl (+ rejected.jsonl, manifest)."""

from collections import Counter

from deltaflow.datasets import normalize_dataset
from deltaflow.io import write_jsonl
from deltaflow.provenance import write_manifest
from deltaflow.rulekit import start_job

started = start_job(snakemake)
name, spec = snakemake.wildcards.dataset, snakemake.params.spec
result = normalize_dataset(name, spec)
write_jsonl(snakemake.output.rejected, result.rejected)
write_jsonl(snakemake.output.rows, result.rows)
write_manifest(
    snakemake.output.manifest,
    "dataset",
    inputs={"raw": list(snakemake.input.raw), "code": list(snakemake.input.code)},
    params={"name": name, "spec": spec},
    started=started,
    extra={
        "source": result.source,
        "rows": len(result.rows),
        "rows_by_split": dict(Counter(r["split"] for r in result.rows)),
        "rejected": len(result.rejected),
        "excluded_by_where": result.excluded,
        "rejected_by_reason": dict(Counter(r["reason"] for r in result.rejected)),
    },
)
