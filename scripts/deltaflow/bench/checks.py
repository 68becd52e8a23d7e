"""Config checks of benchmarks, before any job: the user's registry folders (``benchmark_dirs``),
and each ``benchmarks.<name>``: lm-eval tasks (deltaflow.bench.lmeval), registry entries (their
keys, loader, template, scoring), the judge, the headline metric, a generated dataset's eval
split, and the config's decoding, few-shot and source overrides.

deltaflow.config runs ``check_benchmarks`` (its ``CHECKS``); it yields error messages.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError
from ..models import ModelGraph
from . import lmeval as lmeval_tasks
from . import registry
from .from_config import benchmark_dirs, benchmark_spec, recorded_metrics
from .judging import check_spec as check_judge
from .lmeval import is_lm_eval_task
from .loaders import LOADERS, check_template_spec
from .scoring.metrics import MATCH_METRICS


def check_benchmarks(config: dict, *, check_files: bool):
    """``benchmark_dirs`` (each a folder, no name taken twice), then every benchmark."""
    dirs = benchmark_dirs(config)
    for i, d in enumerate(dirs):
        if not Path(d).is_dir():
            yield (
                f"config key 'benchmark_dirs[{i}]': folder '{d}' does not exist "
                f"(paths are relative to the working directory {os.getcwd()})"
            )
    for mine, taken in registry.duplicates(dirs):
        yield (
            f"config key 'benchmark_dirs': {mine} declares benchmark '{mine.stem}', a name {taken} "
            "already has; rename the file (benchmarks are named by file stem)"
        )
    known = registry.available(dirs)
    model_names = ModelGraph(config).names
    for bname, bench in config["benchmarks"].items():
        yield from _check_benchmark(config, bname, bench, known, model_names, check_files)


def _check_benchmark(
    config: dict, bname: str, bench: dict, known: list, model_names: list, check_files: bool
):
    """One ``benchmarks.<name>``: an lm-eval task, or a registry entry (``known``)."""
    datasets = config["datasets"]
    dirs = benchmark_dirs(config)
    task = bench.get("task", bname)
    if is_lm_eval_task(task):  # lm-eval's own task library (deltaflow.bench.lmeval)
        try:
            spec = benchmark_spec(config, bname)
        except ConfigError as exc:
            yield f"config key 'benchmarks.{bname}.task': {exc}"
            return
        yield from lmeval_tasks.check(bname, spec)
        yield from _check_benchmark_overrides(bname, bench, spec.to_dict(), check_files)
        return
    if task not in known:
        yield (
            f"config key 'benchmarks.{bname}': unknown benchmark '{task}'; "
            f"the registry has: {', '.join(known)} (set `task:` to one of them, or declare it "
            "in a YAML file under one of benchmark_dirs)"
        )
        return
    try:
        spec = registry.load(task, dirs)
    except ConfigError as exc:  # the file against the schema's registry_file: listed with the rest
        yield str(exc)
        return
    where = registry.path_of(task, dirs)
    missing = [k for k in registry.REQUIRED_KEYS if k not in spec]
    if missing:
        yield f"benchmark '{task}' ({where}): missing keys {missing}; see scripts/deltaflow/bench/registry/README.md"
        return
    if spec["loader"] == "template":
        yield from (f"{e} (in {where})" for e in check_template_spec(bname, spec))
    elif spec["loader"] not in LOADERS:
        yield (
            f"benchmark '{task}' ({where}): unknown loader '{spec['loader']}'; use `template` "
            f"(declared fields, no Python) or one of {', '.join(sorted(LOADERS))}"
        )
    yield from (f"benchmark '{task}' ({where}): {e}" for e in _check_scoring(spec))
    yield from check_judge(bname, benchmark_spec(config, bname), model_names)
    yield from _check_headline(bname, bench, benchmark_spec(config, bname))
    if spec["source"]["type"] == "dataset":
        ds = bench.get("dataset")
        if ds is None:
            yield (
                f"config key 'benchmarks.{bname}.dataset': benchmark '{task}' scores a "
                "generated dataset's eval split — name that dataset"
            )
        elif ds not in datasets:
            yield f"config key 'benchmarks.{bname}.dataset': unknown dataset '{ds}'"
        elif datasets[ds].get("task") != spec["source"]["task"]:
            yield (
                f"config key 'benchmarks.{bname}.dataset': dataset '{ds}' is not a "
                f"generated '{spec['source']['task']}' task"
            )
    yield from _check_benchmark_overrides(bname, bench, spec, check_files)


def _check_scoring(spec: dict):
    """A generation benchmark's match kind and its metric agree (before any job)."""
    kind = spec.get("match", "exact")
    if kind not in MATCH_METRICS:
        yield f"match '{kind}' is unknown; use one of {', '.join(MATCH_METRICS)}"
    elif (
        spec["output_type"] == "generate_until"
        and spec["metric"] in MATCH_METRICS.values()
        and spec["metric"] != MATCH_METRICS[kind]
    ):
        yield (
            f"metric '{spec['metric']}' does not fit match '{kind}'; a {kind} match is scored as "
            f"'{MATCH_METRICS[kind]}'"
        )


