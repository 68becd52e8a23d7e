"""Rule model_card: results/model_card.md for the model the selection chose (opening with the
Hub's metadata block, checked with huggingface_hub offline), and results/release/<model>/ laid
out ready to upload (weights or adapter, tokenizer, GGUF file, the card as README.md) for it and
for every model of release.also, each with its own card."""

from pathlib import Path

import pandas as pd

from deltaflow.io import atomic_dir, read_json, write_text
from deltaflow.model_card import render_model_card
from deltaflow.models import ModelNode
from deltaflow.release import card_with_metadata, check_card, hub_metadata, lay_out_release
from deltaflow.rulekit import start_job
from deltaflow.selection import failed_reasons
from deltaflow.tables import TableSettings

start_job(snakemake)
p, inp, out = snakemake.params, snakemake.input, snakemake.output
selection = read_json(inp.selection)
verdicts = read_json(inp.gates)
delta = pd.read_csv(inp.delta)
# every base, by name: a model's card describes it on its own base (base_models:)
base_manifests = {name: read_json(path) for name, path in zip(p.bases, inp.bases)}
adapters = {Path(m).parent.name: m for m in inp.adapters}
mixtures = {Path(m).parent.name: m for m in inp.mixtures}


def released_as(model: str) -> str | None:
    """The card's opening for a model of release.also (None: the chosen model's own)."""
    if model == selection["chosen"]:
        return None
    text = f"Released besides the chosen model ({selection['chosen']}), as release.also lists it"
    missed = failed_reasons(verdicts[model])
    return text + (f", although it misses its gates: {'; '.join(missed)}" if missed else "")


def model_card(model: str) -> tuple[ModelNode, str]:
    """The card of a released model, metadata block first, checked as the Hub reads it."""
    node = ModelNode.from_dict(p.nodes[model])
    base = p.model_bases[model]
    # a checkpoint `<run>@step<N>` describes its run's data and recipe; an outside model has no
    # run, its import manifest says where it came from
    run = p.runs[p.model_runs[model]] if p.model_runs[model] else None
    made_by = read_json(adapters[p.model_runs[model]] if run else node.manifest)
    body = render_model_card(
        model=model,
        base_name=p.bases[base]["name"],
        delta=delta,
        settings=TableSettings.from_config(p.tables, p.axes),
        verdict=verdicts[model],
        selection=selection,
        run=run,
        mixture_manifest=read_json(mixtures[run["mixture"]]) if run else None,
        adapter_manifest=made_by,
        base_manifest=base_manifests[base],
        config_sha=p.config_sha,
        reference_notes={k: v.get("note", "") for k, v in p.tables["references"].items()},
        lineage=p.lineage[model],
        origins=p.origins[model],
        form=node.form,
        outside=p.outside,
        released_as=released_as(model),
        release_notes=p.release["notes"].get(model),
        finalists=pd.read_csv(inp.finalists[0]) if inp.finalists else None,
    )
    metadata = hub_metadata(
        model=model,
        node=node,
        base_name=p.bases[base]["name"],
        base_manifest=base_manifests[base],
        delta=delta,
        datasets=p.datasets[model],
        recipe=made_by["params"]["recipe"] if run else None,
        license=p.bases[base]["license"],
    )
    card = card_with_metadata(metadata, body)
    n_results = int(
        (
            (delta.model == model)
            & (delta.level == "benchmark")
            & (delta.source == "evaluated")
            & delta.score.notna()
        ).sum()
    )
    check_card(card, n_results)
    return node, card


cards = {}
with atomic_dir(out.release) as tmp:
    for model in dict.fromkeys([selection["chosen"], *p.release["also"]]):
        node, cards[model] = model_card(model)
        lay_out_release(node, Path.cwd(), tmp / model, cards[model], base=p.model_bases[model])
write_text(out.card, cards[selection["chosen"]])
