"""Rule benchmark_items: every item of one benchmark's source, as docs (the pool). Rows a
loader leaves out (IFBench prompts whose checkers need data that is not installed) are
listed with the reason in the manifest (and logged by prepare_items)."""

from deltaflow.bench.items import prepare_items
from deltaflow.bench.spec import BenchmarkSpec
from deltaflow.io import write_jsonl
from deltaflow.provenance import write_manifest
from deltaflow.rulekit import start_job

started = start_job(snakemake)
spec = BenchmarkSpec.from_dict(snakemake.params.spec)  # the item-pool part (items.item_spec)
# Namedlist: `in` tests the file names, keys() the input names
rows = snakemake.input.rows if "rows" in snakemake.input.keys() else None  # noqa: SIM118
excluded = []
items = prepare_items(spec, rows, excluded=excluded)
write_jsonl(snakemake.output.pool, items)
write_manifest(
    snakemake.output.manifest,
    "benchmark_items",
    inputs=dict(snakemake.input.items()),
    params={"spec": snakemake.params.spec},
    started=started,
    extra={"items": len(items), "excluded": excluded},
)
