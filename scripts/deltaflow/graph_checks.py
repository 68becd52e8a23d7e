"""Config checks that follow the model graph (deltaflow.models.ModelGraph), before any job:
what models write data (``generations``: a teacher folder outside the graph, the generation
settings, and the origin policies that travel through the graph), what adapters are combined
(``merges``, ``sweeps``, ``export``: known adapters that PEFT can combine linearly) and what
the eval backend can serve (vLLM has no DoRA and no extra vocabulary).

A DoRA adapter is judged by the recipe that shaped it: a run continuing another (init_from)
keeps the adapter of the first run of its chain. deltaflow.config runs these in its
``CHECKS``; each yields error messages.
"""

from __future__ import annotations

import os
from pathlib import Path

from .bench.from_config import benchmark_dirs
from .datasets import dataset_splits, row_format
from .generation import check_config as check_generation_specs
from .models import ModelGraph
from .origins import check_policies


def check_teacher_folders(config: dict, *, check_files: bool):
    """A generation's teacher from a local folder (``generations.<name>.model.path``) is a
    transformers model folder."""
    for gname, gen in (config.get("generations") or {}).items() if check_files else ():
        teacher = gen.get("model")
        if (
            isinstance(teacher, dict)
            and teacher.get("path")
            and not (Path(teacher["path"]) / "config.json").is_file()
        ):
            yield (
                f"config key 'generations.{gname}.model.path': '{teacher['path']}' is not a transformers "
                f"model folder (no config.json there; paths are relative to the working directory {os.getcwd()})"
            )


def check_generations(config: dict, *, check_files: bool):
    """Model-written data (deltaflow.generation), then, when that is sound, the origin policies
    over every dataset (deltaflow.origins: transitive through the models that wrote it; a data
    cycle is an error). ``check_files``: unused (the teacher folders are checked on their own)."""
    gen_errors = check_generation_specs(
        config,
        ModelGraph(config).names,
        dirs=benchmark_dirs(config),
        dataset_splits=dataset_splits,
        row_format=row_format,
    )
    yield from gen_errors
    if not gen_errors:
        yield from check_policies(config)


def _adapter_recipe(graph: ModelGraph, model: str) -> dict:
    """The recipe that shaped ``model``'s adapter: its run's, or with init_from the recipe of
    the first run of the chain (the adapter continued as it is; deltaflow.models)."""
    run = graph.adapter_origin(model)
    return graph.config["recipes"].get(graph.config["runs"][run]["recipe"], {}) if run else {}


def _via(graph: ModelGraph, model: str) -> str:
    """' (the adapter of run X, continued through init_from)' where ``model``'s adapter was
    created by another run than its own."""
    origin = graph.adapter_origin(model)
    return (
        f" (the adapter run '{origin}' created, continued through init_from)"
        if origin != graph.model_run(model)
        else ""
    )


def check_merges_and_exports(config: dict, *, check_files: bool):
    """Sweeps, merges and exports refer to known adapters that PEFT can combine linearly.
    ``check_files``: unused (the parity prompts file is always checked)."""
    graph = ModelGraph(config)
    runs_and_ckpts = [*sorted(config["runs"]), *graph.checkpoints]
    merges = config["merges"]
    yield from _check_merges(config, graph, runs_and_ckpts)
    for name, spec in sorted(merges.items()):  # weights of one base only: a delta means nothing on another
        bases = {graph.base_of(m) for m in spec["adapters"] if m in graph}
        if len(bases) > 1:
            yield (
                f"config key 'merges.{name}.adapters': models on different bases ({', '.join(sorted(bases))}); "
                "a merge combines weight deltas of one base"
            )
    adapters = [*runs_and_ckpts, *sorted(merges)]
    for model, coefs in config["sweeps"].items():
        key = f"sweeps.{model}"
        if model not in adapters:
            yield (
                f"config key '{key}': unknown model; sweeps scale a run, checkpoint or merge: "
                f"{', '.join(adapters)}"
            )
            continue
        if graph.adds_tokens(model):
            yield (
                f"config key '{key}': its run adds new tokens (new_tokens); scaling the trained "
                "token rows is not a weight-delta scale — sweep a run without new tokens"
            )
        if _adapter_recipe(graph, model).get("method", "lora") == "dora":
            yield (
                f"config key '{key}': a DoRA adapter{_via(graph, model)}; scaling its factors does not scale its "
                "weight delta (the magnitude vector is not linear) — sweep a LoRA run"
            )
        if 1.0 in [float(c) for c in coefs]:
            yield f"config key '{key}': coefficient 1 is the adapter itself (already evaluated); drop it"
    # what can be exported: our adapters (merged into the base first) and our whole models
    exportable = [m for m in graph.names if graph.node(m).own_dir or graph.node(m).adapter_dir]
    for i, model in enumerate(config["export"]["models"]):
        if model not in exportable:
            yield (
                f"config key 'export.models[{i}]': '{model}' is not an adapter or a model we trained; "
                f"known: {', '.join(exportable)}"
            )
    prompts = config["export"]["parity"]["prompts"]
    if prompts and not Path(prompts).exists():
        yield f"config key 'export.parity.prompts': file '{prompts}' does not exist"


