"""Rule benchmark_items: every item of one benchmark's source, as docs (the pool). Rows a
loader leaves out (IFBench prompts whose checkers need data that is not installed) are
listed with the reason in the manifest (and logged by prepare_items)."""

from deltaflow.benchmarks import prepare_items
from deltaflow.io import write_jsonl
from deltaflow.provenance import write_manifest
from deltaflow.rulekit import start_job

started = start_job(snakemake)
spec = snakemake.params.spec
# Namedlist: `in` tests the file names, keys() the input names
rows = snakemake.input.rows if "rows" in snakemake.input.keys() else None  # noqa: SIM118
excluded = []
items = prepare_items(spec, rows, excluded=excluded)
write_jsonl(snakemake.output.pool, items)
write_manifest(
    snakemake.output.manifest,
    "benchmark_items",
    inputs=dict(snakemake.input.items()),
    params={"spec": spec},
    started=started,
    extra={"items": len(items), "excluded": excluded},
)
