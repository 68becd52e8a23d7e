"""Which models each benchmark is run on: suites (``suites:``, ``benchmarks.<b>.suite`` /
``benchmarks.<b>.models``).

By default every model runs every benchmark. A benchmark can name the models it applies to,
directly or through a named suite, e.g. a ``core`` set for every checkpoint and an ``extended``
set for the final candidates only. A selector is a model name or a shell-style pattern
(``fnmatch``: ``run_*``, ``*.merged``, ``*@step*``). The base always runs every benchmark (every
delta is against it), and a pairwise judged benchmark always runs on its baseline (the judge
compares against its responses).

A model's eval job still declares every benchmark's files (one rule, one job per model): for a
benchmark that does not apply, it writes a ``not_run`` record instead of results
(``not_run_metrics``), which its summary.json does not list, and the tables show the cell as
"not run", never as a blank that reads as zero.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from .io import write_json, write_jsonl
from .models import DEFAULT_BASE, SEED_ARM, ModelGraph

NOT_RUN = "not run"


def _selectors(config: dict, bench: str) -> tuple[list[str] | None, str]:
    """(the benchmark's model selectors, where they come from), or (None, "") for every model."""
    spec = config["benchmarks"][bench]
    if spec.get("suite"):
        return config["suites"].get(spec["suite"], []), f"suite '{spec['suite']}'"
    if spec.get("models"):
        return spec["models"], f"benchmarks.{bench}.models"
    return None, ""


def selected(selectors: list[str], models: list[str]) -> list[str]:
    """The models (in their order) that any selector names or matches; a run's replicate-seed
    arms (``<run>~s<seed>``) go with their run."""

    def hit(name: str) -> bool:
        return any(name == s or fnmatchcase(name, s) for s in selectors)

    return [m for m in models if hit(m) or (SEED_ARM.match(m) and hit(SEED_ARM.match(m)["run"]))]


def benchmark_models(config: dict, models: list[str], bench: str, baseline: str | None = None) -> list[str]:
    """The models ``bench`` runs on: its selection, plus the base and ``baseline`` (a pairwise
    judged benchmark's: the judge compares against its responses)."""
    selectors, _ = _selectors(config, bench)
    if selectors is None:
        return list(models)
    bases = {DEFAULT_BASE, *config["base_models"]}  # every base runs everything: deltas are against it
    keep = {*selected(selectors, models), *bases, *([baseline] if baseline else [])}
    return [m for m in models if m in keep]


def model_benchmarks(config: dict, models: list[str], baselines: dict | None = None) -> dict[str, list[str]]:
    """model -> the benchmarks it runs (in the benchmarks' order), for every model. ``baselines``:
    {benchmark: baseline model} of the pairwise judged benchmarks."""
    baselines = baselines or {}
    runs = {
        b: set(benchmark_models(config, models, b, baselines.get(b))) for b in sorted(config["benchmarks"])
    }
    return {m: [b for b in runs if m in runs[b]] for m in models}


def not_run_reason(config: dict, bench: str) -> str:
    """Why a model has no result on ``bench`` (the tables' and the not_run record's words)."""
    _, where = _selectors(config, bench)
    return f"{NOT_RUN}: {bench} runs only on the models of {where}"


def write_not_run(model: str, bench: str, reason: str, records: str, metrics: str | None = None) -> None:
    """What a model's eval (or judge) job writes in the declared files of a benchmark that does
    not apply to it: no records (an empty JSON Lines file) and, where its metrics go, a not_run
    record. Its summary.json does not list the benchmark, so no table reads it as a result."""
    write_jsonl(records, [])
    if metrics:
        write_json(metrics, {"model": model, "benchmark": bench, "not_run": True, "reason": reason})


def check_config(config: dict, *, check_files: bool):
    """Config errors of ``suites:`` and the benchmarks' ``suite`` / ``models`` (before any job):
    an unknown suite, both keys at once, a selector that matches no model, an unused suite.
    ``check_files``: unused (no key here names a file)."""
    models = ModelGraph(config).names
    suites = config["suites"]
    used = set()
    for bench, spec in sorted(config["benchmarks"].items()):
        key = f"config key 'benchmarks.{bench}"
        if spec.get("suite") and spec.get("models"):
            yield f"{key}': give suite or models, not both"
            continue
        if spec.get("suite"):
            used.add(spec["suite"])
            if spec["suite"] not in suites:
                yield (
                    f"{key}.suite': unknown suite '{spec['suite']}'; "
                    f"suites: {', '.join(sorted(suites)) or 'none (define them under suites:)'}"
                )
        for i, sel in enumerate(spec.get("models") or []):
            if not selected([sel], models):
                yield f"{key}.models[{i}]': '{sel}' names or matches no model; models: {', '.join(models)}"
    for name, selectors in sorted(suites.items()):
        for i, sel in enumerate(selectors):
            if not selected([sel], models):
                yield (
                    f"config key 'suites.{name}[{i}]': '{sel}' names or matches no model; "
                    f"models: {', '.join(models)}"
                )
        if name not in used:
            yield (
                f"config key 'suites.{name}': no benchmark uses this suite; "
                "set benchmarks.<name>.suite, or remove it"
            )
    # a pairwise judged benchmark's explicit baseline runs it (the default baseline is the base)
    baselines = {b: (s.get("judge") or {}).get("baseline") for b, s in config["benchmarks"].items()}
    plan = model_benchmarks(config, models, {b: m for b, m in baselines.items() if m})
    everything = sorted(config["benchmarks"])
    for model, benches in plan.items():
        if not benches:
            yield (
                f"config key 'suites': model '{model}' runs no benchmark (no benchmark's suite or models "
                "selects it); add it to a suite, or leave it out of the config"
            )
    for run, spec in sorted(config["runs"].items()):
        if spec.get("seeds") and plan.get(run) != everything:
            yield (
                f"config key 'runs.{run}.seeds': replicate seeds with benchmarks outside the run's suites "
                f"({', '.join(b for b in everything if b not in plan.get(run, []))}) are not supported yet "
                "(the seed table compares every benchmark); add the run to those suites or drop seeds"
            )
