"""Rule delta_table: every model vs base (and configured pairs) with paired statistics."""

import pandas as pd

from deltaflow.io import read_json, write_text
from deltaflow.provenance import write_manifest
from deltaflow.rulekit import start_job
from deltaflow.tables import (
    TableSettings,
    adjust_table,
    comparison_table,
    delta_table,
    load_eval_results,
    metric_gate_rows,
    model_matrix,
    to_html,
    to_markdown,
)

started = start_job(snakemake)
p, out = snakemake.params, snakemake.output
results, inputs = load_eval_results(snakemake.input.summaries)

settings = TableSettings.from_config(p.tables, p.axes)
references = {name: spec["scores"] for name, spec in p.tables["references"].items()}
# benchmarks outside a model's suites (deltaflow.suites): "not run" rows, never a blank
not_run = {m: d for m, d in p.not_run.items() if d}
# each model vs its own base (base_models:; a base is its own)
df = delta_table(
    results, baseline="base", settings=settings, references=references, not_run=not_run, baselines=p.bases
)
# gates on a metric other than the headline read their own axis rows, <axis>@<metric>
gate_rows = metric_gate_rows(results, p.gates, settings, not_run=not_run, baselines=p.bases)
if len(gate_rows):
    df = pd.concat([df, gate_rows], ignore_index=True)
# p-values adjusted across the table's cells (tables.adjust); the notes name the families
df = adjust_table(df, settings)
# a GGUF that failed its parity check is flagged on every row of its model
flags = {}
for path in snakemake.input.parity:
    report = read_json(path)
    if not report["passed"]:
        flags[report["model"]] = f"GGUF parity check failed ({report['reason']}; see {path})"
df["flag"] = df.model.map(flags).fillna("")
# every run vs base, then the configured pairs (pairwise rows: mean delta, win/loss/tie rates)
pairs = [(p.bases[m], m) for m in p.models if m != p.bases[m]]
pairs += [
    (c["left"], c["right"], c["metric"]) if c.get("metric") else (c["left"], c["right"])
    for c in p.tables["comparisons"]
    if c.get("metric") or (c["left"], c["right"]) not in pairs
]
cdf = comparison_table(results, pairs, settings, not_run)
# every model against every model, no pair listed in the config
mdf = model_matrix(results, list(p.models), settings, not_run)
title = f"Delta vs base ({p.base_name})"
write_text(out.csv, df.to_csv(index=False))
write_text(out.comparisons, cdf.to_csv(index=False))
write_text(out.matrix, mdf.to_csv(index=False))
write_text(out.md, to_markdown(df, settings, title=title, comparisons=cdf, matrix=mdf))
write_text(out.html, to_html(df, settings, title=title, comparisons=cdf, matrix=mdf))
inputs["code"] = list(snakemake.input.code)
inputs["parity"] = list(snakemake.input.parity)
write_manifest(
    out.manifest,
    "delta_table",
    inputs=inputs,
    params={"baseline": "base", "tables": p.tables, "axes": p.axes},
    started=started,
    extra={"rows": len(df), "comparison_rows": len(cdf), "adjusted_over": settings.family},
)
