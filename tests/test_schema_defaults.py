"""One home for each config default: the schema (scripts/deltaflow/schema.yaml).

Every property of the schema that has a ``default`` is filled in by ``validate_config`` before
any code reads the config, so code that reads a validated config reads the key directly. A
``<x>.get("<key>", <the schema default>)`` or ``<x>.setdefault("<key>", <the schema default>)``
in the package is a second copy of that default, which drifts when the schema's changes. This
test finds every such call (by key name and value, through ``ast``) and fails naming file:line,
except the allow-listed ones below: places that receive a dict the schema never filled.
"""

import ast
from pathlib import Path

from deltaflow.config import load_schema

PACKAGE = Path(__file__).resolve().parents[1] / "scripts" / "deltaflow"

# (file under scripts/deltaflow, enclosing function, the call as ast.unparse writes it): places
# whose dict the config schema never filled, so the fallback is not a copy of a config default.
ALLOWED = {
    # a mixture component's `{}` stand-in for a recipe a run names that does not exist (reported
    # by the run checks): its objective falls back to sft
    ("datasets.py", "dataset_uses", "recipe.get('objective', 'sft')"),
    # normalize_dataset and load_hf also take hand-written dataset specs (tests/test_datasets.py,
    # tests/test_prompt_sets.py, ...) and, for load_hf, a benchmark's hub source
    # (deltaflow.bench.loaders), which the config schema does not fill
    ("datasets.py", "load_hf", "spec.get('split', 'train')"),
    ("datasets.py", "normalize_dataset", "spec.get('seed', 0)"),
    ("datasets.py", "normalize_dataset", "spec.get('split', 'train')"),
    ("datasets.py", "normalize_dataset", "spec.get('max_reject_fraction', 0.2)"),
    # `{}` for a run whose recipe does not exist (reported by the run checks)
    (
        "models.py",
        "lineage",
        "self.config['recipes'].get(node.details['recipe'], {}).get('objective', 'sft')",
    ),
    # _adapter_recipe is `{}` for a model without a run (the base) or with an unknown recipe
    ("graph_checks.py", "check_merges_and_exports", "_adapter_recipe(graph, model).get('method', 'lora')"),
    ("graph_checks.py", "_check_merges", "recipe.get('method', 'lora')"),
    ("graph_checks.py", "_check_merges", "recipe.get('r', 8)"),
    ("graph_checks.py", "check_eval_backend", "_adapter_recipe(graph, run).get('method', 'lora')"),
    # `{}` for an init_from run whose recipe does not exist (reported by the run checks)
    ("training/checks.py", "_check_init_from", "init_recipe.get('load_in_4bit', False)"),
    # a benchmark spec (registry file + config overrides) and its decoding, not the config:
    # `samples` / `temperature` are generation sampling keys there
    ("bench/checks.py", "_check_headline", "spec.decoding.get('samples', 1)"),
    ("bench/checks.py", "_check_benchmark_overrides", "dec.get('samples', 1)"),
    ("bench/checks.py", "_check_benchmark_overrides", "dec.get('temperature', 0.0)"),
    # lm-eval's generation kwargs of a request, not a config dict
    ("llamacpp.py", "generate_until", "kwargs.get('temperature', 0)"),
    # a component's origin summary (deltaflow.origins.origin_summary), not export.models
    ("mixture_report.py", "_origins_lines", "c.origin.get('models', [])"),
    # gates written by hand in tests/test_selection.py (`select(df, {}, ...)`, GATES without
    # bound or lambda); the select_model rule passes the validated config's gates
    ("selection.py", "gate_verdict", "gates.get('target', {})"),
    ("selection.py", "gate_verdict", "gates.get('guarded', {})"),
    ("selection.py", "gate_verdict", "gates.get('underpowered', 'warn')"),
    ("selection.py", "gate_verdict", "rule.get('bound', 'point')"),
    ("selection.py", "gate_verdict", "rule.get('min_gain_pts', 0.0)"),
    ("selection.py", "gate_verdict", "rule.get('tolerance_pts', 0.5)"),
    ("selection.py", "selection_score", "gates.get('target', {})"),
    ("selection.py", "selection_score", "gates.get('guarded', {})"),
    ("selection.py", "select", "gates.get('lambda', 1.0)"),
    ("selection.py", "select", "gates.get('target', {})"),
    ("selection.py", "select", "gates.get('guarded', {})"),
    # TODO lead: a benchmark spec's own keys (spec.schema.yaml), not the config's: the names
    # match config keys with the same default (generations.<n>.sampling.samples / temperature /
    # top_p, benchmarks.<n>.judge.chat_template, verifier.extract.group_select, benchmarks.<n>.seed)
    ("bench/scoring/metrics.py", "samples_of", "spec.decoding.get('samples', 1)"),
    ("bench/scoring/metrics.py", "extract", "spec.extract.get('group_select', 0)"),
    ("bench/scoring/parsers.py", "answer_parser", "spec.extract.get('group_select', 0)"),
    ("bench/lmeval.py", "_exact_match_scoring", "spec.extract.get('group_select', 0)"),
    ("bench/raw_outputs.py", "_lm_eval_samples", "decoding_spec(spec).get('seed', 1234)"),
    ("bench/spec.py", "decoding_spec", "d.setdefault('chat_template', False)"),
    ("bench/spec.py", "decoding_spec", "d.setdefault('temperature', 0.0)"),
    ("bench/spec.py", "decoding_spec", "d.setdefault('samples', 1)"),
    ("bench/spec.py", "decoding_spec", "d.setdefault('top_p', 1.0)"),
    # TODO lead: config copies, if every caller passes the validated config: eval (default {})
    # and eval.guards (default {}) in benchmark_spec; spec.get/bench.get('guards', {}) are the
    # registry's and the benchmark's own guards (no config default of theirs)
    ("bench/from_config.py", "benchmark_spec", "config.get('eval', {})"),
    ("bench/from_config.py", "benchmark_spec", "config.get('eval', {}).get('guards', {})"),
    ("bench/from_config.py", "benchmark_spec", "spec.get('guards', {})"),
    ("bench/from_config.py", "benchmark_spec", "bench.get('guards', {})"),
    # TODO lead: eval settings (eval.backend, eval.vllm.dtype / max_model_len), copies if the
    # eval job always passes the validated config's eval section
    ("bench/run.py", "cache_key", "settings.get('backend', 'hf')"),
    ("bench/vllm_backend.py", "vllm_kwargs", "options.get('dtype', 'auto')"),
    ("bench/vllm_backend.py", "vllm_kwargs", "options.get('max_model_len', 2048)"),
    # TODO lead (deltaflow.training's owner): a training job's JSON; train.strategy's default is
    # the schema's (ddp), a copy if the job always carries the validated train section
    ("training/launch.py", "launch", "job.get('strategy', 'ddp')"),
}


