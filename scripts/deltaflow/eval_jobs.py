"""Which models one eval job evaluates (``eval.arms_per_job``).

By default every model has its own eval job (rule ``evaluate``): a cluster runs them side by
side and a changed model reruns alone. With ``arms_per_job: N > 1`` the models that load as
*their base plus an unmerged PEFT adapter* (runs, checkpoints, sweep arms, merges, outside
adapters) and the base itself are evaluated N at a time in one process: the base is loaded
once and each adapter is added to it with PEFT's multi-adapter loading (``set_adapter``), see
``bench.eval_job.SharedBase``. Full models, exports and GGUF files keep one job each (there is
no base to share), as do adapters that bring new tokens (another vocabulary than the base's).

Per-model outputs, caches and manifests stay as they are; only the job shape changes. A batch
is one Snakemake rule (``evaluate_arms_<i>``) whose outputs are its models' files, so a changed
arm reruns its batch, where the other arms hit the eval cache (the base load and the cached
outputs' scoring are what that costs).
"""

from __future__ import annotations

from dataclasses import dataclass

from .models import ModelGraph


@dataclass(frozen=True)
class EvalBatch:
    index: int
    base: str
    models: tuple[str, ...]

    @property
    def rule(self) -> str:
        return f"evaluate_arms_{self.index}"

    @property
    def log(self) -> str:
        return f"logs/evals/arms-{self.index}.log"


def shares_base(graph: ModelGraph, model: str) -> bool:
    """Whether ``model`` loads as its base plus an unmerged PEFT adapter on the base's
    vocabulary (or is a base): such models can share one base load."""
    form = graph.node(model).form
    return form == "base" or (form == "adapter" and not graph.adds_tokens(model))


def eval_batches(graph: ModelGraph, models: list[str], per_job: int) -> list[EvalBatch]:
    """The eval jobs of more than one model: each base's sharing models in ``models``' order,
    ``per_job`` at a time (a lone leftover keeps the one-model rule)."""
    if per_job <= 1:
        return []
    by_base: dict[str, list[str]] = {}
    for m in models:
        if shares_base(graph, m):
            by_base.setdefault(graph.base_of(m), []).append(m)
    batches = []
    for base, arms in by_base.items():
        for i in range(0, len(arms), per_job):
            chunk = tuple(arms[i : i + per_job])
            if len(chunk) > 1:
                batches.append(EvalBatch(len(batches), base, chunk))
    return batches
