"""Rule select: gate verdicts per model and the Pareto choice of the model to ship."""
import pandas as pd

from deltaflow.io import write_json, write_text
from deltaflow.rulekit import start_job
from deltaflow.selection import select

start_job(snakemake)  # noqa: F821
p, out = snakemake.params, snakemake.output  # noqa: F821
df = pd.read_csv(snakemake.input.delta)  # noqa: F821
verdicts, selection = select(df, p.gates, list(p.candidates))
write_json(out.gates, verdicts)
write_json(out.selection, selection)
write_text(out.pareto, pd.DataFrame(selection["candidates"]).to_csv(index=False))