def _check_merges(config: dict, graph: ModelGraph, runs_and_ckpts: list[str]):
    """Each ``merges.<name>``: a distinct name, known adapters without new tokens or DoRA, and
    one rank for the methods that combine the A and B factors."""
    for name, spec in config["merges"].items():
        key = f"merges.{name}"
        if name in config["runs"]:
            yield f"config key '{key}': the name is also a run; give the merge a distinct name"
        ranks = {}
        known = [m for m in spec["adapters"] if m in runs_and_ckpts]
        forms = {graph.node(m).form for m in known}
        if forms == {"full"}:
            for model in spec["adapters"]:  # every name, as for adapters; new tokens: mergekit
                if model not in runs_and_ckpts:  # would size the embeddings to the base's vocabulary
                    yield (
                        f"config key '{key}.adapters.{model}': not a run or checkpoint; "
                        f"known: {', '.join(runs_and_ckpts)}"
                    )
                elif graph.adds_tokens(model):
                    yield (
                        f"config key '{key}.adapters.{model}': its run adds new tokens (new_tokens); "
                        "a merge of whole models takes the base's vocabulary — merge runs without new tokens"
                    )
            yield from _check_full_merge(key, spec)
            continue
        if len(forms) > 1:
            yield (
                f"config key '{key}.adapters': {', '.join(known)} mix adapters and whole models "
                "(method full); merge adapters with adapters (PEFT) or whole models with whole models (mergekit)"
            )
        if spec["method"] == "slerp":
            yield (
                f"config key '{key}.method': slerp interpolates two whole models (mergekit); these are "
                "adapters — use linear, cat, ties, dare_* or a *_svd method"
            )
        for model in spec["adapters"]:
            if model not in runs_and_ckpts:
                yield (
                    f"config key '{key}.adapters.{model}': not a run or checkpoint; "
                    f"known: {', '.join(runs_and_ckpts)}"
                )
                continue
            recipe = _adapter_recipe(graph, model)
            if graph.adds_tokens(model):
                yield (
                    f"config key '{key}.adapters.{model}': its run adds new tokens (new_tokens); "
                    "weighted combinations need plain LoRA factors — merge runs without new tokens"
                )
            if recipe.get("method", "lora") == "dora":
                yield (
                    f"config key '{key}.adapters.{model}': a DoRA adapter{_via(graph, model)}; PEFT's weighted "
                    "combination is for LoRA factors (DoRA's magnitude vector does not combine "
                    "linearly) — merge LoRA runs, or export the DoRA run alone"
                )
            ranks[model] = recipe.get("r", 8)
        needs_same_rank = spec["method"] in ("linear", "ties", "dare_ties", "dare_linear", "magnitude_prune")
        if needs_same_rank and len(set(ranks.values())) > 1:
            yield (
                f"config key '{key}.method': {spec['method']} combines the A and B factors and "
                f"needs one rank, but the ranks are {ranks}; use cat or a *_svd method"
            )


def _check_full_merge(key: str, spec: dict):
    """A merge of whole models (method full runs) goes through mergekit: the PEFT combination
    types that have a mergekit method (deltaflow.merging.MERGEKIT_METHODS), slerp of two."""
    from .merging import MERGEKIT_METHODS

    if spec["method"] not in MERGEKIT_METHODS:
        yield (
            f"config key '{key}.method': {spec['method']} combines LoRA factors; whole models are merged "
            f"by mergekit with {', '.join(MERGEKIT_METHODS)}"
        )
    if spec["method"] == "slerp" and len(spec["adapters"]) != 2:
        yield f"config key '{key}.adapters': slerp interpolates exactly two models; {len(spec['adapters'])} given"
    if (
        spec["method"] == "slerp"
        and len(spec["adapters"]) == 2
        and not 0 <= list(spec["adapters"].values())[1] <= 1
    ):
        yield f"config key '{key}.adapters': slerp's t is the second model's weight, between 0 and 1"
    if spec.get("svd_rank") is not None:
        yield f"config key '{key}.svd_rank': an adapter's rank; whole models have none — remove it"
    if spec["majority_sign_method"] != "total":
        yield (
            f"config key '{key}.majority_sign_method': mergekit's TIES elects signs by total "
            "(summed values) only; remove it"
        )


def check_eval_backend(config: dict, *, check_files: bool):
    """``eval.backend: vllm`` serves every run's adapter: not a DoRA one, none with new tokens.
    ``check_files``: unused."""
    if config["eval"]["backend"] == "vllm":
        for run in config["runs"]:
            graph = ModelGraph(config)
            if _adapter_recipe(graph, run).get("method", "lora") == "dora":
                yield (
                    f"config key 'eval.backend': vllm cannot serve run '{run}', a DoRA adapter{_via(graph, run)} "
                    "(vLLM has no DoRA); use backend hf, or evaluate its merged export"
                )
            if ModelGraph(config).adds_tokens(run):
                yield (
                    f"config key 'eval.backend': vllm cannot serve run '{run}': its adapter adds "
                    "new tokens (vLLM's LoRA has no extra vocabulary); use backend hf, or "
                    "evaluate its merged export"
                )
