"""Where training text comes from, and the policies that refuse some of it.

Every dataset has an origin: who wrote its training targets (the assistant turns, a preference
pair's answers) and who wrote its prompts, and the licences it carries. A declared dataset says
so itself (``datasets.<n>.origin``: ``human``, ``synthetic``, ``unknown``, ``model-generated``, or
``{model: gpt-4, vendor: openai}``; ``license``). A generated dataset (``generations.<n>``,
deltaflow.generation) gets its origin from the DAG: its responses were written by the generating
model, which carries the origins of everything it was trained on (a model trained on GPT-4 rows
passes "openai" on to the data it writes), and its prompts keep their dataset's origin.

An origin is a set of tags: the kind (``human``, ``synthetic``, ``unknown``, ``model-generated``)
plus any named model and vendor. A policy (``mixtures.<m>.policy`` or ``runs.<r>.policy``) names
tags to refuse in the training targets (``forbid_origins``: the "not distilled" claim), in the
prompts (``forbid_prompt_origins``) and the licences every piece must carry
(``require_licences``). Policies are checked from the config before any job (``check_policies``)
and again from the rows themselves when a mixture is built (``check_rows``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError
from .models import DEFAULT_BASE, base_config

UNKNOWN_LICENCE = "unknown"


@dataclass
class Origin:
    written_by: set[str] = field(default_factory=set)  # tags of who wrote the training targets
    prompts_by: set[str] = field(default_factory=set)  # tags of who wrote the prompts
    licences: set[str] = field(default_factory=set)
    chain: list[str] = field(default_factory=list)  # how it came to be, one step per line

    def to_dict(self) -> dict:
        return {
            "written_by": sorted(self.written_by),
            "prompts_by": sorted(self.prompts_by),
            "licences": sorted(self.licences),
            "chain": list(self.chain),
        }


def declared_tags(origin) -> set[str]:
    """The tags of a declared origin: a kind string, or a mapping with a model and/or vendor."""
    if isinstance(origin, dict):
        return {"model-generated", *(str(origin[k]) for k in ("model", "vendor") if origin.get(k))}
    return {str(origin or "unknown")}


def declared_origin(spec: dict):
    """A dataset's declared origin; unset: synthetic for generated task packs, else unknown."""
    if spec.get("origin") is not None:
        return spec["origin"]
    return "synthetic" if spec.get("type") == "generated" else "unknown"


def describe(origin) -> str:
    if isinstance(origin, dict):
        return " / ".join(str(origin[k]) for k in ("vendor", "model") if origin.get(k)) or "model-generated"
    return str(origin)


