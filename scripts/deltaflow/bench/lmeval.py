"""lm-eval's own task library as benchmarks: ``task: lm_eval:<name>`` (a task lm-eval ships) or
``task: lm_eval:<path to a task YAML>``, with the config's ``lm_eval:`` mapping merged over the
task's YAML (``dataset_path`` / ``dataset_kwargs.data_files`` pointed at local data where the hub
is unreachable, splits, templates).

The task's prompts, targets and metrics are lm-eval's: the item pool is the task's own evaluation
docs (after its ``process_docs``), each kept whole under ``lm_eval_doc``; the eval hands lm-eval
the task's full config with only its data replaced by those docs, so ``doc_to_text``,
``doc_to_choice``, filters and metric functions (Python ones included) run as lm-eval runs them.
Every per-sample metric lm-eval aggregates as a ``mean`` is recorded as ``<metric>,<filter>``
(lm-eval's own result keys, e.g. ``acc,none`` or ``exact_match,strict-match``), and the headline
``metric`` is one of them (default: the task's first metric under its first filter). Aggregates
are per-item means; a metric lm-eval aggregates otherwise (IFEval's instruction-level accuracy,
corpus BLEU) is not recorded and cannot be the headline.

Data: local files (one of datasets' file builders with ``data_files``, a local folder, or the
task's ``custom_dataset``), or the task's hub dataset pinned with ``dataset_kwargs.revision``;
anything else is refused, as for every hub source. A task's import of a package that is not
installed is a config error naming it.

Scope: multiple-choice and generate-until tasks. A group or tag (``mmlu``, ``ai2_arc``) becomes
one benchmark per task (``expand_groups``), each with the group's settings, on an axis named
after the group: the axis row of the delta table is the group's score.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path

from ..errors import ConfigError, DataError
from ..io import sha256_path
from .spec import BenchmarkSpec, decoding_spec

PREFIX = "lm_eval:"
SUPPORTED = ("multiple_choice", "generate_until")
# import name -> the name pip installs it by, where they differ
PIP_NAMES = {
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "Levenshtein": "levenshtein",
    "rouge_score": "rouge-score",
}
# datasets' builders that read local files (data_files); any other dataset_path is a hub id
LOCAL_BUILDERS = ("json", "csv", "parquet", "arrow", "text", "pandas")


def is_lm_eval_task(task: str) -> bool:
    return isinstance(task, str) and task.startswith(PREFIX)


def _tasks_dir() -> Path:
    import lm_eval

    return Path(lm_eval.__file__).parent / "tasks"


@functools.cache
def task_yaml(ref: str) -> Path:
    """The YAML behind ``lm_eval:<name>`` (found by its ``task:`` line among lm-eval's ~14k task
    files, 0.5 s; lm-eval's TaskManager would index them all, ~10 s) or ``lm_eval:<path>``."""
    target = ref[len(PREFIX) :] if is_lm_eval_task(ref) else ref
    if target.endswith((".yaml", ".yml")):
        path = Path(target)
        if not path.exists():
            raise ConfigError(f"lm-eval task file '{target}' does not exist")
        return path.resolve()
    index = _task_index()
    if target in index["tasks"]:
        return index["tasks"][target]
    subtasks = group_subtasks(target)
    if subtasks:
        shown = ", ".join(subtasks[:60]) + (
            f", ... ({len(subtasks) - 60} more)" if len(subtasks) > 60 else ""
        )
        raise ConfigError(
            f"'{ref}': '{target}' is a group of lm-eval tasks, not a task, and deltaflow does not run "
            f"groups (nor their aggregate score): name its tasks, one benchmark each (e.g. "
            f"task: lm_eval:{subtasks[0]}). Its {len(subtasks)} tasks: {shown}"
        )
    raise ConfigError(
        f"'{ref}': lm-eval {_lm_eval_version()} has no task named '{target}' "
        "(see `lm_eval ls tasks`; a task YAML of your own: lm_eval:<path>.yaml)"
    )


def _key(name: str) -> str:  # a top-level YAML key, quoted or not (mmlu's generated files quote them)
    return rf"^[\"']?{name}[\"']?:"


_NAME = r"[\"']?([^\s\"'#\[\]{}]+)[\"']?\s*(?:#.*)?$"
_TASK = re.compile(_key("task") + r"\s*" + _NAME, re.MULTILINE)
_GROUP = re.compile(_key("group") + r"\s*" + _NAME, re.MULTILINE)
_TAG = re.compile(_key("tag") + r"\s*" + _NAME, re.MULTILINE)
_TAG_LIST = re.compile(_key("tag") + r"\s*\n((?:[ \t]*-[^\n]*\n?)+)", re.MULTILINE)
_INCLUDE = re.compile(_key("include") + r"\s*" + _NAME, re.MULTILINE)


@functools.cache
def _task_index() -> dict:
    """lm-eval's task library read from its YAML text (each file once, ~0.5 s): task name -> file
    (the first file naming it, in path order), group name -> file, tag -> its tasks."""
    tasks: dict[str, Path] = {}
    groups: dict[str, Path] = {}
    tags: dict[str, list[str]] = {}
    own_tags: dict[Path, list[str]] = {}
    includes: dict[Path, Path] = {}
    named: list[tuple[str, Path]] = []
    for path in sorted(_tasks_dir().rglob("*")):
        if path.suffix not in (".yaml", ".yml", "") or not path.is_file() or path.name.startswith("."):
            continue  # task files, and the templates (_default_template_yaml) they include
        text = path.read_text(errors="ignore")
        names = [m.group(1) for m in _TAG.finditer(text)]
        for block in _TAG_LIST.finditer(text):
            names += [
                line.strip()[1:].strip().strip("\"'") for line in block.group(1).splitlines() if line.strip()
            ]
        own_tags[path] = names
        include = _INCLUDE.search(text)
        if include:
            includes[path] = (path.parent / include.group(1)).resolve()
        if path.suffix == "":
            continue
        task = _TASK.search(text)
        if task:
            tasks.setdefault(task.group(1), path)
            named.append((task.group(1), path))
        group = _GROUP.search(text)
        if group:
            groups.setdefault(group.group(1), path)
    for name, path in named:  # a task's tags: its own, else those of the file it includes
        seen = set()
        while not own_tags.get(path) and path in includes and path not in seen:
            seen.add(path)
            path = includes[path]
        for tag in own_tags.get(path, ()):
            tags.setdefault(tag, []).append(name)
    return {"tasks": tasks, "groups": groups, "tags": tags}


@functools.cache
def group_subtasks(name: str) -> list[str] | None:
    """The tasks a group or tag of lm-eval's library is made of (groups and tags inside it
    expanded), or None when ``name`` is neither."""
    import yaml

    index = _task_index()
    if name not in index["groups"] and name not in index["tags"]:
        return None

    class _Loader(yaml.SafeLoader):  # a group file's !function entries are not needed here
        pass

    _Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    leaves: list[str] = []

    def walk(n: str, seen: frozenset) -> None:
        if n in seen:
            return
        if n in index["groups"] and n not in index["tasks"]:
            cfg = yaml.load(index["groups"][n].read_text(), Loader=_Loader) or {}
            items = cfg.get("task") or []
            for t in items if isinstance(items, list) else [items]:
                walk(t.get("task") if isinstance(t, dict) else t, seen | {n})
        elif n in index["tags"] and n not in index["tasks"]:
            for m in sorted(index["tags"][n]):
                walk(m, seen | {n})
        elif n in index["tasks"] and n not in leaves:
            leaves.append(n)

    walk(name, frozenset())
    return leaves or None


def expand_groups(config: dict) -> list[str]:
    """Each benchmark whose task is an lm-eval group or tag (``task: lm_eval:mmlu``) replaced by one
    benchmark per task of it, ``<benchmark>-<task>`` (the group's prefix dropped from the task's
    name: ``mmlu-abstract_algebra``), with the group's settings (n, seed, lm_eval overrides,
    decoding, few-shot, suite, ...), ``axis`` the group's name unless it sets one, and ``group``
    naming it. In the group's ``lm_eval`` overrides, ``{task}`` and ``{dataset_name}`` become each
    task's name and its YAML's dataset_name (per-task local files: MMLU's subjects). Run where the
    config is validated, like the grids; a second run changes nothing. Returns the names that
    clash with a benchmark already configured."""
    problems = [  # `group` names where an expanded benchmark came from; by hand it would do nothing
        f"config key 'benchmarks.{name}.group': set by deltaflow on the benchmarks an lm-eval group "
        f"expands into (named <group>-<task>); remove it, or give the group as task: lm_eval:<group>"
        for name, bench in sorted(config["benchmarks"].items())
        if bench.get("group") and not name.startswith(f"{bench['group']}-")
    ]
    for name, bench in sorted(config["benchmarks"].items()):
        task = bench.get("task", name)
        target = task[len(PREFIX) :] if is_lm_eval_task(task) else ""
        if not target or target.endswith((".yaml", ".yml")) or target in _task_index()["tasks"]:
            continue
        subtasks = group_subtasks(target)
        if not subtasks:
            continue  # an unknown task: the benchmark checks say so
        del config["benchmarks"][name]
        for sub in subtasks:
            short = sub[len(target) + 1 :] if sub.startswith(target + "_") else sub
            key = re.sub(r"[^A-Za-z0-9_-]", "_", f"{name}-{short}")
            if key in config["benchmarks"]:
                problems.append(
                    f"config key 'benchmarks.{name}': its lm-eval group's task {sub} becomes benchmark "
                    f"'{key}', which is already configured; rename one of them"
                )
                continue
            config["benchmarks"][key] = {
                **copy.deepcopy(bench),
                **({"lm_eval": _per_task(bench["lm_eval"], sub)} if bench.get("lm_eval") else {}),
                "task": f"{PREFIX}{sub}",
                "axis": bench.get("axis") or name,
                "group": name,
            }
    return problems


_PLACEHOLDER = re.compile(r"(?<!\{)\{(task|dataset_name)\}(?!\})")  # not a Jinja {{ ... }}


def _per_task(overrides, task: str):
    """A group's lm_eval overrides for one of its tasks: ``{task}`` and ``{dataset_name}`` filled."""
    if isinstance(overrides, dict):
        return {k: _per_task(v, task) for k, v in overrides.items()}
    if isinstance(overrides, list):
        return [_per_task(v, task) for v in overrides]
    if not isinstance(overrides, str) or not _PLACEHOLDER.search(overrides):
        return overrides

    def fill(m: re.Match) -> str:
        if m.group(1) == "task":
            return task
        from lm_eval.tasks._yaml_loader import load_yaml

        return str(load_yaml(task_yaml(f"{PREFIX}{task}"), resolve_func=False).get("dataset_name") or "")

    return _PLACEHOLDER.sub(fill, overrides)


def _lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")


def task_config(ref: str, overrides: dict | None = None) -> dict:
    """The task's full config (includes resolved, ``!function`` entries as callables) with the
    config's overrides on top. A Python package the task's functions import that is not
    installed is a ConfigError naming it."""
    from lm_eval.tasks._yaml_loader import load_yaml

    from .scoring.ifeval import install_punkt_tab

    path = task_yaml(ref)
    install_punkt_tab()  # NLTK's punkt_tab, which ifeval's checkers would download on import
    try:
        cfg = dict(load_yaml(path, resolve_func=True))
    except ImportError as exc:
        module = (exc.name or str(exc)).split(".")[0]
        package = PIP_NAMES.get(module, module)
        raise ConfigError(
            f"'{ref}': lm-eval's task ({path.name}) imports the Python package '{package}', which is not "
            f"installed ({type(exc).__name__}: {exc}); run `make setup` (envs/requirements.txt pins what "
            f"the tasks deltaflow documents need), or `pip install {package}` for another task"
        ) from None
    for key in ("tag", "group", "task_list"):
        cfg.pop(key, None)
    cfg.update(overrides or {})
    return cfg


def data_origin(cfg: dict) -> dict:
    """Where the task's data comes from: ``{"local": True}`` (local files through one of datasets'
    file builders, a local dataset folder, or the task's own ``custom_dataset``), else the hub id
    and the ``revision`` pinned under ``dataset_kwargs`` (None when unpinned)."""
    path = cfg.get("dataset_path")
    kwargs = cfg.get("dataset_kwargs") or {}
    files = kwargs.get("data_files") or {}
    files = (
        [files]
        if isinstance(files, str)
        else list(files.values())
        if isinstance(files, dict)
        else list(files)
    )
    flat = [f for x in files for f in (x if isinstance(x, (list, tuple)) else [x])]
    remote = [f for f in flat if isinstance(f, str) and re.match(r"^[a-z][a-z0-9+.-]*://", f)]
    if (
        cfg.get("custom_dataset")
        or (path in LOCAL_BUILDERS and flat and not remote)
        or (isinstance(path, str) and path not in LOCAL_BUILDERS and Path(path).exists())
    ):
        return {"local": True}
    return {"local": False, "dataset_path": path, "remote_files": remote, "revision": kwargs.get("revision")}


def _metric_name(m) -> str:
    return m if isinstance(m, str) else getattr(m, "__name__", str(m))


def metric_keys(cfg: dict, *, per_item: bool = True) -> list[str]:
    """lm-eval's result keys for this task: ``<metric>,<filter>``; with ``per_item``, those lm-eval
    aggregates as a mean over items (what deltaflow records), else those it aggregates otherwise
    (e.g. IFEval's instruction-level accuracies, a mean over all instructions of all items)."""
    entries = cfg.get("metric_list") or []
    metrics = [
        _metric_name(m["metric"])
        for m in entries
        if per_item == (_metric_name(m.get("aggregation", "mean")) == "mean")
    ]
    if not entries and per_item:  # lm-eval's defaults per output type
        metrics = ["acc", "acc_norm"] if cfg.get("output_type") == "multiple_choice" else ["exact_match"]
    filters = [f["name"] for f in cfg.get("filter_list") or []] or ["none"]
    return [f"{m},{f}" for f in filters for m in metrics]


def registry_spec(ref: str, bench: dict) -> dict:
    """The registry entry of ``lm_eval:<task>``: its output type and metrics from the task YAML,
    its identity (the YAML's hash, lm-eval's version and the overrides) as its source."""
    overrides = bench.get("lm_eval") or {}
    cfg = task_config(ref, overrides)
    out_type = cfg.get("output_type", "generate_until")
    if out_type not in SUPPORTED:  # no spec has it (the schema's output_type): say what runs
        raise ConfigError(
            f"'{ref}' is a {out_type} task; deltaflow runs lm-eval's {' and '.join(SUPPORTED)} tasks"
        )
    keys = metric_keys(cfg)
    others = metric_keys(cfg, per_item=False)
    spec = {
        "description": f"lm-eval's {cfg.get('task', ref)} task ({task_yaml(ref).name})",
        "axis": bench.get("axis", "lm_eval"),
        "source": {
            "type": "lm_eval",
            "task": ref,
            "yaml": str(task_yaml(ref)),
            "yaml_sha256": sha256_path(task_yaml(ref)),
            "lm_eval": _lm_eval_version(),
            "overrides": overrides,
        },
        "loader": "lm_eval",
        "output_type": out_type,
        "metric": bench.get("metric", keys[0] if keys else None),
        "metric_keys": keys,
        "unrecorded_metrics": others,
        "decoding": {"chat_template": False, "num_fewshot": 0},
        "data": data_origin(cfg),
    }
    if out_type == "generate_until":
        spec["decoding"]["generation_kwargs"] = cfg.get("generation_kwargs") or {}
    return spec


def check(name: str, spec: BenchmarkSpec) -> list[str]:
    key = f"config key 'benchmarks.{name}"
    errors = []
    if spec.output_type not in SUPPORTED:
        errors.append(
            f"{key}.task': '{spec.source['task']}' is a {spec.output_type} task; deltaflow runs "
            f"lm-eval's {' and '.join(SUPPORTED)} tasks"
        )
    if not spec.metric_keys:
        errors.append(
            f"{key}.task': '{spec.source['task']}' aggregates none of its metrics as a mean over "
            f"items ({', '.join(spec.unrecorded_metrics)}); deltaflow records per-item means only"
        )
    elif spec.metric in spec.unrecorded_metrics:
        errors.append(
            f"{key}.metric': lm-eval aggregates '{spec.metric}' over the whole set, not as a mean "
            f"over items, and deltaflow records per-item means only: one of "
            f"{', '.join(spec.metric_keys)}"
        )
    elif spec.metric not in spec.metric_keys:
        errors.append(
            f"{key}.metric': '{spec.metric}' is not one of the task's per-sample metrics: "
            f"{', '.join(spec.metric_keys)}"
        )
    data = spec.data or {"local": True}
    if not data["local"] and data["remote_files"]:
        errors.append(
            f"{key}.lm_eval.dataset_kwargs.data_files': {data['remote_files'][0]} is a URL; "
            "deltaflow reads an lm-eval task's data from local files or a pinned hub dataset"
        )
    elif not data["local"] and not data["revision"]:
        errors.append(
            f"{key}.lm_eval': the task's data is the hub dataset '{data['dataset_path']}' with no "
            "pinned revision (every hub source must have one); pin it with "
            "lm_eval: {dataset_kwargs: {revision: <commit sha>}} (it replaces the task's own "
            "dataset_kwargs: repeat any you keep), or read local files with lm_eval: {dataset_path: json, "
            "dataset_name: null, dataset_kwargs: {data_files: {test: <file>}}, test_split: test}"
        )
    if spec.decoding.get("num_fewshot"):
        errors.append(
            f"{key}.decoding.num_fewshot': lm-eval tasks run zero-shot here (their few-shot split "
            "is part of the hub dataset); set 0"
        )
    return errors


def load_docs(spec: BenchmarkSpec) -> list[dict]:
    """The task's evaluation docs (lm-eval's test split, else validation), each with our doc
    fields and the lm-eval doc kept whole under ``lm_eval_doc``."""
    from lm_eval.api.task import ConfigurableTask

    cfg = task_config(spec.source["task"], spec.source.get("overrides"))
    try:
        task = ConfigurableTask(config=cfg)
    except Exception as exc:  # noqa: BLE001 -- the hub unreachable, a data file missing: say which and how to fix
        raise DataError(
            f"benchmark '{spec.name}': lm-eval could not load the data of "
            f"'{spec.source['task']}' ({type(exc).__name__}: {str(exc)[:300]}); point it at "
            "local data with benchmarks.<name>.lm_eval: {dataset_path: json, dataset_kwargs: "
            "{data_files: {test: <file>}}, test_split: test}"
        ) from None
    docs = []
    for i, doc in enumerate(task.eval_docs):
        doc = dict(doc)
        if "doc_id" in doc:
            raise DataError(
                f"benchmark '{spec.name}': the task's docs have a 'doc_id' field, which deltaflow "
                "uses for its own stable ids; rename it with process_docs"
            )
        text = task.doc_to_text(doc)
        out = {"doc_id": f"{spec.name}-{i}", "query": str(text), "text": str(text), "lm_eval_doc": doc}
        target = task.doc_to_target(doc)
        if spec.output_type == "multiple_choice":
            choices = [str(c) for c in task.doc_to_choice(doc)]
            out.update(
                choices=choices, gold=target if isinstance(target, int) else choices.index(str(target))
            )
        else:
            out["answer"] = str(target)
        docs.append(out)
    return docs


def eval_task_config(spec: BenchmarkSpec, lm_docs_path: Path) -> dict:
    """The task's full config for ``lm_eval.simple_evaluate`` with its data replaced by the docs
    at ``lm_docs_path`` (already processed: process_docs off) and our decoding."""
    cfg = task_config(spec.source["task"], spec.source.get("overrides"))
    cfg.update(
        {
            "task": f"deltaflow_{spec.name}",
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {"data_files": {"test": str(Path(lm_docs_path).resolve())}},
            "test_split": "test",
            "validation_split": None,
            "training_split": None,
            "fewshot_split": None,
            "process_docs": None,
            "num_fewshot": 0,
        }
    )
    return cfg


def fewshot_file(docs_path: Path) -> Path:
    """Where lm-eval reads the shots of the docs at ``docs_path``: ``fewshot.jsonl`` beside it."""
    return Path(docs_path).with_name("fewshot.jsonl")


def lm_eval_docs_file(docs_path: Path) -> Path:
    """Where an lm-eval task's own docs (``lm_eval_doc`` of each of ours) are written for lm-eval."""
    return Path(docs_path).with_name(Path(docs_path).stem + ".lm_eval.jsonl")


def _generation_kwargs(spec: BenchmarkSpec) -> dict:
    dec = decoding_spec(spec)
    kw = {
        "until": dec.get("until", ["\n"]),
        "max_gen_toks": dec.get("max_gen_toks", 32),
        "do_sample": dec["temperature"] > 0,
        "temperature": dec["temperature"],
    }
    if dec["temperature"] > 0 and dec["top_p"] < 1.0:
        kw["top_p"] = dec["top_p"]
    return kw


def _exact_match_scoring(spec: BenchmarkSpec) -> dict:
    """Greedy exact match: lm-eval's exact_match over its regex filter (or whitespace removal),
    which the eval stage checks deltaflow's scoring against."""
    steps = []
    if spec.extract:
        steps.append(
            {
                "function": "regex",
                "regex_pattern": spec.extract["regex"],
                "group_select": spec.extract.get("group_select", 0),
            }
        )
    else:
        steps.append({"function": "remove_whitespace"})
    steps.append({"function": "take_first"})
    return {
        "metric_list": [
            {
                "metric": "exact_match",
                "aggregation": "mean",
                "higher_is_better": True,
                "ignore_case": True,
                "ignore_punctuation": False,
                "regexes_to_ignore": spec.ignore,
            }
        ],
        "filter_list": [{"name": "extract", "filter": steps}],
    }


def lm_eval_task_config(spec: BenchmarkSpec, docs_path: Path) -> dict:
    """An lm-eval task config (the dict form of a task YAML) over our docs file.

    Multiple choice: lm-eval's acc and acc_norm. Greedy generation (one sample): lm-eval's regex
    filter and exact_match, which the eval stage checks our scoring against. Sampled generation
    (``decoding.samples`` k > 1, lm-eval's ``repeats``) and code: lm-eval generates, deltaflow's
    scoring computes mean@k / pass@k / maj@k and runs code in the sandbox (metric ``bypass``).
    A registry entry may override lm-eval's templates under ``lm_eval:`` (WinoGrande does).
    """
    dec = decoding_spec(spec)
    if spec.loader == "lm_eval":  # lm-eval's own task, its data replaced by our docs
        return eval_task_config(spec, lm_eval_docs_file(docs_path))
    task = {
        "task": f"deltaflow_{spec.name}",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(Path(docs_path).resolve())}},
        "test_split": "test",
        "doc_to_text": "{{query}}",
        "num_fewshot": dec["num_fewshot"],
        "metadata": {"version": 1.0},
    }
    out_type = spec.output_type
    if out_type == "multiple_choice":
        task.update(
            {
                "output_type": "multiple_choice",
                "doc_to_choice": "{{choices}}",
                "doc_to_target": "gold",
                "metric_list": [
                    {"metric": m, "aggregation": "mean", "higher_is_better": True}
                    for m in ("acc", "acc_norm")
                ],
            }
        )
    elif out_type in ("generate_until", "code", "instruction", "open_ended"):
        task.update(
            {
                "output_type": "generate_until",
                "doc_to_target": "{{answer}}",
                "generation_kwargs": _generation_kwargs(spec),
                "repeats": dec["samples"],
            }
        )
        if out_type == "generate_until" and dec["samples"] == 1 and spec.match == "exact":
            task.update(_exact_match_scoring(spec))
        else:  # scored by deltaflow.bench.scoring from the raw responses (sampled, numeric/contains match,
            # code: sandbox; instruction: IFBench)
            task["metric_list"] = [{"metric": "bypass", "aggregation": "bypass", "higher_is_better": True}]
            task["filter_list"] = [{"name": "raw", "filter": [{"function": "take_first"}]}]
    else:
        raise DataError(
            f"benchmark '{spec.name}': unsupported output_type {out_type!r}; "
            "use multiple_choice, generate_until, code, instruction or open_ended"
        )
    if dec["num_fewshot"]:
        if not spec.shots:
            raise DataError(
                f"benchmark '{spec.name}': num_fewshot {dec['num_fewshot']} but no shots attached "
                "(benchmarks.with_shots); the benchmark_docs job chooses them"
            )
        # the chosen shots, in order: lm-eval's first_n sampler over a split holding exactly them
        task["dataset_kwargs"]["data_files"]["fewshot"] = str(fewshot_file(docs_path).resolve())
        task.update(fewshot_split="fewshot", fewshot_config={"sampler": "first_n"})
    task.update(spec.lm_eval or {})
    return task