def _check_headline(bname: str, bench: dict, spec: dict):
    """``benchmarks.<name>.metric``: one of the metrics the benchmark records (for k samples,
    e.g. mean@k, pass@1, pass@k, maj@k), or a judged benchmark's own score."""
    chosen = bench.get("metric")
    if not chosen:
        return
    key = f"config key 'benchmarks.{bname}.metric'"
    if bench.get("judge"):
        if chosen != spec.metric:
            yield (
                f"{key}: '{chosen}': a judged benchmark's score is the judge's {spec.metric}; "
                f"remove metric (or set it to {spec.metric})"
            )
        return
    recorded = recorded_metrics(spec)
    if chosen not in recorded:
        k = spec.decoding.get("samples", 1)
        yield (
            f"{key}: '{chosen}' is not a metric '{bname}' records ({spec.output_type}"
            f"{f', {k} samples per item' if k > 1 else ''}); it records: {', '.join(recorded)}"
        )


def _check_benchmark_overrides(bname: str, bench: dict, spec: dict, check_files: bool):
    key = f"config key 'benchmarks.{bname}"
    dec = {**spec.get("decoding", {}), **(bench.get("decoding") or {})}
    if bench.get("decoding") and spec["output_type"] == "multiple_choice":
        bad = sorted(set(bench["decoding"]) - {"chat_template", "num_fewshot"})
        if bad:
            yield (
                f"{key}.decoding': {', '.join(bad)} do not apply to '{spec['task']}', a "
                "log-likelihood multiple-choice benchmark (nothing is generated)"
            )
    if dec.get("samples", 1) > 1 and dec.get("temperature", 0.0) == 0:
        yield (
            f"{key}.decoding.samples': {dec['samples']} samples at temperature 0 are the same "
            "greedy answer k times; set decoding.temperature > 0 (or samples: 1)"
        )
    fs = {**(spec.get("fewshot") or {}), **(bench.get("fewshot") or {})}
    if fs and not dec.get("num_fewshot"):
        yield f"{key}.fewshot': few-shot examples are configured but decoding.num_fewshot is 0; set it to k"
    if fs.get("ids") and len(fs["ids"]) != dec.get("num_fewshot", 0):
        yield (
            f"{key}.fewshot.ids': {len(fs['ids'])} ids listed for decoding.num_fewshot "
            f"{dec.get('num_fewshot', 0)}; list exactly k"
        )
    if (
        fs.get("source", {}).get("type") == "file"
        and check_files
        and not Path(fs["source"].get("path", "")).exists()
    ):
        yield f"{key}.fewshot.source.path': '{fs['source'].get('path')}' does not exist"
    src = bench.get("source")
    if src:
        if spec["source"]["type"] == "dataset":
            yield f"{key}.source': '{spec['task']}' scores a generated dataset; it has no other source"
        elif src["type"] == "hf" and not (src.get("id") and src.get("revision")):
            yield (
                f"{key}.source': a Hugging Face source needs `id` and a pinned `revision` "
                "(a commit sha or tag), so every rerun scores the same items"
            )
        elif src["type"] == "file" and not src.get("path"):
            yield f"{key}.source.path': a file source needs a path"
        elif src["type"] == "file" and check_files and not Path(src["path"]).exists():
            yield f"{key}.source.path': '{src['path']}' does not exist"