class Origins:
    """The origin of every dataset and generation of a validated config, and of every model's
    training data, computed through the model graph (memoized; a cycle is a config error)."""

    def __init__(self, config: dict, graph=None):
        from .models import ModelGraph

        self.config = config
        self.graph = graph or ModelGraph(config)
        self._memo: dict[str, Origin] = {}
        self._open: list[str] = []

    def base(self, name: str = DEFAULT_BASE) -> Origin:
        """The origin of text the base ``name`` writes (base_model:, or one of base_models:)."""
        bm = base_config(self.config, name)
        tags = {bm["name"], *([bm["vendor"]] if bm.get("vendor") else [])}
        return Origin(
            written_by=tags,
            prompts_by=set(),
            licences={bm.get("license") or UNKNOWN_LICENCE},
            chain=[f"base model {bm['name']} (licence {bm.get('license') or UNKNOWN_LICENCE})"],
        )

    def dataset(self, name: str) -> Origin:
        if name in self._memo:
            return self._memo[name]
        if name in self._open:
            cycle = " -> ".join([*self._open[self._open.index(name) :], name])
            raise ConfigError(
                f"generations: a cycle in the data ({cycle}): a model cannot be trained on data it "
                "generates itself; generate from a model whose training does not use this data"
            )
        self._open.append(name)
        try:
            gens = self.config.get("generations") or {}
            if name in gens:
                origin = self._generation(name, gens[name])
            else:
                spec = self.config["datasets"][name]
                declared = declared_origin(spec)
                tags = declared_tags(declared)
                lic = spec.get("license") or UNKNOWN_LICENCE
                origin = Origin(
                    written_by=set(tags),
                    prompts_by=set(tags),
                    licences={lic},
                    chain=[f"dataset {name}: {describe(declared)} (licence {lic})"],
                )
        finally:
            self._open.pop()
        self._memo[name] = origin
        return origin

    def generator(self, gen: dict) -> Origin:
        """The origin a generating model gives the text it writes: its own name (and vendor) plus
        everything behind it (the base, and every dataset a run behind it was trained on)."""
        ref = gen["model"] if isinstance(gen["model"], dict) else {"model": gen["model"]}
        outside = (
            "model" in ref and ref["model"] in self.graph and self.graph.node(ref["model"]).kind == "outside"
        )
        if "model" in ref and not outside:  # a model of this workflow (one we trained, or a base)
            model = ref["model"]
            out = self.base(self.graph.base_of(model) if model in self.graph else DEFAULT_BASE)
            out = Origin(set(out.written_by), set(), set(out.licences), list(out.chain))
            if model not in self.graph.base_names:
                out.written_by.add(model)
            for ds in self.graph.training_datasets(model):
                sub = self.dataset(ds)
                out.written_by |= sub.written_by | sub.prompts_by
                out.licences |= sub.licences
                out.chain += [f"  trained on {line}" for line in sub.chain]
            return out
        # a teacher from outside (a path, a hub id, a `models:` entry such as a served model):
        # what the config declares of it, else its own name and an unknown licence
        named = ref.get("hub") or ref.get("model")
        declared = gen.get("origin") or ({"model": named} if named else "unknown")
        lic = gen.get("license") or UNKNOWN_LICENCE
        label = ref.get("hub") or ref.get("path") or ref.get("model")
        return Origin(
            written_by=declared_tags(declared),
            licences={lic},
            chain=[f"teacher {label}: {describe(declared)} (licence {lic})"],
        )

    def _generation(self, name: str, gen: dict) -> Origin:
        by = self.generator(gen)
        prompts = self.dataset(gen["prompts"]["dataset"])
        rejected_by = (
            self.generator({**gen, "model": gen["rejected_model"]}) if gen.get("rejected_model") else None
        )
        written = set(by.written_by) | (rejected_by.written_by if rejected_by else set())
        chain = [f"generation {name}: responses by {_ref_label(gen['model'])}", *[f"  {x}" for x in by.chain]]
        if rejected_by:
            chain += [
                f"  rejected answers by {_ref_label(gen['rejected_model'])}",
                *[f"    {x}" for x in rejected_by.chain],
            ]
        chain += [f"  prompts from {x}" for x in prompts.chain]
        return Origin(
            written_by=written,
            prompts_by=set(prompts.prompts_by),
            licences=by.licences | prompts.licences | (rejected_by.licences if rejected_by else set()),
            chain=chain,
        )

    def model(self, model: str) -> Origin:
        """Everything that reached a model's training data (its runs' mixtures, transitively)."""
        out = Origin()
        for ds in self.graph.training_datasets(model):
            sub = self.dataset(ds)
            out.written_by |= sub.written_by
            out.prompts_by |= sub.prompts_by
            out.licences |= sub.licences
            out.chain += sub.chain
        return out


def _ref_label(ref) -> str:
    if isinstance(ref, dict):
        return f"hub:{ref['hub']}@{ref.get('revision')}" if "hub" in ref else f"path:{ref.get('path')}"
    return str(ref)


