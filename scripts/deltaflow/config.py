"""Config loading and validation.

The JSON schema (config/schema.yaml) checks shapes and fills defaults; the checks
here follow references between sections (a mixture naming an unknown dataset, a
benchmark missing from the registry, a file that does not exist) so that every
error is raised before any job starts, naming the config key and the fix.
"""

from __future__ import annotations

import ast
import copy
import difflib
import functools
import importlib.util
import os
import re
from pathlib import Path

import jsonschema
import yaml

from . import lmeval_tasks, registry
from .benchmarks import LOADERS
from .datasets import check_prompt_sets
from .declared import check_template_spec
from .distributed import processes_for
from .errors import ConfigError
from .generation import CHECK_FIELDS, rows_without_checks
from .generation import check_config as check_generations
from .gguf_export import GGUF_TYPES
from .grid import expand_grids
from .io import read_config_file
from .judging import check_spec as check_judge
from .judging import headline_metric
from .lmeval_tasks import is_lm_eval_task
from .models import PEFT_KEYS, ModelGraph
from .origins import check_policies
from .rewards import check_rewards
from .seeds import expand_seeds, is_seed_arm

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "config" / "schema.yaml"


def _with_defaults(validator_class):
    """A validator that fills `default:` values in as it validates (the jsonschema FAQ recipe)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, subschema in properties.items():
                if "default" in subschema and prop not in instance:
                    instance[prop] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def load_schema() -> dict:
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    # GGUF types have one home: the converter's and the quantizer's own lists
    items = schema["properties"]["export"]["properties"]["gguf_types"]["items"]
    items["enum"] = list(GGUF_TYPES)
    return schema


def _key(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def validate_config(config: dict, *, check_files: bool = True) -> dict:
    """Validate ``config`` in place (filling defaults) and return it.

    Raises ConfigError listing every problem, each with its key.
    """
    schema = load_schema()
    validator = _Validator(schema)
    # seed arms are derived (deltaflow.seeds); a config validated before holds them: derive again
    for section in ("runs", "recipes"):
        for name in [n for n in (config.get(section) or {}) if is_seed_arm(n)]:
            del config[section][name]
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors:
            desc = err.schema.get("description", "") if isinstance(err.schema, dict) else ""
            hint = f" ({desc.strip()})" if desc and err.validator not in ("oneOf",) else ""
            msg = err.message
            if err.validator == "oneOf" and "multiplier" in str(err.schema):
                msg = "give exactly one of multiplier, fraction, rows or share"
            if err.validator in ("additionalProperties", "enum"):  # short: the key, the value, the fix
                lines.extend(
                    f"config key '{_key(p)}': {m}" for p, m in _short_errors(err, list(err.absolute_path))
                )
                continue
            path = list(err.absolute_path)
            if err.validator == "required":  # name the missing key itself
                missing = re.match(r"'(.+)' is a required property", err.message)  # one error per key
                path += [missing.group(1)] if missing else []
                if desc.startswith("required for type"):  # the schema's per-type if/then
                    msg, hint = desc.strip(), ""
            lines.append(f"config key '{_key(path)}': {msg}{hint}")
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines))
    expand_grids(config, _recipe_validator(schema))
    problems = expand_seeds(config) + list(_check_references(config, check_files=check_files))
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    return config


# Keys and values deltaflow knows and does not support, with the reason and what to do instead:
# reported as such, never as a misspelling. Keys are dotted config paths; `*` stands for a name.
UNSUPPORTED_KEYS = {
    "recipes.*.early_stopping_patience": (
        "a run trains all its max_steps or epochs; save checkpoints with save_every (each is "
        "evaluated) and let the selection pick the best one"
    ),
    "recipes.*.max_grad_norm": (
        "gradient clipping cannot be set from a recipe; training uses transformers' default "
        "(max_grad_norm 1.0)"
    ),
    "recipes.*.warmup_steps": "give the warmup as warmup_ratio, a fraction of the steps",
    "base_model.tokenizer": (
        "the tokenizer is always the base model's own (from its folder, package or hub repo)"
    ),
}
UNSUPPORTED_VALUES = {
    ("recipes.*.objective", "ppo"): (
        "TRL 1.x no longer ships PPO; its trainers are SFT, DPO, GRPO, RLOO, KTO, Reward and "
        "Distillation. deltaflow trains {allowed}: for RL from a reward use grpo (rewards: "
        "verifiers or format regexes), for preference pairs dpo"
    ),
}


# transformers schedulers that need arguments a recipe cannot give (the schema has no
# scheduler arguments yet) or, for the metric-driven ones, a validation loss
SCHEDULER_ARGUMENTS = {
    "cosine_with_min_lr": "its minimum learning rate (min_lr or min_lr_rate)",
    "cosine_warmup_with_min_lr": "its minimum learning rate (min_lr or min_lr_rate)",
    "warmup_stable_decay": "its decay length (num_decay_steps)",
}
SCHEDULERS_ON_VALIDATION = ("reduce_lr_on_plateau", "greedy")


@functools.lru_cache(maxsize=1)
def scheduler_names() -> tuple[str, ...]:
    """transformers' own scheduler names (``transformers.trainer_utils.SchedulerType``'s values),
    read from its source: importing transformers imports torch, seconds at every config check."""
    origin = importlib.util.find_spec("transformers").origin
    tree = ast.parse((Path(origin).parent / "trainer_utils.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "SchedulerType":
            names = tuple(
                n.value.value
                for n in node.body
                if isinstance(n, ast.Assign)
                and isinstance(n.value, ast.Constant)
                and isinstance(n.value.value, str)
            )
            if names:
                return names
    from transformers.trainer_utils import SchedulerType  # moved in the source: import it

    return tuple(s.value for s in SchedulerType)


def _check_scheduler(rname: str, recipe: dict):
    key, name = f"config key 'recipes.{rname}.lr_scheduler'", recipe["lr_scheduler"]
    names = scheduler_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        yield (
            f"{key}: '{name}' is not a transformers scheduler"
            + (f" (did you mean '{close[0]}'?)" if close else "")
            + f"; transformers has: {', '.join(names)}"
        )
    elif name in SCHEDULER_ARGUMENTS:
        yield (
            f"{key}: '{name}' needs {SCHEDULER_ARGUMENTS[name]}, and a recipe has no key to give "
            "scheduler arguments yet; use cosine (decays to 0) or another scheduler without arguments"
        )
    elif name in SCHEDULERS_ON_VALIDATION and not recipe["val_rows"]:
        yield (
            f"{key}: '{name}' adapts the learning rate to the validation loss, and this recipe "
            "has none; set val_rows (and eval_every), or use a fixed schedule such as cosine"
        )


def _match(table_key: str, path: list) -> bool:
    parts = table_key.split(".")
    return len(parts) == len(path) and all(t in ("*", str(p)) for t, p in zip(parts, path))


def _short_errors(err, path: list) -> list[tuple[list, str]]:
    """(path, message) lines for an unexpected key or a value outside an enum: the key, the
    value, what is allowed (or why a known feature is unsupported), never the key's whole
    description. ``path`` locates ``err`` in the config (the known-unsupported tables match it)."""
    if err.validator == "enum":
        allowed = list(err.validator_value)
        for (key, value), reason in UNSUPPORTED_VALUES.items():
            if _match(key, path) and err.instance == value:
                return [
                    (
                        path,
                        f"{value!r} is not supported: " + reason.format(allowed=", ".join(map(str, allowed))),
                    )
                ]
        return [(path, f"{err.instance!r} is not one of {', '.join(map(str, allowed))}")]
    known = list((err.schema.get("properties") or {}) if isinstance(err.schema, dict) else ())
    out = []
    for extra in sorted(k for k in err.instance if k not in known):
        where = [*path, extra]
        reason = next((r for key, r in UNSUPPORTED_KEYS.items() if _match(key, where)), None)
        if reason:
            out.append(
                (
                    where,
                    (
                        f"'{extra}' is a known setting that deltaflow does not support "
                        f"(not a misspelling): {reason}"
                    ),
                )
            )
            continue
        close = difflib.get_close_matches(str(extra), known, n=1)
        fix = f"did you mean '{close[0]}'?" if close else f"known keys here: {', '.join(known)}"
        out.append((where, f"unknown key '{extra}' — {fix} (check the spelling against config/README.md)"))
    return out


def schema_defaults(definition: str, instance: dict) -> dict:
    """``instance`` checked against ``$defs/<definition>`` of config/schema.yaml with its
    defaults filled in (a copy): how code outside a workflow run (tests, notebooks) gets the
    spec the validated config would hold, without repeating a default."""
    schema = load_schema()
    instance = copy.deepcopy(instance)
    errors = list(
        _Validator({"$ref": f"#/$defs/{definition}", "$defs": schema["$defs"]}).iter_errors(instance)
    )
    if errors:
        raise ConfigError(
            f"invalid {definition}:\n  "
            + "\n  ".join(f"{_key(e.absolute_path)}: {e.message}" for e in errors)
        )
    return instance


def _recipe_validator(schema: dict):
    """Schema errors of one recipe (a grid's derived recipes), as messages."""
    validator = _Validator({"$ref": "#/$defs/recipe", "$defs": schema["$defs"]})

    def errors(recipe: dict) -> list[str]:
        out = []
        for e in validator.iter_errors(recipe):
            if e.validator in ("additionalProperties", "enum"):  # matched as a recipe's keys
                out += [
                    f"{_key(p[2:])}: {m}" for p, m in _short_errors(e, ["recipes", "*", *e.absolute_path])
                ]
            else:
                out.append(f"{_key(e.absolute_path)}: {e.message}")
        return out

    return errors


def load_config(path: str | os.PathLike, *, check_files: bool = True) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    # strict: a key given twice, invalid YAML or an empty file is an error naming the file
    return validate_config(read_config_file(path), check_files=check_files)


def dataset_splits(ds: dict) -> list[str]:
    """The splits a dataset (or a generation: its one split) provides after normalization."""
    if "prompts" in ds:  # generations.<name>
        return [ds.get("split", "train")]
    if ds["type"] == "generated":
        return ["train", "eval"]
    return [ds.get("split", "train")]


def _check_references(config: dict, *, check_files: bool):
    datasets = config["datasets"]
    for name, ds in datasets.items():
        if ds["type"] == "file" and check_files and "path" in ds and not Path(ds["path"]).exists():
            yield (
                f"config key 'datasets.{name}.path': file '{ds['path']}' does not exist "
                f"(paths are relative to the working directory {os.getcwd()})"
            )
        local_id = ds["type"] == "hf" and str(ds.get("id", "")).startswith(("/", "./", "../", "~"))
        if check_files and local_id and not Path(ds["id"]).expanduser().exists():
            yield (
                f"config key 'datasets.{name}.id': local dataset folder '{ds['id']}' does not exist "
                f"(paths are relative to the working directory {os.getcwd()})"
            )

    src = config["base_model"]["source"]
    if check_files and src["type"] == "random_init" and "corpus" in src and not Path(src["corpus"]).exists():
        yield f"config key 'base_model.source.corpus': file '{src['corpus']}' does not exist"
    if check_files and src["type"] == "local":
        yield from _check_local_base(src)
    tpl = config["base_model"].get("chat_template_path")
    if check_files and tpl and not Path(tpl).exists():
        yield (
            f"config key 'base_model.chat_template_path': file '{tpl}' does not exist "
            f"(paths are relative to the working directory {os.getcwd()})"
        )
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

    gens = config.get("generations") or {}
    for mname, mix in config["mixtures"].items():
        for i, comp in enumerate(mix["components"]):
            key = f"mixtures.{mname}.components[{i}]"
            ds = comp["dataset"]
            if ds not in datasets and ds not in gens:
                yield (
                    f"config key '{key}.dataset': unknown dataset '{ds}'; "
                    f"known: {', '.join(sorted([*datasets, *gens]))}"
                )
                continue
            splits = dataset_splits(datasets[ds] if ds in datasets else gens[ds])
            if comp.get("split", "train") not in splits:
                yield (f"config key '{key}.split': dataset '{ds}' has splits {splits}, not '{comp['split']}'")
        names = [c.get("name", c["dataset"]) for c in mix["components"]]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            yield (
                f"config key 'mixtures.{mname}.components': component names {dupes} repeat; "
                "give each component a distinct `name:`"
            )
        yield from _check_mixture(config, mname, mix, names)
    yield from check_prompt_sets(config)  # a prompt set trained on with SFT, DPO or CPT

    train = config["train"]
    processes = processes_for(train)
    if train["strategy"] == "fsdp" and train["device"] != "cuda":
        yield (
            "config key 'train.strategy': fsdp shards the model over GPUs and train.device is cpu; "
            "use strategy: ddp on cpu (or train.device: cuda)"
        )
    used = {run["recipe"] for run in config["runs"].values()}
    for rname, recipe in config["recipes"].items():
        if rname in used and recipe["batch_size"] % processes:
            yield (
                f"config key 'recipes.{rname}.batch_size': {recipe['batch_size']} does not split over "
                f"{processes} training processes (train.processes / train.gpus); the batch is global: "
                f"make it a multiple of {processes}"
            )
        if recipe.get("load_in_4bit") and config.get("train", {}).get("device", "cpu") != "cuda":
            yield (
                f"config key 'recipes.{rname}.load_in_4bit': QLoRA (a 4-bit base through "
                "bitsandbytes) needs a CUDA GPU and train.device is cpu; set train.device: cuda "
                "(and train.gpus) on a GPU machine, or load_in_4bit: false"
            )
        yield from _check_recipe_length(rname, recipe)
        yield from _check_scheduler(rname, recipe)
        if recipe["rollouts"] == "vllm" and (recipe["objective"] != "grpo" or train["device"] != "cuda"):
            yield (
                f"config key 'recipes.{rname}.rollouts': vllm samples GRPO's completions through TRL's "
                "colocated vLLM, which needs objective grpo and a CUDA GPU (train.device: cuda); "
                f"this recipe is objective {recipe['objective']} on train.device {train['device']}: "
                "use rollouts: hf"
            )
        if recipe["objective"] == "grpo":
            dirs = benchmark_dirs(config)
            yield from check_rewards(
                rname, recipe, dirs, registry.available(dirs), lambda b, dirs=dirs: registry.load(b, dirs)
            )
        if recipe.get("precision") == "fp16" and config.get("train", {}).get("device", "cpu") != "cuda":
            yield (
                f"config key 'recipes.{rname}.precision': fp16 mixed precision needs a CUDA GPU "
                "and train.device is cpu; use auto, fp32 or bf16"
            )

    for rname, run in config["runs"].items():
        if run["mixture"] not in config["mixtures"]:
            yield (
                f"config key 'runs.{rname}.mixture': unknown mixture '{run['mixture']}'; "
                f"known: {', '.join(sorted(config['mixtures']))}"
            )
        if run["recipe"] not in config["recipes"]:
            yield (
                f"config key 'runs.{rname}.recipe': unknown recipe '{run['recipe']}'; "
                f"known: {', '.join(sorted(config['recipes']))}"
            )

    yield from _check_runs(config)
    yield from _check_merges_and_exports(config)
    # model-written data (deltaflow.generation) and the origin policies over every dataset
    # (deltaflow.origins: transitive through the models that wrote it; a data cycle is an error)
    gen_errors = check_generations(
        config, ModelGraph(config).names, dirs=benchmark_dirs(config), dataset_splits=dataset_splits
    )
    yield from gen_errors
    if not gen_errors:
        yield from check_policies(config)
    if config.get("eval", {}).get("backend") == "vllm":
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
        task = bench.get("task", bname)
        if is_lm_eval_task(task):  # lm-eval's own task library (deltaflow.lmeval_tasks)
            try:
                spec = benchmark_spec(config, bname)
            except ConfigError as exc:
                yield f"config key 'benchmarks.{bname}.task': {exc}"
                continue
            yield from lmeval_tasks.check(bname, spec)
            yield from _check_benchmark_overrides(bname, bench, spec, check_files)
            continue
        if task not in known:
            yield (
                f"config key 'benchmarks.{bname}': unknown benchmark '{task}'; "
                f"the registry has: {', '.join(known)} (set `task:` to one of them, or declare it "
                "in a YAML file under one of benchmark_dirs)"
            )
            continue
        spec = registry.load(task, dirs)
        where = registry.path_of(task, dirs)
        missing = [k for k in registry.REQUIRED_KEYS if k not in spec]
        if missing:
            yield f"benchmark '{task}' ({where}): missing keys {missing}; see scripts/deltaflow/registry/README.md"
            continue
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
    # axis lookups need every benchmark in the registry (an unknown one was reported above)
    if all(bench.get("task", b) in known for b, bench in config["benchmarks"].items()):
        yield from _check_tables(config)


def _check_local_base(src: dict):
    """A `type: local` base: a transformers model folder (config.json), or a folder holding `file`
    (a GGUF), relative to the working directory like every path of the config."""
    where = f"(paths are relative to the working directory {os.getcwd()})"
    path = Path(src["path"])
    if not path.is_dir():
        what = "is a file, not a model folder" if path.exists() else "does not exist"
        yield f"config key 'base_model.source.path': '{src['path']}' {what} {where}"
    elif src.get("file") and not (path / src["file"]).is_file():
        yield (
            f"config key 'base_model.source.file': '{src['file']}' is not in the folder "
            f"'{src['path']}' {where}"
        )
    elif not src.get("file") and not (path / "config.json").is_file():
        yield (
            f"config key 'base_model.source.path': '{src['path']}' holds no config.json, so it is "
            f"not a transformers model folder {where}; give the folder save_pretrained wrote "
            "(or a folder with a GGUF and `file`)"
        )


def _check_scoring(spec: dict):
    """A generation benchmark's match kind and its metric agree (before any job)."""
    from .scoring import MATCH_METRICS

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
        if chosen != spec["metric"]:
            yield (
                f"{key}: '{chosen}': a judged benchmark's score is the judge's {spec['metric']}; "
                f"remove metric (or set it to {spec['metric']})"
            )
        return
    recorded = recorded_metrics(spec)
    if chosen not in recorded:
        k = spec.get("decoding", {}).get("samples", 1)
        yield (
            f"{key}: '{chosen}' is not a metric '{bname}' records ({spec['output_type']}"
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


def _check_runs(config: dict):
    """Objective vs mixture kind, and init_from chains."""
    runs = config["runs"]
    for rname, run in runs.items():
        mix, recipe = config["mixtures"].get(run["mixture"]), config["recipes"].get(run["recipe"])
        if mix is None or recipe is None:
            continue  # reported above
        kind, objective = mix.get("kind", "sft"), recipe.get("objective", "sft")
        if kind == "preference" and objective != "dpo":
            yield (
                f"config key 'runs.{rname}.recipe': '{run['mixture']}' is a preference mixture "
                f"(chosen/rejected pairs) but recipe '{run['recipe']}' has objective {objective}; "
                "use a recipe with objective: dpo"
            )
        if kind != "preference" and objective == "dpo":
            yield (
                f"config key 'runs.{rname}.mixture': recipe '{run['recipe']}' trains DPO, which "
                f"needs a `kind: preference` mixture; '{run['mixture']}' is {kind}"
            )
        if objective == "cpt":
            yield from _check_cpt_mixture(config, rname, run)
        if objective == "grpo" and kind != "preference":
            yield from _check_reward_prompts(config, rname, run)
        init = run.get("init_from")
        if init is None:
            continue
        if (
            init in runs
            and objective == "cpt"
            and config["recipes"].get(runs[init]["recipe"], {}).get("objective", "sft") != "cpt"
        ):
            yield (
                f"config key 'runs.{rname}.init_from': continued pretraining on top of '{init}', an "
                f"{config['recipes'][runs[init]['recipe']].get('objective', 'sft')} run: the order is CPT "
                "then SFT (knowledge first, behaviour on top); SFT then CPT trains the behaviour away. "
                "Train the CPT run from the base and give the SFT run init_from the CPT run"
            )
        if init not in runs or init == rname:
            yield (
                f"config key 'runs.{rname}.init_from': '{init}' is not another run; "
                f"known: {', '.join(sorted(r for r in runs if r != rname))}"
            )
            continue
        seen, cur = {rname}, init
        while cur is not None and cur in runs:
            if cur in seen:
                yield f"config key 'runs.{rname}.init_from': the init_from chain loops back to '{cur}'"
                break
            seen.add(cur)
            cur = runs[cur].get("init_from")
        if recipe.get("new_tokens"):
            yield (
                f"config key 'recipes.{run['recipe']}.new_tokens': run '{rname}' continues "
                f"'{init}' (init_from) and keeps its vocabulary; new tokens are added by the "
                "first run of the chain"
            )
        init_recipe = config["recipes"].get(runs[init]["recipe"], {})
        if init_recipe.get("load_in_4bit", False) != recipe.get("load_in_4bit", False):
            yield (
                f"config key 'runs.{rname}.init_from': '{init}' and this run differ in "
                "load_in_4bit; continue an adapter on the same base precision"
            )
        yield from _check_continued_peft(config, rname, run, recipe)


def _same_setting(a, b) -> bool:
    if isinstance(a, list) and isinstance(b, list):  # target_modules: a set of module names
        return sorted(map(str, a)) == sorted(map(str, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


def _check_continued_peft(config: dict, rname: str, run: dict, recipe: dict):
    """A run that continues an adapter (init_from) trains it as it is: PEFT loads the parent's
    adapter with its own method, rank, alpha, dropout, target modules and rsLoRA scaling, and the
    recipe's PEFT keys (schema defaults filled) would be ignored. Any difference is refused."""
    runs, chain, cur = config["runs"], [], run["init_from"]
    while cur in runs and cur not in chain and cur != rname:
        chain.append(cur)
        cur = runs[cur].get("init_from")
    if cur is not None:
        return  # a loop or an unknown run: reported above
    graph = ModelGraph(config)
    origin = graph.adapter_origin(run["init_from"])
    have = graph.peft_settings(run["init_from"])

    def show(v):
        return str(v).lower() if isinstance(v, bool) else repr(v)

    diffs = [
        f"{k} {show(recipe[k])} differs from {show(have[k])}"
        for k in PEFT_KEYS
        if k in recipe and k in have and not _same_setting(recipe[k], have[k])
    ]
    if not diffs:
        return
    made = f"runs.{origin}.recipe '{runs[origin]['recipe']}'"
    parent = run["init_from"]
    src = f"'{parent}', {made}" if origin == parent else f"'{parent}', first trained by {made}"
    yield (
        f"config key 'runs.{rname}.recipe': recipe '{run['recipe']}': {'; '.join(diffs)} of the adapter "
        f"it continues ({src}); the parent adapter is continued as it is, its PEFT settings with it — "
        f"use the same PEFT settings ({', '.join(PEFT_KEYS)}) or train from the base (no init_from)"
    )


def _check_cpt_mixture(config: dict, rname: str, run: dict):
    """A CPT run trains on raw text: every component is a `format: text` dataset, or general
    replay (`profile: replay`), whose chat rows join as text through the chat template."""
    mix = config["mixtures"][run["mixture"]]
    if mix.get("kind", "sft") == "preference":
        return  # reported as a preference/objective mismatch
    for i, comp in enumerate(mix["components"]):
        ds = config["datasets"].get(comp["dataset"])
        is_text = ds is not None and ds.get("format") == "text"
        if not is_text and comp.get("profile") != "replay":
            what = f"'{comp['dataset']}' has chat rows" if ds is None or ds.get("format") != "text" else ""
            yield (
                f"config key 'mixtures.{run['mixture']}.components[{i}]': run '{rname}' is continued "
                f"pretraining (objective cpt) and {what or comp['dataset']}; CPT trains on raw text "
                "(a `format: text` dataset). Mark general replay with `profile: replay` (its chat rows "
                "join as text), or train chat rows with an sft run on top (init_from)"
            )


def _check_reward_prompts(config: dict, rname: str, run: dict):
    """Code and instruction rewards check each completion with its prompt row's tests or
    instructions. Task-pack rows (`type: generated`) and model-written rows (`generations`)
    never carry them: such a component cannot fit the reward, known before any job (a file's
    rows are checked when the run starts: deltaflow.rewards.check_reward_rows)."""
    recipe = config["recipes"][run["recipe"]]
    dirs = benchmark_dirs(config)
    kinds = {}
    for i, spec in enumerate(recipe["rewards"]):
        b = (spec.get("verifier") or {}).get("benchmark")
        if b and b in registry.available(dirs):
            out_type = registry.load(b, dirs).get("output_type")
            if out_type in CHECK_FIELDS:
                kinds.setdefault(out_type, f"rewards[{i}] ({b})")
    for i, comp in enumerate(config["mixtures"][run["mixture"]]["components"]):
        what = rows_without_checks(config, comp["dataset"])
        for out_type, reward in kinds.items() if what else ():
            field = CHECK_FIELDS[out_type]
            yield (
                f"config key 'mixtures.{run['mixture']}.components[{i}]': run '{rname}' rewards completions with "
                f"{reward} of recipe '{run['recipe']}', which checks each prompt row's {field}; "
                f"'{comp['dataset']}' is {what} and has none: the prompts do not fit the reward. Use a "
                f"dataset whose rows carry {field}, or a reward that fits these prompts "
                "(e.g. {verifier: {benchmark: arithmetic}})"
            )


def _check_recipe_length(rname: str, recipe: dict):
    """max_steps or epochs (neither: 100 steps, filled in here), and save_every against them."""
    key = f"config key 'recipes.{rname}"
    steps, epochs, every = recipe.get("max_steps"), recipe.get("epochs"), recipe.get("save_every")
    if steps and epochs:
        yield f"{key}': give max_steps or epochs, not both"
        return
    if not steps and not epochs:
        recipe["max_steps"] = steps = 100
    if epochs and isinstance(every, int):
        yield (
            f"{key}.save_every': with epochs the step count follows from the mixture's size, "
            "unknown before it is built, so checkpoints are per epoch: save_every: epoch"
        )
    elif steps and every == "epoch":
        yield f"{key}.save_every': `epoch` needs a recipe with epochs (this one has max_steps)"
    elif steps and every and every >= steps:
        yield (
            f"{key}.save_every': {every} is not below max_steps ({steps}), so no checkpoint "
            "would be saved; lower it or remove it"
        )


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


def _check_merges_and_exports(config: dict):
    """Sweeps, merges and exports refer to known adapters that PEFT can combine linearly."""
    graph = ModelGraph(config)
    runs_and_ckpts = [*sorted(config["runs"]), *graph.checkpoints]
    merges = config.get("merges", {})
    for name, spec in merges.items():
        key = f"merges.{name}"
        if name in config["runs"]:
            yield f"config key '{key}': the name is also a run; give the merge a distinct name"
        ranks = {}
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
    adapters = [*runs_and_ckpts, *sorted(merges)]
    for model, coefs in config.get("sweeps", {}).items():
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
    all_adapters = [m for m in graph.names if graph.node(m).adapter_dir]
    for i, model in enumerate(config.get("export", {}).get("models", [])):
        if model not in all_adapters:
            yield (
                f"config key 'export.models[{i}]': '{model}' is not an adapter model; "
                f"known: {', '.join(all_adapters)}"
            )
    prompts = config.get("export", {}).get("parity", {}).get("prompts")
    if prompts and not Path(prompts).exists():
        yield f"config key 'export.parity.prompts': file '{prompts}' does not exist"


def benchmark_axis(config: dict, name: str) -> str:
    bench = config["benchmarks"][name]
    if is_lm_eval_task(bench.get("task", name)):
        return bench.get("axis", "lm_eval")
    return bench.get("axis") or registry.load(bench.get("task", name), benchmark_dirs(config))["axis"]


def benchmark_axes(config: dict) -> dict[str, str]:
    return {b: benchmark_axis(config, b) for b in sorted(config["benchmarks"])}


def _check_tables(config: dict):
    models = ModelGraph(config).names
    tables = config.get("tables", {})
    for i, pair in enumerate(tables.get("comparisons", [])):
        for side in ("left", "right"):
            if pair[side] not in models:
                yield (
                    f"config key 'tables.comparisons[{i}].{side}': unknown model "
                    f"'{pair[side]}'; known: {', '.join(models)}"
                )
        if pair["left"] == pair["right"]:
            yield f"config key 'tables.comparisons[{i}]': compares '{pair['left']}' with itself"
    for ref, spec in tables.get("references", {}).items():
        if ref in models:
            yield (
                f"config key 'tables.references.{ref}': the name is also an evaluated model; "
                "give the reference a distinct display name"
            )
        for b in spec["scores"]:
            if b not in config["benchmarks"]:
                yield (
                    f"config key 'tables.references.{ref}.scores.{b}': unknown benchmark; "
                    f"known: {', '.join(sorted(config['benchmarks']))}"
                )
    axes = sorted(set(benchmark_axes(config).values()))
    gates = config.get("gates", {})
    for kind in ("target", "guarded"):
        for axis in gates.get(kind, {}):
            if axis not in axes:
                yield (
                    f"config key 'gates.{kind}.{axis}': no benchmark has axis '{axis}'; "
                    f"axes: {', '.join(axes)} (set benchmarks.<name>.axis to regroup)"
                )
    both = sorted(set(gates.get("target", {})) & set(gates.get("guarded", {})))
    if both:
        yield (
            f"config key 'gates': axes {both} are both target and guarded; an axis is "
            "either improved or protected"
        )


PREFERENCE_FORMATS = ("sharegpt_preference", "messages")


def _check_mixture(config: dict, mname: str, mix: dict, names: list[str]):
    """Mixture keys that refer to other sections, checked before any job runs."""
    key = f"mixtures.{mname}"
    benchmarks = config["benchmarks"]
    for i, comp in enumerate(mix["components"]):
        gen = (config.get("generations") or {}).get(comp["dataset"])
        if gen is not None and (mix.get("kind", "sft") == "preference") != (gen["mode"] == "pairs"):
            yield (
                f"config key '{key}.components[{i}].dataset': generation '{comp['dataset']}' writes "
                f"{'preference pairs' if gen['mode'] == 'pairs' else 'SFT rows'} (mode {gen['mode']}) and the "
                f"mixture is kind {mix.get('kind', 'sft')}"
            )
        ds = config["datasets"].get(comp["dataset"], {})
        fmt = ds.get("format")
        if mix.get("kind") == "preference" and ds.get("type") == "generated":
            yield (
                f"config key '{key}.components[{i}].dataset': a preference mixture needs "
                f"chosen/rejected pairs; '{comp['dataset']}' is a generated SFT task"
            )
        elif mix.get("kind") == "preference" and fmt and fmt not in PREFERENCE_FORMATS:
            yield (
                f"config key '{key}.components[{i}].dataset': a preference mixture needs a "
                f"preference format ({', '.join(PREFERENCE_FORMATS)}), dataset "
                f"'{comp['dataset']}' is '{fmt}'"
            )
        elif mix.get("kind", "sft") == "sft" and fmt == "sharegpt_preference":
            yield (
                f"config key '{key}.kind': component '{names[i]}' draws preference pairs "
                f"from '{comp['dataset']}'; set kind: preference (or use an SFT dataset)"
            )
        if comp.get("labels_from") and comp["labels_from"] not in benchmarks:
            yield (
                f"config key '{key}.components[{i}].labels_from': unknown benchmark "
                f"'{comp['labels_from']}'; known: {', '.join(sorted(benchmarks))}"
            )
        elif comp.get("labels_from") and is_lm_eval_task(
            benchmarks[comp["labels_from"]].get("task", comp["labels_from"])
        ):
            yield (
                f"config key '{key}.components[{i}].labels_from': benchmark '{comp['labels_from']}' is lm-eval's "
                f"task '{benchmarks[comp['labels_from']].get('task', comp['labels_from'])}', whose answers are read by "
                "the task's own filters (its filter_list), which deltaflow does not apply to training rows: labels "
                "would be compared as whole strings. Name a packaged or benchmark_dirs benchmark with the same "
                "answers, or drop labels_from"
            )
    chosen = (mix.get("decontamination") or {}).get("benchmarks") or []
    for b in chosen:
        if b not in benchmarks:
            yield (
                f"config key '{key}.decontamination.benchmarks': unknown benchmark '{b}'; "
                f"known: {', '.join(sorted(benchmarks))}"
            )
    groups = set(names) | {c.get("profile", n) for c, n in zip(mix["components"], names)}
    for bound in ("min_share", "max_share"):
        for target in mix.get(bound) or {}:
            if target not in groups:
                yield (
                    f"config key '{key}.{bound}.{target}': no component or profile named "
                    f"'{target}'; known: {', '.join(sorted(groups))}"
                )
    shares = [c["share"] for c in mix["components"] if "share" in c]
    if shares:
        basis = mix.get("share_basis", "rows")
        total_key = "total_rows" if basis == "rows" else "total_tokens"
        if len(shares) == len(mix["components"]):
            if abs(sum(shares) - 1) > 1e-6:
                yield (
                    f"config key '{key}.components': every component has a share, so the "
                    f"shares must sum to 1 (they sum to {sum(shares):g})"
                )
            if total_key not in mix:
                yield (
                    f"config key '{key}.{total_key}': every component has a share, so give the "
                    f"mix size as {total_key} (share_basis is {basis})"
                )
        elif sum(shares) >= 1:
            yield (
                f"config key '{key}.components': share targets sum to {sum(shares):g}; beside "
                "fixed-weight components they must sum to less than 1"
            )


def benchmark_dirs(config: dict) -> tuple:
    """The user's own benchmark registry folders (config ``benchmark_dirs``)."""
    return tuple(config.get("benchmark_dirs") or ())


def benchmark_spec(config: dict, name: str) -> dict:
    """The registry definition merged with this config's subset/decoding overrides."""
    bench = config["benchmarks"][name]
    task = bench.get("task", name)
    if is_lm_eval_task(task):
        spec = lmeval_tasks.registry_spec(task, bench)
        spec["task"] = task
    else:
        spec = registry.load(task, benchmark_dirs(config))  # a fresh copy; safe to update
    spec["name"] = name
    spec["n"] = bench.get("n", spec.get("n"))
    spec["seed"] = bench.get("seed", 1234)
    spec.setdefault("decoding", {})
    if "max_gen_toks" in bench:
        spec["decoding"]["max_gen_toks"] = bench["max_gen_toks"]
    spec["decoding"].update(bench.get("decoding") or {})
    # silent-generation thresholds: eval.guards, then the registry's, then this benchmark's
    spec["guards"] = {
        **config.get("eval", {}).get("guards", {}),
        **spec.get("guards", {}),
        **bench.get("guards", {}),
    }
    if "dataset" in bench:
        spec["source"]["dataset"] = bench["dataset"]
    if "source" in bench:  # the same benchmark read from a hub id or a local file
        spec["source"] = dict(bench["source"])
    if bench.get("fewshot"):  # where the few-shot examples come from (benchmarks.choose_shots)
        spec["fewshot"] = {**(spec.get("fewshot") or {}), **bench["fewshot"]}
    if bench.get("judge"):  # a judged benchmark (deltaflow.judging): the judge's verdicts are the score
        spec["judge"] = dict(bench["judge"])
        spec["metric"] = headline_metric(spec)
    elif bench.get("metric") and not is_lm_eval_task(task):  # the headline (scoring.primary_metric)
        spec["headline"] = bench["metric"]
    return spec


def recorded_metrics(spec: dict) -> list[str]:
    """The per-item metrics a packaged or declared benchmark's records carry
    (scoring.score_output), each of which can be its headline (``benchmarks.<name>.metric``)."""
    from .ifeval import METRICS as IFEVAL_METRICS
    from .scoring import MATCH_METRICS, match_kind, samples_of

    k = samples_of(spec)
    sampled = [f"mean@{k}", "pass@1", *([f"pass@{k}"] if k > 1 else [])]
    out = {
        "multiple_choice": ["acc", "acc_norm"],
        "generate_until": [MATCH_METRICS.get(match_kind(spec), "exact_match"), *sampled, f"maj@{k}"],
        "code": ["pass", *sampled],
        "instruction": [*IFEVAL_METRICS, *sampled],
    }.get(spec["output_type"], [])
    return [*out, *(m for m in spec.get("metric_keys", ()) if m not in out)]
