"""Rule select: gate verdicts per model and the Pareto choice of the model to ship."""
import pandas as pd

from deltaflow.io import read_json, write_json, write_text
from deltaflow.rulekit import start_job
from deltaflow.selection import select

start_job(snakemake)  # noqa: F821
p, out = snakemake.params, snakemake.output  # noqa: F821
df = pd.read_csv(snakemake.input.delta)  # noqa: F821
# a GGUF that failed its parity check is never chosen for release
excluded = {}
for path in snakemake.input.parity:  # noqa: F821
    report = read_json(path)
    if not report["passed"]:
        excluded[report["model"]] = f"GGUF parity check failed: {report['reason']}"
verdicts, selection = select(df, p.gates, list(p.candidates), excluded=excluded)
write_json(out.gates, verdicts)
write_json(out.selection, selection)
write_text(out.pareto, pd.DataFrame(selection["candidates"]).to_csv(index=False))
