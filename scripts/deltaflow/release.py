"""The chosen model, ready to upload: its Hub metadata and its folder.

``hub_metadata`` builds the YAML block the Hugging Face Hub reads at the top of a model card
(base_model, library_name, datasets, license, tags and a ``model-index`` with the delta
table's scores) with huggingface_hub's own card classes, and ``check_card`` parses a card
back with them (offline: no Hub call), so a card the Hub would misread fails the job.
``lay_out_release`` copies what an upload needs into results/release/<model>/: the adapter
(with the tokenizer it is used with) or the merged weights, or the GGUF file, and the card as
README.md. Nothing is uploaded.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from .errors import DeltaflowError
from .models import DEFAULT_BASE, ModelGraph, ModelNode, base_manifest

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "generation_config.json",
)


def check_release(config: dict, *, check_files: bool):
    """``release.also`` names selection candidates (what can be released) and ``release.notes``
    goes to models of ``also``. ``check_files``: unused."""
    graph = ModelGraph(config)
    candidates = graph.candidates()
    also = config["release"]["also"]
    for i, model in enumerate(also):
        if model in candidates:
            continue
        why = (
            "a model we did not train that is not releasable (set models.<name>.releasable)"
            if model in graph and graph.kind(model) == "outside"
            else "the base or a replicate-seed arm"
            if model in graph
            else "not a model of this config"
        )
        yield f"config key 'release.also[{i}]': '{model}' cannot be released: {why}; releasable: {', '.join(candidates)}"
    for model in config["release"]["notes"]:
        if model not in also:
            yield (
                f"config key 'release.notes.{model}': a note goes into the card of a model released "
                f"through release.also, and '{model}' is not listed there; add it to release.also"
            )


def library_name(node: ModelNode) -> str:
    return {"full": "transformers", "gguf": "gguf"}.get(node.form, "peft")


def hub_metadata(
    *,
    model: str,
    node: ModelNode,
    base_name: str,
    base_manifest: dict,
    delta: pd.DataFrame,
    datasets: dict[str, dict],
    recipe: dict | None,
    license: str | None,
) -> str:
    """The card's YAML metadata (without the ``---`` fences)."""
    from huggingface_hub import EvalResult, ModelCardData

    src = base_manifest["source"]
    rows = delta[(delta.model == model) & (delta.level == "benchmark") & (delta.source == "evaluated")]
    rows = rows[rows.score.notna()]  # a benchmark outside the model's suites has no result
    results = [
        EvalResult(
            task_type="multiple-choice" if r.metric in ("acc", "acc_norm") else "text-generation",
            dataset_type=r.benchmark,
            dataset_name=r.benchmark,
            metric_type=r.metric,
            metric_value=float(r.score),
            metric_name=f"{r.metric} (percent)",
        )
        for r in rows.itertuples()
    ]
    tags = ["deltaflow", library_name(node)]
    if recipe:
        tags += [recipe["method"], recipe["objective"]]
    data = ModelCardData(
        base_model=src.get("id") or base_name,
        library_name=library_name(node),
        license=license or "other",
        datasets=sorted(datasets),
        tags=tags,
        model_name=model,
        eval_results=results or None,
        # not read by the Hub, kept for people: where each training dataset comes from
        dataset_origins={
            name: {k: v for k, v in spec.items() if v is not None} for name, spec in sorted(datasets.items())
        },
    )
    return data.to_yaml()


def card_with_metadata(metadata_yaml: str, body: str) -> str:
    return f"---\n{metadata_yaml.rstrip()}\n---\n\n{body}"


def check_card(text: str, expected_results: int):
    """Parse a card as the Hub's own library does (offline); refuse one it would misread."""
    from huggingface_hub import ModelCard

    try:
        card = ModelCard(text)
    except Exception as exc:  # huggingface_hub raises ValueError/YAMLError subclasses
        raise DeltaflowError(f"the model card's metadata does not parse as a Hub card: {exc}") from exc
    got = len(card.data.eval_results or [])
    if got != expected_results:
        raise DeltaflowError(f"the model card's model-index holds {got} results, expected {expected_results}")
    return card


def lay_out_release(
    node: ModelNode, workdir: Path, out_dir: Path, card_text: str, base: str = DEFAULT_BASE
) -> list[str]:
    """Copy the chosen model's files into ``out_dir`` (a new folder); returns their names.
    ``base``: the base the model builds on (its tokenizer goes with an adapter)."""
    workdir, out_dir = Path(workdir), Path(out_dir)
    out_dir.mkdir(parents=True)
    base_dir = workdir / Path(base_manifest(base)).parent
    if node.adapter_dir:
        src = workdir / node.adapter_dir
        files = [src / f for f in ("adapter_config.json", "adapter_model.safetensors")]
        # an adapter that added tokens carries its own tokenizer; otherwise the base's
        tok_dir = src if (src / "tokenizer_config.json").exists() else base_dir
        files += [tok_dir / f for f in TOKENIZER_FILES if (tok_dir / f).exists()]
    elif node.form == "full":
        src = workdir / node.full_dir
        files = [f for f in sorted(src.iterdir()) if f.is_file() and f.name != "manifest.json"]
    elif node.form == "gguf":
        files = [workdir / node.gguf_file]
    else:
        raise DeltaflowError(f"{node.name} is the base model; there is nothing to release")
    for f in files:
        if not f.exists():
            raise DeltaflowError(f"{f} is missing; rerun the job that makes {node.name}")
        shutil.copy2(f, out_dir / f.name)
    (out_dir / "README.md").write_text(card_text)
    return sorted(p.name for p in out_dir.iterdir())
