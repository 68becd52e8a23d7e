"""Config checks of recipes and runs, before any job: the training world (strategy, device,
processes), each recipe's batch, precision, length, scheduler, rollouts and GRPO rewards, and
each run's mixture and recipe (objective against the mixture kind, CPT text, reward prompts,
init_from chains and the PEFT settings a continued adapter keeps).

deltaflow.config runs ``check_recipes`` then ``check_runs`` (its ``CHECKS``); both yield
error messages. Nothing heavy is imported: ``scheduler_names`` reads transformers' source
rather than importing it, since every Snakefile parse runs these checks.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
from pathlib import Path

from ..bench import registry
from ..bench.from_config import benchmark_dirs
from ..datasets import dataset_splits, row_format
from ..generation import CHECK_FIELDS, rows_without_checks
from ..io import load_yaml
from ..models import PEFT_KEYS, ModelGraph
from . import trainer_args
from .objective import RL_OBJECTIVES
from .rewards import check_rewards, judge_specs
from .world import processes_for

# transformers schedulers that adapt the learning rate to a validation loss
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


def _check_early_stopping(rname: str, recipe: dict):
    """Early stopping watches a validation loss: it needs val_rows, an objective that computes
    one, and no checkpoint arms past a stop that cannot be known before the run."""
    if not recipe.get("early_stopping"):
        return
    key = f"config key 'recipes.{rname}.early_stopping'"
    if recipe["objective"] in RL_OBJECTIVES:
        yield (
            f"{key}: objective {recipe['objective']} computes no validation loss (its trainer "
            "samples and rewards); stop on steps, or save_every and let the selection choose"
        )
    elif not has_validation(recipe):
        yield f"{key}: it stops on the validation loss, and this recipe has none; set val_rows or val_dataset (and eval_every)"
    if recipe["save_every"]:
        yield (
            f"{key}: with save_every, the checkpoint arms are declared before the run and those "
            "after an early stop would not exist; use one of the two (early stopping keeps the "
            "best adapter as the run's)"
        )


def _check_online_dpo(rname: str, recipe: dict):
    """online_dpo samples two completions per prompt with TRL's own loss and DPO's beta: grpo's
    num_generations, loss_type and kl_beta would be ignored; vLLM rollouts are not wired for it."""
    if recipe["objective"] != "online_dpo":
        return
    if recipe["method"] == "full" or recipe["reference"] != _recipe_default("reference"):
        # TRL's OnlineDPOTrainer copies the model it starts from as the reference (no PEFT
        # adapters to disable): a whole model, or reference: init, would not be anchored as said
        yield (
            f"config key 'recipes.{rname}': online_dpo anchors to the base by disabling the adapter; "
            "use a LoRA/DoRA method and the default reference"
        )
    for key, use in (
        ("num_generations", "online DPO samples two completions per prompt"),
        ("loss_type", "a GRPO loss type; online DPO's loss is DPO's"),
        ("kl_beta", "online DPO's pull toward the reference is DPO's `beta`"),
        ("rollouts", "online DPO samples with HF generate here"),
    ):
        if not _same_setting(recipe[key], _recipe_default(key)):
            yield f"config key 'recipes.{rname}.{key}': {use}; remove {key}"


def has_validation(recipe: dict) -> bool:
    """Whether a recipe computes a validation loss: held-out rows or a validation dataset."""
    return bool(recipe["val_rows"] or recipe.get("val_dataset"))


def _check_val_dataset(config: dict, rname: str, recipe: dict):
    """``val_dataset``: a dataset (or generation) of the config with that split, not with val_rows."""
    val = recipe.get("val_dataset")
    if not val:
        return
    key = f"config key 'recipes.{rname}.val_dataset"
    if recipe["val_rows"]:
        yield f"{key}': a validation set, and val_rows holds rows out as well; give one of the two"
    known = {**config["datasets"], **(config.get("generations") or {})}
    if val["dataset"] not in known:
        yield f"{key}.dataset': unknown dataset '{val['dataset']}'; known: {', '.join(sorted(known))}"
        return
    splits = dataset_splits(known[val["dataset"]])
    if val.get("split") and val["split"] not in splits:
        yield f"{key}.split': dataset '{val['dataset']}' has splits {splits}, not '{val['split']}'"
    elif not val.get("split") and len(splits) > 1:  # all of them would mix train rows in
        yield f"{key}.split': dataset '{val['dataset']}' has splits {splits}; name the validation one"
    if recipe["objective"] in RL_OBJECTIVES:
        yield f"{key}': objective {recipe['objective']} computes no validation loss; remove val_dataset"
        return
    ds = config["datasets"].get(val["dataset"])
    layout = row_format(ds) if ds else None  # a generation's rows are checked by the generation
    if recipe["objective"] == "dpo" and layout not in (None, "preference", "sharegpt_preference", "messages"):
        yield f"{key}.dataset': objective dpo validates on chosen/rejected pairs; '{val['dataset']}' has none"
    if recipe["objective"] == "sft" and layout in ("preference", "sharegpt_preference", "text"):
        yield f"{key}.dataset': objective sft validates on chat rows; '{val['dataset']}' holds {layout} rows"


# the recipe keys that only describe an adapter: set away from their defaults, a full fine-tune
# would ignore them
ADAPTER_ONLY_KEYS = ("r", "alpha", "dropout", "target_modules", "use_rslora", "load_in_4bit")


def _check_full(rname: str, recipe: dict):
    """``method: full`` trains every weight: the adapter settings would be ignored; refused."""
    if recipe["method"] != "full":
        return
    for key in ADAPTER_ONLY_KEYS:
        if not _same_setting(recipe[key], _recipe_default(key)):
            yield (
                f"config key 'recipes.{rname}.{key}': an adapter setting, and method full trains the "
                f"whole model (no adapter); remove {key}, or use method lora / dora"
            )


@functools.cache
def _recipe_default(key: str):
    """A recipe key's default, read from the config schema (its one home)."""
    schema = load_yaml(Path(__file__).parents[1] / "schema.yaml", what="config schema")
    return schema["$defs"]["recipe"]["properties"][key]["default"]