def schema_defaults() -> dict[str, list]:
    """key name -> every default the schema gives a property of that name (anywhere)."""
    found: dict[str, list] = {}

    def walk(node):
        if isinstance(node, dict):
            for key, sub in (node.get("properties") or {}).items():
                if isinstance(sub, dict) and "default" in sub:
                    found.setdefault(key, []).append(sub["default"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(load_schema())
    return found


def _same(a, b) -> bool:
    """Equal as config values: 0 and 0.0 alike, True and 1 not."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def _calls(tree: ast.AST):
    """(enclosing function name, call) for every call in ``tree``."""

    def visit(node, where):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else where
            if isinstance(child, ast.Call):
                yield where, child
            yield from visit(child, inner)

    yield from visit(tree, "<module>")


def default_copies() -> list[tuple[str, int, str, str]]:
    """(file under scripts/deltaflow, line, enclosing function, call) for every ``.get`` or
    ``.setdefault`` whose key and literal fallback are a schema default."""
    defaults = schema_defaults()
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for where, call in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            func = call.func
            if not (isinstance(func, ast.Attribute) and func.attr in ("get", "setdefault")):
                continue
            if len(call.args) != 2 or not isinstance(call.args[0], ast.Constant):
                continue
            key = call.args[0].value
            if not isinstance(key, str) or key not in defaults:
                continue
            try:
                fallback = ast.literal_eval(call.args[1])
            except ValueError:
                continue
            if any(_same(fallback, d) for d in defaults[key]):
                out.append((rel, call.lineno, where, ast.unparse(call)))
    return out


def test_the_scan_sees_a_default_copy():
    tree = ast.parse("def f(recipe):\n    return recipe.get('r', 8), recipe.get('r', 9)\n")
    defaults = schema_defaults()
    hits = [
        ast.unparse(c)
        for _, c in _calls(tree)
        if isinstance(c.func, ast.Attribute)
        and any(_same(ast.literal_eval(c.args[1]), d) for d in defaults[c.args[0].value])
    ]
    assert hits == ["recipe.get('r', 8)"]


def test_no_code_repeats_a_schema_default():
    copies = [c for c in default_copies() if (c[0], c[2], c[3]) not in ALLOWED]
    assert not copies, (
        "schema defaults repeated in code (read the key: validate_config filled it; or, for a dict "
        "the schema never fills, allow-list it here with the reason):\n"
        + "\n".join(f"  scripts/deltaflow/{f}:{line}: {call} (in {where})" for f, line, where, call in copies)
    )


def test_every_allowed_copy_still_exists():
    found = {(f, where, call) for f, _, where, call in default_copies()}
    assert sorted(ALLOWED - found) == []
