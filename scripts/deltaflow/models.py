"""The model graph: every model of a config, what kind it is and what it was made from.

One place answers "what kind of model is this, what made it, and where are its files" for
the workflow (rules/common.smk: wildcards, inputs, adapter folders), the model card (lineage)
and the command line (``deltaflow audit``), so a new kind of model cannot be known to one and
forgotten by another. Kinds:

- ``base``: the base model (results/models/base/), and each extra base of ``base_models:``
  (results/models/bases/<name>/); every other model has one base (``ModelGraph.base_of``), which
  its adapter is applied to and its deltas are measured against
- ``run``: a trained adapter, mixture x recipe, maybe continuing another run (results/adapters/<run>/);
  with ``method: full`` the whole fine-tuned model, in the same folder
- ``checkpoint``: ``<run>@step<N>`` / ``<run>@epoch<N>``, a saved checkpoint of a run
- ``merge``: a ``merges:`` combination of adapters (results/merges/<name>/)
- ``sweep``: ``<model>.x<coef>``, a model's adapter delta scaled by coef (results/merges/<name>/)
- ``merged``: ``<model>.merged``, an adapter folded into the base weights (results/models/merged/<model>/)
- ``gguf``: ``<model>.<type>.gguf``, llama.cpp's conversion of a merged model (results/gguf/<model>/)
- ``outside``: a ``models:`` entry, a model we did not train (a full model, a PEFT adapter on the
  base or a GGUF file), imported into results/models/outside/<name>/ (deltaflow.outside)

Whatever the kind, a model's weights take one of four forms (``ModelNode.form``), which is all the
eval and release code need to know: the base, an adapter on the base, a full model, a GGUF file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

BASE_MANIFEST = "results/models/base/manifest.json"
# the recipe keys that shape an adapter (PEFT's LoraConfig): set by the run that creates it,
# kept by every run that continues it (init_from)
# (load_in_4bit, the base's precision, must match too: deltaflow.training.checks checks it on its own)
PEFT_KEYS = ("method", "r", "alpha", "dropout", "target_modules", "use_rslora")


@dataclass(frozen=True)
class ModelNode:
    name: str
    kind: str
    # the models this one is made from, with the weight each enters with (merges, sweeps)
    parents: tuple[tuple[str, float], ...] = ()
    run: str | None = None  # run / checkpoint: the run; others: None
    tag: str | None = None  # checkpoint: step<N> / epoch<N>
    coef: float | None = None  # sweep: the scale
    gguf_type: str | None = None  # gguf: the llama.cpp type
    details: dict = field(default_factory=dict, compare=False)

    @classmethod
    def from_dict(cls, d: dict) -> ModelNode:
        """Back from ``dataclasses.asdict`` (how rules pass a node to a job as a param)."""
        return cls(**{**d, "parents": tuple(tuple(p) for p in d["parents"])})

    @property
    def form(self) -> str:
        """What the model's weights are: ``base``, ``adapter`` (a PEFT adapter on the base),
        ``full`` (a whole model folder) or ``gguf`` (a GGUF file run by llama.cpp)."""
        if self.kind in ("outside", "run", "checkpoint", "merge", "sweep"):
            return self.details.get("form", "adapter")
        return {"base": "base", "merged": "full", "gguf": "gguf"}[self.kind]

    @property
    def own_dir(self) -> str | None:
        """The folder of the weights this model's own job writes: a run's, a checkpoint's, a
        merge's or a sweep arm's adapter or full model (None for other kinds)."""
        if self.kind == "run":
            return f"results/adapters/{self.name}"
        if self.kind == "checkpoint":
            return f"results/adapters/{self.run}/checkpoints/{self.tag}"
        if self.kind in ("merge", "sweep"):
            return f"results/merges/{self.name}"
        return None

    @property
    def full_dir(self) -> str | None:
        """A full model's folder (weights, tokenizer and manifest); for a GGUF, the folder whose
        tokenizer it runs with. None for the base and adapters."""
        if self.kind == "outside" and self.form not in ("adapter", "served"):
            return outside_dir(self.name)
        if self.kind in ("merged", "gguf"):
            return self.details["exported_dir"]
        return self.own_dir if self.form == "full" else None

    @property
    def gguf_file(self) -> str | None:
        if self.kind == "outside" and self.form == "gguf":
            return f"{outside_dir(self.name)}/{OUTSIDE_GGUF}"
        return gguf_path(self.details["exported"], self.gguf_type) if self.kind == "gguf" else None

    @property
    def adapter_dir(self) -> str | None:
        """The PEFT adapter evaluated for this model (None for the base and full models)."""
        if self.form != "adapter":
            return None
        return outside_dir(self.name) if self.kind == "outside" else self.own_dir

    @property
    def served(self) -> dict | None:
        """A served model's endpoint settings (bench.served), with the folder its import wrote
        the tokenizer to; None for models we load."""
        if self.form != "served":
            return None
        w = self.details.get("weights")
        started = (
            {"weights_path": w["path"], "weights_tokenizer": w["tokenizer"], "server_python": w["python"]}
            if w
            else {}
        )
        return {**self.details["served"], "tokenizer_dir": outside_dir(self.name), **started}

    @property
    def manifest(self) -> str:
        """The manifest of the job that made this model (a checkpoint's is its run's job)."""
        if self.kind == "base":
            return base_manifest(self.name)
        if self.kind in ("run", "checkpoint"):
            return f"results/adapters/{self.run}/manifest.json"
        if self.kind in ("merge", "sweep"):
            return f"results/merges/{self.name}/manifest.json"
        if self.kind == "outside":
            return f"{outside_dir(self.name)}/manifest.json"
        src = self.parents[0][0]
        if self.kind == "merged":
            return f"results/models/merged/{src}/manifest.json"
        return f"results/gguf/{self.details['exported']}/model-{self.gguf_type}.json"

    @property
    def files(self) -> list[str]:
        """The model's own files besides its manifest: what an audit checks on disk."""
        if self.kind == "checkpoint":
            weights = "adapter_model.safetensors" if self.form == "adapter" else "model.safetensors"
            return [f"{self.own_dir}/arm.json", f"{self.own_dir}/{weights}"]
        return [self.gguf_file] if self.gguf_file else []


