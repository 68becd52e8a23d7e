"""Rule delta_table: the adapter-vs-base table from the eval records."""
from pathlib import Path

from deltaflow.errors import DeltaflowError
from deltaflow.io import read_json, read_jsonl, sha256_path, write_text
from deltaflow.provenance import write_manifest
from deltaflow.rulekit import start_job
from deltaflow.tables import EvalResult, delta_table, to_markdown

started = start_job(snakemake)  # noqa: F821
results = []
inputs = {}
for summary_path in snakemake.input.summaries:
    for bench, entry in sorted(read_json(summary_path)["benchmarks"].items()):
        for kind in ("metrics", "samples"):
            if sha256_path(entry[kind]) != entry[f"{kind}_sha256"]:
                raise DeltaflowError(f"{entry[kind]} changed after {summary_path} was written; "
                                     "rerun its eval job (snakemake --forcerun evaluate)")
        m = read_json(entry["metrics"])
        results.append(EvalResult(model=Path(summary_path).parent.name, benchmark=bench,
                                  metrics=m, records=read_jsonl(entry["samples"])))
        inputs[f"{Path(summary_path).parent.name}/{bench}"] = entry["metrics"]
df = delta_table(results, baseline="base")
write_text(snakemake.output.csv, df.to_csv(index=False))
write_text(snakemake.output.md, to_markdown(df, title=f"Delta vs base ({snakemake.params.base_name})"))
inputs["code"] = list(snakemake.input.code)
write_manifest(snakemake.output.manifest, "delta_table", inputs=inputs,
               params={"baseline": "base"}, started=started, extra={"rows": len(df)})
