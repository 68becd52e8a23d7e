"""Rule select_model: gate verdicts per model and the Pareto choice of the model to ship."""

import pandas as pd

from deltaflow.io import read_json, write_json, write_text
from deltaflow.rulekit import start_job
from deltaflow.selection import select
from deltaflow.tables import EVALUATED

start_job(snakemake)
p, out = snakemake.params, snakemake.output
df = pd.read_csv(snakemake.input.delta)
# a GGUF that failed its parity check is never chosen for release
excluded = {}
for path in snakemake.input.parity:
    report = read_json(path)
    if not report["passed"]:
        excluded[report["model"]] = f"GGUF parity check failed: {report['reason']}"
# runs with replicate seeds: their axis and macro rows are the seed-averaged ones (deltaflow.seeds),
# so a gate or the choice rests on the run, not on one lucky seed
seeds = {}
for path in snakemake.input.seeds:
    sdf = pd.read_csv(path)
    seeds = {m: int(g.seeds.iloc[0]) for m, g in sdf.groupby("model")}
    rows = sdf[sdf.level.isin(["axis", "macro"])].assign(source=EVALUATED)
    df = pd.concat(
        [
            # (a gate's <axis>@<metric> row stays: the seed table has none; it is the run's own)
            df[
                ~(
                    df.model.isin(seeds)
                    & df.level.isin(["axis", "macro"])
                    & (df.source == EVALUATED)
                    & ~df.benchmark.str.contains("@", regex=False)
                )
            ],
            rows[[c for c in rows.columns if c in df.columns]],
        ],
        ignore_index=True,
    )
verdicts, selection = select(df, p.gates, list(p.candidates), excluded=excluded, alpha=p.alpha)
selection["seeds"] = {m: seeds.get(m, 1) for m in p.candidates}
write_json(out.gates, verdicts)
write_json(out.selection, selection)
write_text(out.pareto, pd.DataFrame(selection["candidates"]).to_csv(index=False))