# a replicate-seed arm of a run (deltaflow.seeds): measures seed variance, never a candidate
SEED_ARM = re.compile(r"^(?P<run>.+)~s(?P<seed>-?\d+)$")


def is_seed_arm(model: str) -> bool:
    return bool(SEED_ARM.match(model))


OUTSIDE_GGUF = "model.gguf"  # an outside GGUF's file name in its folder
DEFAULT_BASE = "base"  # the model name of `base_model:`; `base_models:` adds others by their keys


def base_manifest(name: str) -> str:
    """The manifest of the base ``name``: ``base_model:``'s, or an extra base's (``base_models:``)."""
    return BASE_MANIFEST if name == DEFAULT_BASE else f"results/models/bases/{name}/manifest.json"


def base_config(config: dict, name: str) -> dict:
    """The config section of the base ``name`` (``base_model`` or ``base_models.<name>``), with an
    extra base's display name its key unless it sets one."""
    if name == DEFAULT_BASE:
        return config["base_model"]
    cfg = config["base_models"][name]
    return {**cfg, "name": name} if cfg["name"] == DEFAULT_BASE else cfg


def outside_dir(name: str) -> str:
    """Where the outside model ``name`` is imported (deltaflow.outside)."""
    return f"results/models/outside/{name}"


def gguf_path(model: str, gtype: str) -> str:
    return f"results/gguf/{model}/model-{gtype}.gguf"


def coef_label(coef: float) -> str:
    return f"{coef:g}"


def checkpoint_tags(recipe: dict) -> list[str]:
    """The checkpoints a run saves before its final one (``save_every``), in order:
    ``step<N>`` every N steps, or ``epoch<N>`` after each epoch but the last."""
    every = recipe.get("save_every")
    if every == "epoch":
        return [f"epoch{e}" for e in range(1, recipe.get("epochs") or 1)]  # without epochs: refused
    if not every or not recipe.get("max_steps"):  # integer save_every with epochs is refused
        return []
    return [f"step{s}" for s in range(every, recipe["max_steps"], every)]


