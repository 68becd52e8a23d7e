"""Rule finalists_table: the finalists (the chosen model and its runners-up, deltaflow.suites)
vs their bases on the benchmarks that ran after the selection, with the delta table's
statistics; p-values adjusted over this table's cells."""

from deltaflow.io import read_json, write_text
from deltaflow.provenance import write_manifest
from deltaflow.rulekit import start_job
from deltaflow.tables import TableSettings, adjust_table, delta_table, load_eval_results, to_markdown

started = start_job(snakemake)
p, out = snakemake.params, snakemake.output
final = read_json(snakemake.input.finalists)
results, inputs = load_eval_results([*snakemake.input.bases, *snakemake.input.summaries], set(p.benchmarks))
settings = TableSettings.from_config(p.tables, p.axes)
keep = {*final["models"], *(p.bases[m] for m in final["models"]), "base"}
df = delta_table(
    [r for r in results if r.model in keep],
    baseline="base",
    settings=settings,
    baselines={m: b for m, b in p.bases.items() if m in keep},
)
df = adjust_table(df, settings)
roles = {m: ("chosen" if i == 0 else f"runner-up {i}") for i, m in enumerate(final["models"])}
df.insert(1, "finalist", df.model.map(roles).fillna(""))
title = f"Finalists (suite '{final['suite']}', after the selection): {', '.join(p.benchmarks)}"
write_text(out.csv, df.to_csv(index=False))
write_text(out.md, f"{final['why']}.\n\n" + to_markdown(df.drop(columns="finalist"), settings, title=title))
inputs["code"] = list(snakemake.input.code)
inputs["finalists"] = snakemake.input.finalists
write_manifest(
    out.manifest,
    "finalists_table",
    inputs=inputs,
    params={"finalists": final, "tables": p.tables, "axes": p.axes},
    started=started,
    extra={"rows": len(df), "adjusted_over": settings.family},
)