def check_recipes(config: dict, *, check_files: bool):
    """The training world, and every recipe: its batch over the training processes, QLoRA and
    fp16 on the device, its length, scheduler, rollouts and (grpo) rewards. ``check_files``:
    unused (no recipe key names a file)."""
    train = config["train"]
    processes = processes_for(train)
    if train["strategy"] == "fsdp" and train["device"] != "cuda":
        yield (
            "config key 'train.strategy': fsdp shards the model over GPUs and train.device is cpu; "
            "use strategy: ddp on cpu (or train.device: cuda)"
        )
    elif train["strategy"] == "fsdp" and processes == 1:
        yield (
            "config key 'train.strategy': fsdp shards the model over the training processes and "
            "this job trains on one (train.gpus / train.processes): one process would hold the "
            "whole model unsharded. Give it 2 or more GPUs (train.gpus, and train.processes null "
            "or equal), or use strategy: ddp"
        )
    used = {run["recipe"] for run in config["runs"].values()}
    for rname, recipe in config["recipes"].items():
        if rname in used and recipe["batch_size"] % processes:
            yield (
                f"config key 'recipes.{rname}.batch_size': {recipe['batch_size']} does not split over "
                f"{processes} training processes (train.processes / train.gpus); the batch is global: "
                f"make it a multiple of {processes}"
            )
        if recipe["load_in_4bit"] and config["train"]["device"] != "cuda":
            yield (
                f"config key 'recipes.{rname}.load_in_4bit': QLoRA (a 4-bit base through "
                "bitsandbytes) needs a CUDA GPU and train.device is cpu; set train.device: cuda "
                "(and train.gpus) on a GPU machine, or load_in_4bit: false"
            )
        yield from _check_full(rname, recipe)
        yield from _check_val_dataset(config, rname, recipe)
        if recipe["packing"] is not False and recipe["objective"] not in ("sft", "cpt"):
            yield (
                f"config key 'recipes.{rname}.packing': packing is TRL's SFT option (objectives sft and "
                f"cpt); objective {recipe['objective']} does not pack — remove it"
            )
        yield from _check_recipe_length(rname, recipe)
        yield from _check_scheduler(rname, recipe)
        yield from trainer_args.check(rname, recipe)
        if recipe["rollouts"] == "vllm" and (
            recipe["objective"] not in RL_OBJECTIVES or train["device"] != "cuda"
        ):
            yield (
                f"config key 'recipes.{rname}.rollouts': vllm samples GRPO's or RLOO's completions through "
                "TRL's colocated vLLM, which needs objective grpo or rloo and a CUDA GPU (train.device: cuda); "
                f"this recipe is objective {recipe['objective']} on train.device {train['device']}: "
                "use rollouts: hf"
            )
        yield from _check_online_dpo(rname, recipe)
        if rname in used and processes > 1 and judge_specs(recipe["rewards"]):
            yield (
                f"config key 'recipes.{rname}.rewards': a judge reward judges from one training process "
                "(an in-process judge loads beside the policy; any judge's cache of judgments has one "
                f"writer), and this recipe trains on {processes} processes (train.processes / train.gpus): "
                "set train.processes: 1"
            )
        if recipe["objective"] == "rloo" and recipe["loss_type"] != _recipe_default("loss_type"):
            yield (
                f"config key 'recipes.{rname}.loss_type': a GRPO loss type, and RLOOTrainer has no "
                "loss_type (its advantage is the leave-one-out baseline); remove it, or use objective grpo"
            )
        yield from _check_early_stopping(rname, recipe)
        if recipe["objective"] in RL_OBJECTIVES:
            dirs = benchmark_dirs(config)
            yield from check_rewards(
                rname, recipe, dirs, registry.available(dirs), lambda b, dirs=dirs: registry.load(b, dirs)
            )
        if recipe["precision"] == "fp16" and config["train"]["device"] != "cuda":
            yield (
                f"config key 'recipes.{rname}.precision': fp16 mixed precision needs a CUDA GPU "
                "and train.device is cpu; use auto, fp32 or bf16"
            )


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
    elif needs := trainer_args.scheduler_kwargs_missing(recipe):
        yield (
            f"{key}: '{name}' needs {' or '.join(needs)}: give it in "
            f"recipes.{rname}.trainer_args.lr_scheduler_kwargs (e.g. {{{needs[-1]}: 0.1}})"
        )
    elif name in SCHEDULERS_ON_VALIDATION and not has_validation(recipe):
        yield (
            f"{key}: '{name}' adapts the learning rate to the validation loss, and this recipe "
            "has none; set val_rows (and eval_every), or use a fixed schedule such as cosine"
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


def check_runs(config: dict, *, check_files: bool):
    """Every run names a known mixture and recipe; then the objective against the mixture and
    the init_from chains (``_check_runs``). ``check_files``: unused (no run key names a file)."""
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


def _check_runs(config: dict):
    """Objective vs mixture kind, and init_from chains."""
    runs = config["runs"]
    for rname, run in runs.items():
        mix, recipe = config["mixtures"].get(run["mixture"]), config["recipes"].get(run["recipe"])
        if mix is None or recipe is None:
            continue  # reported above
        kind, objective = mix["kind"], recipe["objective"]
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
        if objective in RL_OBJECTIVES and kind != "preference":
            yield from _check_reward_prompts(config, rname, run)
        if objective in RL_OBJECTIVES:
            yield from _check_judge_models(config, rname, run)
        init = run.get("init_from")
        if init is None:
            continue
        yield from _check_init_from(config, rname, run, recipe, objective)


def _check_init_from(config: dict, rname: str, run: dict, recipe: dict, objective: str):
    """A run continuing another (``init_from``): CPT before SFT, a known run, no loop, the
    parent's vocabulary, base precision and PEFT settings."""
    if objective == "online_dpo":  # TRL would anchor to a copy of the continued adapter
        yield (
            f"config key 'runs.{rname}.init_from': online_dpo anchors to the base by disabling the "
            "adapter it trains; TRL takes a continued adapter's copy as its reference instead — "
            "train the online_dpo run from the base"
        )
        return
    runs, init = config["runs"], run["init_from"]
    if init in runs and objective == "cpt" and config["recipes"][runs[init]["recipe"]]["objective"] != "cpt":
        yield (
            f"config key 'runs.{rname}.init_from': continued pretraining on top of '{init}', an "
            f"{config['recipes'][runs[init]['recipe']]['objective']} run: the order is CPT "
            "then SFT (knowledge first, behaviour on top); SFT then CPT trains the behaviour away. "
            "Train the CPT run from the base and give the SFT run init_from the CPT run"
        )
    if init not in runs or init == rname:
        yield (
            f"config key 'runs.{rname}.init_from': '{init}' is not another run; "
            f"known: {', '.join(sorted(r for r in runs if r != rname))}"
        )
        return
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
    if init_recipe.get("load_in_4bit", False) != recipe["load_in_4bit"]:
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
    if mix["kind"] == "preference":
        return  # reported as a preference/objective mismatch
    for i, comp in enumerate(mix["components"]):
        ds = config["datasets"].get(comp["dataset"])
        is_text = ds is not None and row_format(ds) == "text"
        if not is_text and comp.get("profile") != "replay":
            what = f"'{comp['dataset']}' has chat rows" if not is_text else ""
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
    rows are checked when the run starts: deltaflow.training.rewards.check_reward_rows)."""
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


def _check_judge_models(config: dict, rname: str, run: dict):
    """A judge reward's judge named as a workflow model (``judge.model``): a known model, not one
    made from this run (its judge would be trained by the run it judges), on the run's base."""
    graph = None
    for i, spec in enumerate(config["recipes"][run["recipe"]]["rewards"]):
        model = (spec.get("judge") or {}).get("model")
        if not model:
            continue
        graph = graph or ModelGraph(config)
        key = f"config key 'recipes.{run['recipe']}.rewards[{i}].judge.model'"
        if model not in graph:
            yield f"{key}: {model!r} is not a model of this workflow; known: {', '.join(graph.names)}"
        elif model == rname or rname in graph.runs_behind(model):
            yield (
                f"{key}: run '{rname}' would be judged by {model!r}, which is made from run '{rname}' "
                "itself; judge with the base, a model trained before this run, or a path / hub judge"
            )
        elif graph.base_of(model) != graph.base_of(rname):  # the judge loads on the run's base
            yield (
                f"{key}: {model!r} builds on base '{graph.base_of(model)}' and run '{rname}' on "
                f"'{graph.base_of(rname)}'; a workflow model judges on the run's own base: use a model "
                "of that base, or give the judge as a path / hub judge"
            )