def checkpoint_models(config: dict) -> dict[str, tuple[str, str]]:
    """``<run>@<tag>`` -> (run, tag) for every saved checkpoint of every run (tag: step<N>
    or epoch<N>; the adapter is results/adapters/<run>/checkpoints/<tag>)."""
    out = {}
    for run, spec in sorted(config["runs"].items()):
        recipe = config["recipes"].get(spec["recipe"])  # an unknown recipe is reported elsewhere
        for tag in checkpoint_tags(recipe) if recipe else []:
            out[f"{run}@{tag}"] = (run, tag)
    return out


def sweep_models(config: dict) -> dict[str, tuple[str, float]]:
    """``<model>.x<coef>`` -> (model, coef) for every coefficient of every sweep."""
    return {
        f"{model}.x{coef_label(c)}": (model, float(c))
        for model, coefs in sorted(config["sweeps"].items())
        for c in coefs
    }


def export_models(config: dict) -> dict[str, tuple[str, str, str | None]]:
    """``<model>.merged`` and ``<model>.<type>.gguf`` -> (model, "merged"|"gguf", type)."""
    exp = config["export"]
    out: dict = {}
    for model in exp["models"]:
        out[f"{model}.merged"] = (model, "merged", None)
        for t in exp.get("gguf_types", []):
            out[f"{model}.{t}.gguf"] = (model, "gguf", t)
    return out


def merge_specs(config: dict) -> dict[str, dict]:
    """Every adapter combination to build: the `merges:` and one linear merge per sweep arm."""
    out = {name: {**spec, "kind": "merge"} for name, spec in sorted(config["merges"].items())}
    for name, (model, coef) in sweep_models(config).items():
        out[name] = {"kind": "sweep", "method": "linear", "adapters": {model: coef}, "seed": 0}
    return out


def _form(full: bool) -> str:
    return "full" if full else "adapter"


def _full_dir_of(name: str, nodes: list[ModelNode]) -> str:
    return next(n.full_dir for n in nodes if n.name == name)


