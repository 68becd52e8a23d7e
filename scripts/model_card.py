"""Rule model_card: results/model_card.md for the model the selection chose (opening with the
Hub's metadata block, checked with huggingface_hub offline), and results/release/<model>/ laid
out ready to upload (weights or adapter, tokenizer, GGUF file, the card as README.md)."""

from pathlib import Path

import pandas as pd

from deltaflow.io import atomic_dir, read_json, write_text
from deltaflow.model_card import render_model_card
from deltaflow.models import ModelNode
from deltaflow.release import card_with_metadata, check_card, hub_metadata, lay_out_release
from deltaflow.rulekit import start_job
from deltaflow.tables import TableSettings

start_job(snakemake)
p, inp, out = snakemake.params, snakemake.input, snakemake.output
selection = read_json(inp.selection)
model = selection["chosen"]
node = ModelNode.from_dict(p.nodes[model])
# a checkpoint `<run>@step<N>` describes its run's data and recipe; an outside model has no run,
# its import manifest says where it came from
run = p.runs[p.model_runs[model]] if p.model_runs[model] else None
mixtures = {Path(m).parent.name: m for m in inp.mixtures}
if run:
    adapters = {Path(m).parent.name: m for m in inp.adapters}
    made_by = read_json(adapters[p.model_runs[model]])
else:
    made_by = read_json(node.manifest)
delta = pd.read_csv(inp.delta)
base_manifest = read_json(inp.base)
body = render_model_card(
    model=model,
    base_name=p.base_name,
    delta=delta,
    settings=TableSettings.from_config(p.tables, p.axes),
    verdict=read_json(inp.gates)[model],
    selection=selection,
    run=run,
    mixture_manifest=read_json(mixtures[run["mixture"]]) if run else None,
    adapter_manifest=made_by,
    base_manifest=base_manifest,
    config_sha=p.config_sha,
    reference_notes={k: v.get("note", "") for k, v in p.tables["references"].items()},
    lineage=p.lineage[model],
    origins=p.origins[model],
    form=node.form,
    outside=p.outside,
)
metadata = hub_metadata(
    model=model,
    node=node,
    base_name=p.base_name,
    base_manifest=base_manifest,
    delta=delta,
    datasets=p.datasets[model],
    recipe=made_by["params"]["recipe"] if run else None,
    license=p.license,
)
card = card_with_metadata(metadata, body)
n_results = int(((delta.model == model) & (delta.level == "benchmark") & (delta.source == "evaluated")).sum())
check_card(card, n_results)
with atomic_dir(out.release) as tmp:
    lay_out_release(node, Path.cwd(), tmp / model, card)
write_text(out.card, card)
