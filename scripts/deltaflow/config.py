"""Config loading and validation.

The JSON schema (``schema.yaml`` beside this module) checks shapes and fills defaults; then
``CHECKS``, the checks that follow references between sections (a mixture naming an unknown
dataset, a benchmark missing from the registry, a file that does not exist), run in order, so
that every error is raised before any job starts, naming the config key and the fix. Each check
lives beside what it checks: datasets and basemodel (files), mixture, training.checks (recipes,
runs), graph_checks (generations and origins, merges, sweeps, exports, the eval backend),
bench.checks (benchmarks) and tables (tables, gates). ``CHECKS`` is one explicit tuple here,
not a registration each module makes on import: the order of the tuple is the order of the
report, and later checks rely on earlier ones, so the order is written down in one place.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from pathlib import Path

import jsonschema
import yaml

from . import basemodel, datasets, graph_checks, mixture, outside, release, suites, tables, tracking, viewer
from .bench import checks as bench_checks
from .bench import scorer
from .bench.lmeval import expand_groups
from .errors import ConfigError
from .gguf_export import GGUF_TYPES
from .grid import expand_grids
from .io import read_config_file
from .seeds import expand_seeds, is_seed_arm
from .training import checks as training_checks

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = Path(__file__).with_name("schema.yaml")


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
            if isinstance(err.schema, dict) and "x-message" in err.schema:  # the schema's own words
                msg, hint = err.schema["x-message"], ""
            if err.validator in ("additionalProperties", "enum"):  # short: the key, the value, the fix
                lines.extend(
                    f"config key '{_key(p)}': {m}" for p, m in _short_errors(err, list(err.absolute_path))
                )
                continue
            path = list(err.absolute_path)
            if err.validator == "required":  # name the missing key itself
                missing = re.match(r"'(.+)' is a required property", err.message)  # one error per key
                path += [missing.group(1)] if missing else []
                if desc.startswith("required for "):  # the schema's per-type if/then
                    msg, hint = desc.strip(), ""
            lines.append(f"config key '{_key(path)}': {msg}{hint}")
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines))
    expand_grids(config, _recipe_validator(schema))
    problems = (
        expand_groups(config)
        + expand_seeds(config)
        + list(_check_references(config, check_files=check_files))
    )
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    return config


# Keys and values deltaflow knows and does not support, with the reason and what to do instead:
# reported as such, never as a misspelling. Keys are dotted config paths; `*` stands for a name.
UNSUPPORTED_KEYS = {
    "recipes.*.early_stopping_patience": (
        "early stopping is its own key: early_stopping: {patience: <n>, min_delta: <loss>}"
    ),
    "recipes.*.max_grad_norm": (
        "it is a setting of the objective's TRL config: give it under trainer_args "
        "(trainer_args: {max_grad_norm: 0.5})"
    ),
    "recipes.*.warmup_steps": (
        "give the warmup as warmup_ratio (a fraction of the steps), or as trainer_args: {warmup_steps: <n>}"
    ),
}
UNSUPPORTED_VALUES = {
    ("recipes.*.objective", "ppo"): (
        "TRL 1.x no longer ships PPO; its trainers are SFT, DPO, GRPO, RLOO, KTO, Reward and "
        "Distillation. deltaflow trains {allowed}: for on-policy RL from a reward use rloo (TRL's "
        "REINFORCE leave-one-out, the closest to PPO) or grpo (rewards: verifiers or format "
        "regexes), for preference pairs dpo"
    ),
}


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
    """``instance`` checked against ``$defs/<definition>`` of deltaflow/schema.yaml with its
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


# The checks that follow references between sections, each beside what it checks (its
# concept's module), run in this order: one explicit tuple rather than registration from the
# modules themselves, because the order is the order of the report and some checks rely on an
# earlier one (check_recipes fills in a recipe's max_steps before the runs and the model graph
# read it; the generation checks run once the mixtures' datasets are known; the tables' axes
# are read once every benchmark is), so it is written in one place, and importing a module
# cannot add or reorder a check. Each is a generator ``(config, *, check_files)`` of messages.
CHECKS = (
    datasets.check_dataset_files,  # a dataset's file or local folder
    datasets.check_dataset_mappings,  # a dataset's mapping parses and fits its file's first rows
    scorer.check_scorers,  # a benchmark's scorer function imports
    basemodel.check_base_model,  # the base model's corpus, folder, chat template
    outside.check_outside_models,  # models we did not train: names, sources, local files
    graph_checks.check_teacher_folders,  # a generation's local teacher folder
    mixture.check_config,  # components, their datasets and splits, shares, decontamination
    datasets.check_prompt_sets,  # a prompt set trained on with SFT, DPO or CPT
    training_checks.check_recipes,  # the training world and every recipe
    training_checks.check_runs,  # every run: mixture, recipe, objective, init_from
    graph_checks.check_merges_and_exports,  # merges, sweeps, exports of known LoRA adapters
    graph_checks.check_generations,  # generations, then the origin policies
    graph_checks.check_eval_backend,  # what vLLM can serve
    bench_checks.check_benchmarks,  # benchmark_dirs and every benchmark
    suites.check_config,  # which models each benchmark runs on
    tables.check_config,  # tables and gates
    release.check_release,  # what is released besides the choice
    tracking.check_config,  # settings the chosen tracker would not read
    viewer.check_config,  # the viewer's environment
)


def _check_references(config: dict, *, check_files: bool):
    """Every check of ``CHECKS`` in turn, one after the other (a check sees what the earlier
    ones filled in)."""
    for check in CHECKS:
        yield from check(config, check_files=check_files)
