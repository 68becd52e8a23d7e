"""Which models each benchmark is run on: suites (``suites:``, ``benchmarks.<b>.suite`` /
``benchmarks.<b>.models``).

By default every model runs every benchmark. A benchmark can name the models it applies to,
directly or through a named suite, e.g. a ``core`` set for every checkpoint and an ``extended``
set for the final candidates only. A selector is a model name or a shell-style pattern
(``fnmatch``: ``run_*``, ``*.merged``, ``*@step*``). The base always runs every benchmark (every
delta is against it), and a pairwise judged benchmark always runs on its baseline (the judge
compares against its responses).

A suite can also follow the selection: ``{finalists: k}`` is the chosen model and the k
next-best candidates of its ranking (``finalists``). Their benchmarks cannot be run before the
choice they follow, so only the bases run them in the eval jobs; the finalists run them in
their own jobs after ``select_model`` (rule evaluate_finalist), into results/finalists/, and
their deltas go to results/tables/finalists.csv. The selection and its gates rest on the other
benchmarks only (a gate on such an axis is a config error).

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


def finalist_benchmarks(config: dict) -> dict[str, int]:
    """benchmark -> k, for the benchmarks of a ``{finalists: k}`` suite (run after the selection
    on the chosen model and its k runners-up)."""
    out = {}
    for bench, spec in sorted(config["benchmarks"].items()):
        suite = config["suites"].get(spec.get("suite") or "")
        if isinstance(suite, dict):
            out[bench] = suite["finalists"]
    return out


def finalists(selection: dict, k: int) -> list[str]:
    """The chosen model and the ``k`` next-best candidates of ``selection`` (select_model's
    selection.json: its candidates sorted by score), leaving out the excluded ones."""
    ranked = [
        r["model"] for r in selection["candidates"] if not r["excluded"] and r["model"] != selection["chosen"]
    ]
    return [selection["chosen"], *ranked[:k]]


def _selectors(config: dict, bench: str) -> tuple[list[str] | None, str]:
    """(the benchmark's model selectors, where they come from), or (None, "") for every model."""
    spec = config["benchmarks"][bench]
    if spec.get("suite"):
        suite = config["suites"].get(spec["suite"], [])
        if isinstance(suite, dict):  # the finalists: known after the selection, none before it
            return [], f"suite '{spec['suite']}'"
        return suite, f"suite '{spec['suite']}'"
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
    k = finalist_benchmarks(config).get(bench)
    if k is not None:
        return (
            f"{NOT_RUN} here: {bench} runs on the finalists of {where} (the chosen model and its {k} "
            "runners-up) after the selection; see results/tables/finalists.csv"
        )
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
    yield from _finalist_errors(config)
    for name, selectors in sorted(suites.items()):
        for i, sel in enumerate(selectors if isinstance(selectors, list) else []):
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
        if spec.get("seeds") and finalist_benchmarks(config):
            yield (
                f"config key 'runs.{run}.seeds': replicate seeds with a suite that follows the selection "
                "(finalists) are not supported yet (the seed table compares every benchmark); drop seeds "
                "or give those benchmarks a suite of named models"
            )
        elif spec.get("seeds") and plan.get(run) != everything:
            yield (
                f"config key 'runs.{run}.seeds': replicate seeds with benchmarks outside the run's suites "
                f"({', '.join(b for b in everything if b not in plan.get(run, []))}) are not supported yet "
                "(the seed table compares every benchmark); add the run to those suites or drop seeds"
            )


def _finalist_errors(config: dict):
    """A ``{finalists: k}`` suite's benchmarks run after the selection: no gate can read them
    (the selection would wait on itself), and judged ones are not supported there yet."""
    from .bench.from_config import benchmark_axis, benchmark_spec
    from .bench.spec import is_judged

    final = finalist_benchmarks(config)
    if not final:
        return
    suites = sorted(s for s, spec in config["suites"].items() if isinstance(spec, dict))
    if len(suites) > 1:
        yield (
            f"config key 'suites': {', '.join(suites)} all follow the selection (finalists); "
            "give one suite the finalists and its benchmarks together"
        )
    axes, judged = {}, set()
    for bench in final:
        try:
            axes[bench] = benchmark_axis(config, bench)
            if is_judged(benchmark_spec(config, bench)):
                judged.add(bench)
        except (KeyError, ValueError):  # an unknown or broken benchmark: check_benchmarks names it
            continue
    gated = {
        f"gates.{kind}.{axis}" for kind in ("target", "guarded") for axis in config["gates"].get(kind) or {}
    }
    for bench in sorted(axes):
        key = f"config key 'benchmarks.{bench}.suite'"
        suite = config["benchmarks"][bench]["suite"]
        for gate in sorted(g for g in gated if g.rsplit(".", 1)[1] == axes[bench]):
            yield (
                f"{key}: suite '{suite}' runs on the finalists, after the selection, and {gate} gates "
                f"axis '{axes[bench]}' with it; a gate cannot wait on the choice it decides: put "
                f"{bench} on another axis (benchmarks.{bench}.axis) or in a suite of named models"
            )
        if bench in judged:
            yield (
                f"{key}: suite '{suite}' runs on the finalists, and {bench} is judged: judged benchmarks "
                "in a finalists suite are not supported yet; give it a suite of named models"
            )
