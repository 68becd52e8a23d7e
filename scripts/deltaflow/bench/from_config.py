"""A config's benchmarks: each one's spec, the registry definition (or lm-eval's task) merged
with the config's overrides, and what it can record and report."""

from __future__ import annotations

from . import registry
from .judging import headline_metric
from .lmeval import is_lm_eval_task
from .lmeval import registry_spec as lm_eval_registry_spec
from .scoring.ifeval import METRICS as IFEVAL_METRICS
from .scoring.metrics import MATCH_METRICS, match_kind, samples_of
from .spec import BenchmarkSpec


def benchmark_dirs(config: dict) -> tuple:
    """The user's own benchmark registry folders (config ``benchmark_dirs``)."""
    return tuple(config.get("benchmark_dirs") or ())


def benchmark_spec(config: dict, name: str) -> BenchmarkSpec:
    """The registry definition merged with this config's subset/decoding overrides."""
    bench = config["benchmarks"][name]
    task = bench.get("task", name)
    if is_lm_eval_task(task):
        spec = lm_eval_registry_spec(task, bench)
    else:
        spec = registry.load(task, benchmark_dirs(config))  # a fresh copy; safe to update
    spec["task"] = task
    spec["name"] = name
    for key in ("n", "seed"):
        if key in bench:
            spec[key] = bench[key]
    spec.setdefault("decoding", {})
    if "max_gen_toks" in bench:
        spec["decoding"]["max_gen_toks"] = bench["max_gen_toks"]
    spec["decoding"].update(bench.get("decoding") or {})
    # silent-generation thresholds: the spec's defaults, eval.guards, the registry's, this benchmark's
    spec["guards"] = {
        **config.get("eval", {}).get("guards", {}),
        **spec.get("guards", {}),
        **bench.get("guards", {}),
    }
    if "dataset" in bench:
        spec["source"]["dataset"] = bench["dataset"]
    if "source" in bench:  # the same benchmark read from a hub id or a local file
        spec["source"] = dict(bench["source"])
    if bench.get("fewshot"):  # where the few-shot examples come from (items.choose_shots)
        spec["fewshot"] = {**(spec.get("fewshot") or {}), **bench["fewshot"]}
    if bench.get("scorer"):  # extra per-item metrics by the user's function (bench.scorer)
        spec["scorer"] = bench["scorer"]
    if bench.get("judge"):  # a judged benchmark (deltaflow.bench.judging): the judge's verdicts are the score
        spec["judge"] = dict(bench["judge"])
    elif bench.get("metric") and not is_lm_eval_task(task):  # the headline (scoring.primary_metric)
        spec["headline"] = bench["metric"]
    out = BenchmarkSpec.from_dict(spec)
    return out.replace(metric=headline_metric(out)) if out.judge else out


def recorded_metrics(spec: BenchmarkSpec) -> list[str]:
    """The per-item metrics a packaged or declared benchmark's records carry
    (scoring.score_output), each of which can be its headline (``benchmarks.<name>.metric``)."""
    k = samples_of(spec)
    sampled = [f"mean@{k}", "pass@1", *([f"pass@{k}"] if k > 1 else [])]
    out = {
        "multiple_choice": ["acc", "acc_norm"],
        "generate_until": [MATCH_METRICS.get(match_kind(spec), "exact_match"), *sampled, f"maj@{k}"],
        "code": ["pass", *sampled],
        "instruction": [*IFEVAL_METRICS, *sampled],
    }.get(spec.output_type, [])
    return [*out, *(m for m in spec.metric_keys if m not in out)]


def benchmark_axis(config: dict, name: str) -> str:
    bench = config["benchmarks"][name]
    if is_lm_eval_task(bench.get("task", name)):
        return bench.get("axis", "lm_eval")
    return bench.get("axis") or registry.load(bench.get("task", name), benchmark_dirs(config))["axis"]


def benchmark_axes(config: dict) -> dict[str, str]:
    return {b: benchmark_axis(config, b) for b in sorted(config["benchmarks"])}