class ModelGraph:
    """Every model of a (validated) config as a ModelNode, in the eval grid's order: the base,
    outside models, runs, checkpoints, merges, sweep arms, merged and GGUF exports."""

    def __init__(self, config: dict):
        self.config = config
        self.checkpoints = checkpoint_models(config)
        self.sweeps = sweep_models(config)
        self.exports = export_models(config)
        self.merges = merge_specs(config)
        nodes = [ModelNode(DEFAULT_BASE, "base")]
        nodes += [ModelNode(name, "base") for name in sorted(config["base_models"])]
        for name, spec in sorted(config["models"].items()):
            details = {
                "form": spec["kind"],
                "releasable": spec["releasable"],
                "description": spec["description"],
                **({"served": spec["served"]} if spec["kind"] == "served" else {}),
            }
            nodes.append(ModelNode(name, "outside", details=details))
        for run, spec in sorted(config["runs"].items()):
            init = spec.get("init_from")
            full = config["recipes"].get(spec["recipe"], {}).get("method") == "full"
            nodes.append(
                ModelNode(
                    run,
                    "run",
                    parents=((init, 1.0),) if init else (),
                    run=run,
                    details={"mixture": spec["mixture"], "recipe": spec["recipe"], "form": _form(full)},
                )
            )
        forms = {n.name: n.form for n in nodes}
        for name, (run, tag) in self.checkpoints.items():
            details = {"form": forms[run]}
            nodes.append(
                ModelNode(name, "checkpoint", parents=((run, 1.0),), run=run, tag=tag, details=details)
            )
            forms[name] = forms[run]
        for name, spec in sorted(config["merges"].items()):
            parents = tuple((m, float(w)) for m, w in spec["adapters"].items())
            # a merge of whole models is one (mixing forms is refused: deltaflow.merging)
            full = all(forms.get(m) == "full" for m, _ in parents)
            nodes.append(
                ModelNode(
                    name, "merge", parents=parents, details={"method": spec["method"], "form": _form(full)}
                )
            )
            forms[name] = _form(full)
        for name, (model, coef) in self.sweeps.items():
            full = forms.get(model) == "full"
            nodes.append(
                ModelNode(name, "sweep", parents=((model, coef),), coef=coef, details={"form": _form(full)})
            )
        for name, (src, kind, gtype) in self.exports.items():
            if kind == "merged" and forms.get(src) == "full":
                continue  # a whole model needs no merging: its GGUF is converted from its own folder
            full = forms.get(src) == "full"
            parent = src if kind == "merged" or full else f"{src}.merged"
            details = {
                "exported": src,
                "exported_dir": _full_dir_of(src, nodes) if full else f"results/models/merged/{src}",
            }
            nodes.append(ModelNode(name, kind, parents=((parent, 1.0),), gguf_type=gtype, details=details))
        self.nodes = {n.name: n for n in nodes}
        self.exports = {name: e for name, e in self.exports.items() if name in self.nodes}
        for n in nodes:  # a served model that its jobs start: the weights they serve
            start = (n.details.get("served") or {}).get("start")
            if start:
                n.details["weights"] = self.served_weights(start)
        self.bases: dict[str, str] = {}
        for n in nodes:  # in graph order: a model's parents come before it
            self.bases[n.name] = self._base(n)

    def served_weights(self, start: dict) -> dict | None:
        """What a server started by the jobs (``served.start``) serves: the file or folder
        (``path``) and the manifest of the job that wrote it; None when ``start.weights`` names
        no model of this config with weights that server can run (outside._check_served)."""
        src = self.nodes.get(start["weights"])
        if src is None:
            return None
        if start["server"] == "llama_cpp":
            path = src.gguf_file
        elif src.kind == "base":
            path = base_manifest(src.name).rsplit("/", 1)[0]
        else:
            path = src.full_dir if src.form == "full" else None
        # vLLM runs from its own environment (eval.vllm_python, as the vLLM eval backend)
        python = self.config["eval"].get("vllm_python") if start["server"] == "vllm" else None
        if not path:
            return None
        # the tokenizer the prompts are built with by default: the folder the weights came from
        return {"path": path, "manifest": src.manifest, "python": python, "tokenizer": src.full_dir or path}

    def _base(self, node: ModelNode) -> str:
        """The base a node's weights build on: its own (a base), its run's or an outside
        model's ``base:``, or the first model it is made from (mixed bases are refused)."""
        if node.kind == "base":
            return node.name
        if node.kind == "outside":
            return self.config["models"][node.name].get("base") or DEFAULT_BASE
        if node.kind == "run":
            return self.config["runs"][node.name].get("base") or DEFAULT_BASE
        if node.kind == "checkpoint":
            return self.bases[node.run]
        return self.bases.get(node.parents[0][0], DEFAULT_BASE)  # an unknown name is reported elsewhere

    def base_of(self, model: str) -> str:
        """The base ``model`` is applied to and compared against (``base`` unless ``base_models:``)."""
        return self.bases[self.node(model).name]

    @property
    def base_names(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.kind == "base"]

    @property
    def names(self) -> list[str]:
        return list(self.nodes)

    def candidates(self) -> list[str]:
        """The models the selection chooses among and that can be released: every model but the
        base and replicate-seed arms (`<run>~s<seed>`, which measure seed variance), and models
        we did not train only when declared releasable."""
        return [
            m
            for m, n in self.nodes.items()
            if n.kind != "base" and not is_seed_arm(m) and (n.kind != "outside" or n.details["releasable"])
        ]

    def __contains__(self, model: str) -> bool:
        return model in self.nodes

    def node(self, model: str) -> ModelNode:
        try:
            return self.nodes[model]
        except KeyError:
            raise KeyError(
                f"'{model}' is not a model of this config; models: {', '.join(self.nodes)}"
            ) from None

    def kind(self, model: str) -> str:
        return self.node(model).kind

    def adapter_manifest(self, model: str) -> str | None:
        """The manifest whose job writes the model's adapter (None for the base and exports)."""
        node = self.node(model)
        return node.manifest if node.adapter_dir else None

    def model_run(self, model: str) -> str | None:
        """The run whose recipe trained ``model``'s adapter (None for merges and the base)."""
        node = self.node(model)
        if node.run:
            return node.run
        return self.model_run(node.parents[0][0]) if node.kind == "sweep" else None

    def primary_run(self, model: str) -> str | None:
        """The run a model's data and recipe come from: its own, its checkpoint's, a sweep's or an
        export's source, or a merge's first input."""
        node = self.node(model)
        if node.run:
            return node.run
        return self.primary_run(node.parents[0][0]) if node.parents and node.kind != "run" else None

    def lineage(self, model: str) -> list[str]:
        """How a model was made, one step per line (for the model card)."""
        node = self.node(model)
        if node.kind == "base":
            return ["the base model" if model == DEFAULT_BASE else f"the base model {model} (base_models)"]
        if node.kind == "outside":
            what = f": {node.details['description']}" if node.details["description"] else ""
            return [f"outside model {model} ({node.form}, not trained here){what}"]
        if node.kind == "run":
            objective = self.config["recipes"].get(node.details["recipe"], {}).get("objective", "sft")
            what = {
                "dpo": " (DPO)",
                "cpt": " (continued pretraining)",
                "grpo": " (GRPO)",
                "rloo": " (RLOO)",
                "online_dpo": " (online DPO)",
            }
            what = what.get(objective, "")
            step = f"run {model}{what}: mixture {node.details['mixture']} x recipe {node.details['recipe']}"
            if self.bases.get(model, DEFAULT_BASE) != DEFAULT_BASE:
                step += f" on base {self.bases[model]}"
            if node.parents:  # a stack: the run it continues comes first (e.g. CPT, then SFT on top)
                return [*self.lineage(node.parents[0][0]), f"{step}, continuing {node.parents[0][0]}"]
            return [step]
        if node.kind == "checkpoint":
            return [*self.lineage(node.run), f"checkpoint at step {node.tag} of {node.run}"]
        if node.kind == "sweep":
            what = "weight delta (task arithmetic)" if node.form == "full" else "adapter delta"
            return [*self.lineage(node.parents[0][0]), f"{what} scaled by {coef_label(node.coef)}"]
        if node.kind == "merge":
            parts = ", ".join(f"{m} x {w:g}" for m, w in node.parents)
            return [f"merge {model}: {node.details['method']} of {parts}"]
        src = node.details["exported"]
        steps = self.lineage(src)
        if self.node(src).form != "full":
            steps.append(f"merged into the base weights ({src}.merged)")
        return steps + ([f"converted to GGUF {node.gguf_type} with llama.cpp"] if node.kind == "gguf" else [])

    def ancestors(self, model: str) -> list[str]:
        """Every model ``model`` is made from, nearest first, each once (the base excluded)."""
        out: list[str] = []
        todo = [p for p, _ in self.node(model).parents]
        while todo:
            m = todo.pop(0)
            if m not in out:
                out.append(m)
                todo.extend(p for p, _ in self.node(m).parents)
        return out

    def runs_behind(self, model: str) -> list[str]:
        """Every training run whose adapter went into ``model`` (through checkpoints, merges,
        sweeps, exports and init_from chains), in graph order."""
        chain = [model, *self.ancestors(model)]
        return [m for m in self.names if m in chain and self.node(m).kind == "run"]

    def training_datasets(self, model: str) -> list[str]:
        """The datasets of every mixture a run behind ``model`` trained on."""
        mixtures = self.config["mixtures"]
        return sorted(
            {
                c["dataset"]
                for run in self.runs_behind(model)
                for c in mixtures[self.config["runs"][run]["mixture"]]["components"]
            }
        )

    def adapter_origin(self, model: str) -> str | None:
        """The run that created ``model``'s adapter: the first run of its init_from chain (a run
        continuing another trains that adapter further, its PEFT settings as they are). None
        for the base, merges and exports."""
        run = self.model_run(model)
        runs, seen = self.config["runs"], set()
        while run in runs and runs[run].get("init_from") in runs and run not in seen:
            seen.add(run)
            run = runs[run]["init_from"]
        return run if run in runs else None

    def peft_settings(self, model: str) -> dict:
        """The PEFT settings ``model``'s adapter has (PEFT_KEYS of the recipe of the run that
        created it, see adapter_origin); {} for models without a run's adapter."""
        run = self.adapter_origin(model)
        recipe = self.config["recipes"].get(self.config["runs"][run]["recipe"], {}) if run else {}
        return {k: recipe[k] for k in PEFT_KEYS if k in recipe}

    def adds_tokens(self, model: str) -> bool:
        """Whether ``model``'s adapter (a run, its checkpoint or a run continuing one) has new tokens."""
        run = self.model_run(model)
        seen = set()
        runs = self.config["runs"]
        while run and run in runs and run not in seen:
            seen.add(run)
            if self.config["recipes"].get(runs[run]["recipe"], {}).get("new_tokens"):
                return True
            run = runs[run].get("init_from")
        return False
