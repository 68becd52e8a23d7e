"""Rule plots: forest plot of deltas, training loss curves, Pareto front (PNGs for the report)."""

from pathlib import Path

import pandas as pd

from deltaflow.io import read_json
from deltaflow.plots import forest_plot, loss_curves, pareto_plot
from deltaflow.rulekit import start_job

start_job(snakemake)
inp, out = snakemake.input, snakemake.output
forest_plot(pd.read_csv(inp.delta), out.forest, confidence=snakemake.params.confidence)
metrics = {Path(m).parent.name: read_json(m) for m in inp.metrics}
# SFT and DPO losses are on different scales: the legend says which is which
loss_curves({f"{run} ({m.get('objective', 'sft')})": m for run, m in metrics.items()}, out.loss)
pareto_plot(read_json(inp.selection), out.pareto)
