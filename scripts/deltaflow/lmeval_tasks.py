"""lm-eval's own task library as benchmarks: ``task: lm_eval:<name>`` (a task lm-eval ships) or
``task: lm_eval:<path to a task YAML>``, with the config's ``lm_eval:`` mapping merged over the
task's YAML (``dataset_path`` / ``dataset_kwargs.data_files`` pointed at local data where the hub
is unreachable, splits, templates).

The task's prompts, targets and metrics are lm-eval's: the item pool is the task's own evaluation
docs (after its ``process_docs``), each kept whole under ``lm_eval_doc``; the eval hands lm-eval
the task's full config with only its data replaced by those docs, so ``doc_to_text``,
``doc_to_choice``, filters and metric functions (Python ones included) run as lm-eval runs them.
Every per-sample metric lm-eval computes is recorded as ``<metric>,<filter>`` (lm-eval's own
result keys, e.g. ``acc,none`` or ``exact_match,strict-match``), and the headline ``metric`` is
one of them (default: the task's first metric under its first filter). Aggregates are per-item
means, which is lm-eval's aggregation for the metrics it marks ``mean``; a task whose headline
metric aggregates otherwise (corpus BLEU, F1 over a set) is refused.

Scope: multiple-choice and generate-until tasks, zero-shot (a task's few-shot split lives with
its hub dataset; set num_fewshot 0). Tasks made of a group run one subtask per benchmark.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from .errors import ConfigError, DataError
from .io import sha256_path

PREFIX = "lm_eval:"
SUPPORTED = ("multiple_choice", "generate_until")


def is_lm_eval_task(task: str) -> bool:
    return isinstance(task, str) and task.startswith(PREFIX)


def _tasks_dir() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).parent / "tasks"


@functools.lru_cache(maxsize=None)
def task_yaml(ref: str) -> Path:
    """The YAML behind ``lm_eval:<name>`` (found by its ``task:`` line among lm-eval's ~14k task
    files, 0.5 s; lm-eval's TaskManager would index them all, ~10 s) or ``lm_eval:<path>``."""
    target = ref[len(PREFIX):] if is_lm_eval_task(ref) else ref
    if target.endswith((".yaml", ".yml")):
        path = Path(target)
        if not path.exists():
            raise ConfigError(f"lm-eval task file '{target}' does not exist")
        return path.resolve()
    pattern = re.compile(rf"^task:\s*[\"']?{re.escape(target)}[\"']?\s*$", re.M)
    for path in sorted(_tasks_dir().rglob("*.yaml")):
        if pattern.search(path.read_text(errors="ignore")):
            return path
    raise ConfigError(f"'{ref}': lm-eval {_lm_eval_version()} has no task named '{target}' "
                      "(see `lm_eval ls tasks`; a task YAML of your own: lm_eval:<path>.yaml)")


def _lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def task_config(ref: str, overrides: dict | None = None) -> dict:
    """The task's full config (includes resolved, ``!function`` entries as callables) with the
    config's overrides on top."""
    from lm_eval.tasks._yaml_loader import load_yaml

    cfg = dict(load_yaml(task_yaml(ref), resolve_func=True))
    for key in ("tag", "group", "task_list"):
        cfg.pop(key, None)
    cfg.update(overrides or {})
    return cfg


def metric_keys(cfg: dict) -> list[str]:
    """lm-eval's result keys for this task: ``<metric>,<filter>``."""
    metrics = [m["metric"] if isinstance(m["metric"], str) else getattr(m["metric"], "__name__", str(m["metric"]))
               for m in cfg.get("metric_list") or []]
    if not metrics:  # lm-eval's defaults per output type
        metrics = ["acc", "acc_norm"] if cfg.get("output_type") == "multiple_choice" else ["exact_match"]
    filters = [f["name"] for f in cfg.get("filter_list") or []] or ["none"]
    return [f"{m},{f}" for f in filters for m in metrics]


def registry_spec(ref: str, bench: dict) -> dict:
    """The registry entry of ``lm_eval:<task>``: its output type and metrics from the task YAML,
    its identity (the YAML's hash, lm-eval's version and the overrides) as its source."""
    overrides = bench.get("lm_eval") or {}
    cfg = task_config(ref, overrides)
    out_type = cfg.get("output_type", "generate_until")
    keys = metric_keys(cfg)
    spec = {
        "description": f"lm-eval's {cfg.get('task', ref)} task ({task_yaml(ref).name})",
        "axis": bench.get("axis", "lm_eval"),
        "source": {"type": "lm_eval", "task": ref, "yaml": str(task_yaml(ref)),
                   "yaml_sha256": sha256_path(task_yaml(ref)), "lm_eval": _lm_eval_version(), "overrides": overrides},
        "loader": "lm_eval",
        "output_type": out_type,
        "metric": bench.get("metric", keys[0]),
        "metric_keys": keys,
        "decoding": {"chat_template": False, "num_fewshot": 0},
    }
    if out_type == "generate_until":
        spec["decoding"]["generation_kwargs"] = cfg.get("generation_kwargs") or {}
    return spec


def check(name: str, spec: dict) -> list[str]:
    key = f"config key 'benchmarks.{name}"
    errors = []
    if spec["output_type"] not in SUPPORTED:
        errors.append(f"{key}.task': '{spec['source']['task']}' is a {spec['output_type']} task; deltaflow runs "
                      f"lm-eval's {' and '.join(SUPPORTED)} tasks")
    if spec["metric"] not in spec["metric_keys"]:
        errors.append(f"{key}.metric': '{spec['metric']}' is not one of the task's per-sample metrics: "
                      f"{', '.join(spec['metric_keys'])}")
    if spec.get("decoding", {}).get("num_fewshot"):
        errors.append(f"{key}.decoding.num_fewshot': lm-eval tasks run zero-shot here (their few-shot split "
                      "is part of the hub dataset); set 0")
    return errors


def load_docs(spec: dict) -> list[dict]:
    """The task's evaluation docs (lm-eval's test split, else validation), each with our doc
    fields and the lm-eval doc kept whole under ``lm_eval_doc``."""
    from lm_eval.api.task import ConfigurableTask

    cfg = task_config(spec["source"]["task"], spec["source"].get("overrides"))
    try:
        task = ConfigurableTask(config=cfg)
    except Exception as exc:  # the hub unreachable, a data file missing: say which and how to fix
        raise DataError(f"benchmark '{spec['name']}': lm-eval could not load the data of "
                        f"'{spec['source']['task']}' ({type(exc).__name__}: {str(exc)[:300]}); point it at "
                        "local data with benchmarks.<name>.lm_eval: {dataset_path: json, dataset_kwargs: "
                        "{data_files: {test: <file>}}, test_split: test}") from None
    docs = []
    for i, doc in enumerate(task.eval_docs):
        doc = dict(doc)
        if "doc_id" in doc:
            raise DataError(f"benchmark '{spec['name']}': the task's docs have a 'doc_id' field, which deltaflow "
                            "uses for its own stable ids; rename it with process_docs")
        text = task.doc_to_text(doc)
        out = {"doc_id": f"{spec['name']}-{i}", "query": str(text), "text": str(text), "lm_eval_doc": doc}
        target = task.doc_to_target(doc)
        if spec["output_type"] == "multiple_choice":
            choices = [str(c) for c in task.doc_to_choice(doc)]
            out.update(choices=choices, gold=target if isinstance(target, int) else choices.index(str(target)))
        else:
            out["answer"] = str(target)
        docs.append(out)
    return docs


def eval_task_config(spec: dict, lm_docs_path: Path) -> dict:
    """The task's full config for ``lm_eval.simple_evaluate`` with its data replaced by the docs
    at ``lm_docs_path`` (already processed: process_docs off) and our decoding."""
    cfg = task_config(spec["source"]["task"], spec["source"].get("overrides"))
    cfg.update({
        "task": f"deltaflow_{spec['name']}",
        "dataset_path": "json", "dataset_name": None,
        "dataset_kwargs": {"data_files": {"test": str(Path(lm_docs_path).resolve())}},
        "test_split": "test", "validation_split": None, "training_split": None, "fewshot_split": None,
        "process_docs": None, "num_fewshot": 0,
    })
    return cfg
