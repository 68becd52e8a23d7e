"""Rule model_card: results/model_card.md for the model the selection chose."""
from pathlib import Path

import pandas as pd

from deltaflow.io import read_json, write_text
from deltaflow.model_card import render_model_card
from deltaflow.rulekit import start_job
from deltaflow.tables import TableSettings

start_job(snakemake)  # noqa: F821
p, inp = snakemake.params, snakemake.input  # noqa: F821
selection = read_json(inp.selection)
model = selection["chosen"]
run = p.runs[p.model_runs[model]]  # a checkpoint `<run>@step<N>` describes its run's data and recipe
adapters = {Path(m).parent.name: m for m in inp.adapters}
mixtures = {Path(m).parent.name: m for m in inp.mixtures}
card = render_model_card(
    model=model, base_name=p.base_name, delta=pd.read_csv(inp.delta),
    settings=TableSettings.from_config(p.tables, p.axes), verdict=read_json(inp.gates)[model],
    selection=selection, run=run, mixture_manifest=read_json(mixtures[run["mixture"]]),
    adapter_manifest=read_json(adapters[p.model_runs[model]]), base_manifest=read_json(inp.base),
    config_sha=p.config_sha,
    reference_notes={k: v.get("note", "") for k, v in p.tables["references"].items()},
    lineage=p.lineage[model],
)
write_text(snakemake.output[0], card)  # noqa: F821