def violations(policy: dict | None, origin: Origin) -> list[str]:
    """What in ``origin`` a policy refuses, one line each (empty: allowed)."""
    if not policy:
        return []
    out = []
    bad = sorted(set(policy.get("forbid_origins") or []) & origin.written_by)
    if bad:
        out.append(f"training targets written by {', '.join(bad)} (forbid_origins)")
    bad = sorted(set(policy.get("forbid_prompt_origins") or []) & origin.prompts_by)
    if bad:
        out.append(f"prompts written by {', '.join(bad)} (forbid_prompt_origins)")
    allowed = policy.get("require_licences")
    if allowed is not None:
        bad = sorted(origin.licences - set(allowed))
        if bad:
            out.append(f"licences {', '.join(bad)} not in require_licences [{', '.join(allowed)}]")
    return out


def check_policies(config: dict, graph=None) -> list[str]:
    """Config errors: every mixture and run policy against the origins of the data they would
    train on, before any job (the offending dataset and how its origin came about named)."""
    origins = Origins(config, graph)
    errors = []
    try:
        for gname in sorted(config.get("generations") or {}):
            origins.dataset(gname)  # a cycle (a model trained on data it writes) raises here
        for mname, mix in sorted(config["mixtures"].items()):
            for comp in mix["components"]:
                if comp["dataset"] not in config["datasets"] and comp["dataset"] not in (
                    config.get("generations") or {}
                ):
                    continue  # an unknown dataset is reported elsewhere
                origin = origins.dataset(comp["dataset"])
                for v in violations(mix.get("policy"), origin):
                    errors.append(
                        f"config key 'mixtures.{mname}.policy': component {comp.get('name', comp['dataset'])} "
                        f"(dataset {comp['dataset']}) has {v}; its origin: {' | '.join(origin.chain)}. "
                        "Drop the component, or generate that data with an allowed model (generations:)"
                    )
        for rname, run in sorted(config["runs"].items()):
            if not run.get("policy") or rname not in origins.graph:
                continue
            for ds in origins.graph.training_datasets(rname):
                origin = origins.dataset(ds)
                for v in violations(run["policy"], origin):
                    errors.append(
                        f"config key 'runs.{rname}.policy': dataset {ds}, which reaches this run's "
                        f"training (its mixture or a run it continues), has {v}; its origin: "
                        f"{' | '.join(origin.chain)}"
                    )
    except ConfigError as exc:
        errors.append(str(exc))
    return errors


def row_origin_tags(row: dict) -> tuple[set[str], set[str]]:
    """(target tags, prompt tags) of one normalized row: a generated row carries both in its
    ``origin``; a declared dataset's row carries the declared origin for both."""
    origin = row.get("origin")
    if isinstance(origin, dict) and "written_by" in origin:
        return set(origin["written_by"]), set(origin.get("prompts_by") or [])
    tags = declared_tags(origin)
    return tags, tags


def check_rows(mixture: str, policy: dict | None, component: str, rows: list[dict]) -> None:
    """The rows themselves against the policy when the mixture is built (the config check's
    second line: a rows file edited or produced outside the DAG). Names the first offending rows."""
    if not policy:
        return
    forbid, forbid_p = set(policy.get("forbid_origins") or []), set(policy.get("forbid_prompt_origins") or [])
    bad = []
    for row in rows:
        written, prompts = row_origin_tags(row)
        hit = sorted((written & forbid) | (prompts & forbid_p))
        if hit:
            bad.append((row.get("id"), hit))
    if bad:
        first = ", ".join(f"{rid} ({'/'.join(tags)})" for rid, tags in bad[:5])
        raise ConfigError(
            f"mixture '{mixture}': component {component} has {len(bad)} rows whose origin its policy "
            f"forbids; first: {first}. Remove the component or change mixtures.{mixture}.policy"
        )


def origin_summary(rows: list[dict]) -> dict:
    """Who wrote a component's rows: target and prompt tags, and the generating models."""
    written, prompts, models = set(), set(), set()
    for row in rows:
        w, pr = row_origin_tags(row)
        written |= w
        prompts |= pr
        if isinstance(row.get("origin"), dict) and row["origin"].get("generation"):
            models.add(f"{row['origin']['model']} ({row['origin'].get('generation')})")
    return {"written_by": sorted(written), "prompts_by": sorted(prompts), "models": sorted(models)}
