"""``benchmarks.<name>.scorer: package.module:function``: a metric no registry has, computed by
the user's own function on every item (lm-eval's ``!function`` is the model).

The function is called once per item with keyword arguments and returns ``{metric: number}``:

- ``doc``: the benchmark item (``query``, ``answer`` or ``choices``/``gold``, ...);
- ``responses``: the model's generations for it (empty for multiple choice);
- ``record``: deltaflow's scored record (``score`` and the registry's metrics);
- ``seconds``: the wall time the item's generation took (its lm-eval batch's time divided
  by the batch's items), or None when the outputs were generated before it was recorded.

Each metric lands in the item's record under ``scorer`` and, averaged, in the benchmark's
metrics with the function's identity (its module file's sha256 and its distribution's version).
The raw-output cache does not depend on it: scoring reruns on cached outputs, and the scorer's
module file is an input of the eval job, so an edited function re-scores without the model.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from collections.abc import Callable

from ..errors import ConfigError, DeltaflowError
from ..io import sha256_path


def split_ref(ref: str) -> tuple[str, str]:
    module, _, name = ref.partition(":")
    return module, name


def load_scorer(ref: str) -> Callable:
    """The function ``package.module:function`` names (ConfigError saying what is missing)."""
    module, name = split_ref(ref)
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"scorer '{ref}': module '{module}' cannot be imported ({exc}); put it on PYTHONPATH "
            "or install its package"
        ) from None
    fn = getattr(mod, name, None)
    if not callable(fn):
        raise ConfigError(f"scorer '{ref}': module '{module}' has no function '{name}'")
    return fn


def scorer_file(ref: str) -> str | None:
    """The scorer's module file (without importing it): an input of the eval jobs."""
    try:
        spec = importlib.util.find_spec(split_ref(ref)[0])
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None and spec.origin and spec.origin != "built-in" else None


def scorer_identity(ref: str) -> dict:
    """What decides the scorer's numbers: its name, its module file's hash, its package version."""
    from importlib import metadata

    module = split_ref(ref)[0]
    path = scorer_file(ref)
    top = module.split(".")[0]
    dist = (metadata.packages_distributions().get(top) or [None])[0]
    return {
        "function": ref,
        "module_file": path,
        "source_sha256": sha256_path(path) if path else None,
        "version": metadata.version(dist) if dist else None,
    }


def _number(ref: str, doc_id, key, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DeltaflowError(
            f"scorer '{ref}' returned {key}={value!r} for item {doc_id}; a metric is a finite number"
        )
    return float(value)


def apply_scorer(ref: str, docs: list[dict], raws: list[dict], records: list[dict]) -> dict:
    """Run the scorer on every item: its metrics into each record (``record["scorer"]``), and
    the benchmark's block (identity, per-metric mean over the items, n)."""
    fn = load_scorer(ref)
    by_id = {d["doc_id"]: d for d in docs}
    raw_by_id = {r["doc_id"]: r for r in raws}
    sums: dict[str, float] = {}
    for rec in records:
        raw = raw_by_id[rec["doc_id"]]
        out = fn(
            doc=by_id[rec["doc_id"]],
            responses=list(raw.get("responses") or []),
            record=dict(rec),
            seconds=raw.get("seconds"),
        )
        if not isinstance(out, dict) or not out:
            raise DeltaflowError(
                f"scorer '{ref}' returned {out!r} for item {rec['doc_id']}; it returns {{metric: number}}"
            )
        rec["scorer"] = {str(k): _number(ref, rec["doc_id"], k, v) for k, v in out.items()}
        if sums and set(rec["scorer"]) != set(sums):
            raise DeltaflowError(
                f"scorer '{ref}' returned metrics {sorted(rec['scorer'])} for item {rec['doc_id']} and "
                f"{sorted(sums)} before; every item gets the same metrics"
            )
        for k, v in rec["scorer"].items():
            sums[k] = sums.get(k, 0.0) + v
    n = len(records)
    return {
        **scorer_identity(ref),
        "n": n,
        "means": {k: round(v / n, 6) for k, v in sums.items()} if n else {},
    }


def check_scorers(config: dict, *, check_files: bool):
    """Every benchmark's scorer imports and is a function, before any job. ``check_files``:
    unused (the module is found on the Python path)."""
    for name, bench in config["benchmarks"].items():
        if bench.get("scorer"):
            try:
                load_scorer(bench["scorer"])
            except ConfigError as exc:
                yield f"config key 'benchmarks.{name}.scorer': {exc}"
