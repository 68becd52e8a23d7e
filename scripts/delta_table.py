"""Rule delta_table: the adapter-vs-base table from the eval records."""
from pathlib import Path

from deltaflow.io import read_json, read_jsonl, write_text
from deltaflow.provenance import write_manifest
from deltaflow.rulekit import start_job
from deltaflow.tables import EvalResult, delta_table, to_markdown

started = start_job(snakemake)  # noqa: F821
results = []
for metrics_path, samples_path in zip(snakemake.input.metrics, snakemake.input.samples):
    m = read_json(metrics_path)
    results.append(EvalResult(model=Path(metrics_path).parent.name, benchmark=m["benchmark"],
                              metrics=m, records=read_jsonl(samples_path)))
df = delta_table(results, baseline="base")
write_text(snakemake.output.csv, df.to_csv(index=False))
write_text(snakemake.output.md, to_markdown(df, title=f"Delta vs base ({snakemake.params.base_name})"))
inputs = {f"{Path(q).parent.name}/{Path(q).name}": q for q in snakemake.input.metrics}
inputs["code"] = list(snakemake.input.code)
write_manifest(snakemake.output.manifest, "delta_table", inputs=inputs,
               params={"baseline": "base"}, started=started, extra={"rows": len(df)})
