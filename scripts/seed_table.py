"""Rule seed_table: the replicate-seed statistics of every run with `seeds:` (deltaflow.seeds)."""

from deltaflow.io import write_text
from deltaflow.rulekit import start_job
from deltaflow.seeds import seed_markdown, seed_rows
from deltaflow.tables import load_eval_results

start_job(snakemake)
p = snakemake.params
results, _ = load_eval_results(snakemake.input.summaries)
tables = p.tables
df = seed_rows(
    results,
    p.families,
    p.axes,
    resamples=tables["bootstrap_resamples"],
    seed=tables["seed"],
    confidence=tables["confidence"],
)
write_text(snakemake.output.csv, df.to_csv(index=False))
write_text(snakemake.output.md, seed_markdown(df, tables["confidence"]))
