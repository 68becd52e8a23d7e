"""results/model_card.md for the chosen model: deltas vs base, gates, data, recipe, provenance.

Everything on the card is read from artifacts the workflow wrote (the delta table, the gate
verdicts and selection, the mixture and adapter manifests, the base model manifest); the
card adds no number of its own.
"""

from __future__ import annotations

import pandas as pd
import yaml

from .tables import REFERENCE, TableSettings, markdown_table, model_section, scoreboard, table_notes


def _mixture_section(name: str, mix: dict) -> list[str]:
    comps = pd.DataFrame(
        [
            {
                "component": c["name"],
                "dataset": c["dataset"],
                "profile": c.get("profile") or "",
                "rows": c["rows"],
                "row share": f"{c['row_share']:.3f}",
                "token share": f"{c['token_share']:.3f}",
                "removed": ", ".join(
                    f"{k} {v}" for k, v in {**c.get("rejected", {}), **c.get("duplicates", {})}.items()
                )
                + (f", contaminated {c['contaminated']}" if c.get("contaminated") else ""),
            }
            for c in mix["components"]
        ]
    )
    d = mix.get("decontamination") or {}
    lines = [
        f"## Training data: mixture `{name}`",
        "",
        f"{mix['rows']} rows, {mix['tokens']} tokens ({mix['kind']}, seed {mix['seed']}).",
        "",
        markdown_table(comps),
    ]
    if d.get("policy", "off") != "off":
        lines += [
            "",
            (
                f"Decontamination ({d['policy']}, {d['ngram']}-gram) against "
                f"{d['eval_items']} items of {', '.join(d['benchmarks'])}: "
                f"**{d['hits']} overlap** in the final mix, {d['rows_removed']} rows removed."
            ),
        ]
    return lines


def _gate_section(model: str, verdict: dict, selection: dict) -> list[str]:
    lines = [
        "## Release gates",
        "",
        (
            f"**{'PASS' if verdict['passes'] else 'FAIL'}** — {model}"
            f"{'' if verdict['checks'] else ' (no gates configured)'}."
        ),
        "",
    ]
    if verdict["checks"]:
        lines += [
            markdown_table(
                pd.DataFrame(
                    [
                        {
                            "axis": c["axis"],
                            "kind": c["kind"],
                            "bound": c.get("bound", ""),
                            "value (pts)": "not run" if c.get("not_run") else f"{c['value_pts']:+.2f}",
                            "threshold (pts)": "" if c.get("not_run") else f"{c['threshold_pts']:+.2f}",
                            "verdict": "pass" if c["passed"] else ("NOT RUN" if c.get("not_run") else "FAIL"),
                            "decided by the data": "no: " + c["power_note"]
                            if c.get("underpowered")
                            else "yes",
                        }
                        for c in verdict["checks"]
                    ]
                )
            ),
            "",
        ]
        if verdict.get("underpowered"):
            lines += [
                (
                    f"**Underpowered:** the {', '.join(verdict['underpowered'])} gate(s) cannot be decided at "
                    "these item counts (the tolerance is below the CI half-width or the required gain below "
                    "the minimum detectable effect); the verdict there is noise, not evidence."
                ),
                "",
            ]
    k = (selection.get("seeds") or {}).get(model, 1)
    lines += [
        f"Training seeds behind these numbers: **{k}**"
        + (
            " (gates and selection use the seed-averaged rows with a CI that includes seed variance; "
            "results/tables/seeds.md)."
            if k > 1
            else " (one seed: a delta smaller than the seed-to-seed "
            "spread cannot be told from seed noise; declare `seeds:` on the run to measure it)."
        ),
        "",
    ]
    lines += [
        (f"Selection: `{selection['formula']}`, λ = {selection['lambda']:g}; {selection['reason']}."),
        "",
        markdown_table(
            pd.DataFrame(
                [
                    {
                        "model": c["model"],
                        "target gain": f"{c['target_gain_pts']:+.2f}",
                        "worst regression": f"{c['worst_guarded_regression_pts']:.2f}",
                        "score": f"{c['score']:+.2f}",
                        "gates": "pass" if c["passes_gates"] else "fail",
                        "Pareto frontier": "yes" if c["on_frontier"] else "",
                    }
                    for c in selection["candidates"]
                ]
            )
        ),
    ]
    return lines


def _baseline(delta: pd.DataFrame, model: str) -> list[str]:
    """The model's own base when it is not `base` (the delta table's baseline column, base_models:)."""
    return sorted(set(delta.loc[delta.model == model, "baseline"].dropna())) if "baseline" in delta else []


def _outside_section(delta: pd.DataFrame, model: str, outside: list[str]) -> list[str]:
    """The chosen model beside the models we did not train (`models:`), on the same items with
    the same decoding."""
    rivals = [m for m in outside if m != model]
    if not rivals:
        return []
    return [
        "## Compared with models we did not train",
        "",
        (
            "Scores on the same items with the same decoding (each one's delta vs the base, with "
            "its CI, is in the delta table):"
        ),
        "",
        markdown_table(
            scoreboard(delta[delta.model.isin(["base", model, *rivals, *_baseline(delta, model)])])
        ),
        "",
    ]


def _finalists_section(finalists: pd.DataFrame | None, model: str, confidence: float) -> list[str]:
    """The benchmarks that ran after the selection, on the finalists only (a ``{finalists: k}``
    suite, results/tables/finalists.csv): this model's rows, or why it has none."""
    if finalists is None:
        return []
    benches = ", ".join(sorted(set(finalists.loc[finalists.level == "benchmark", "benchmark"])))
    lines = ["## After the selection", ""]
    if model not in set(finalists.model):
        return lines + [f"Not among the finalists: {benches} did not run on this model.", ""]
    role = finalists.loc[finalists.model == model, "finalist"].iloc[0]
    return lines + [
        (
            f"Run on the finalists ({role} here) after the choice, which they took no part in "
            "(results/tables/finalists.csv):"
        ),
        "",
        markdown_table(model_section(finalists, model, confidence)),
        "",
    ]


def _origins_section(origins: dict | None) -> list[str]:
    """deltaflow.origins: everything that reached the training data, through the DAG."""
    if not origins:
        return []
    return [
        "## Where the training data comes from",
        "",
        f"- Training targets written by: {', '.join(origins['written_by']) or 'none'}",
        f"- Prompts written by: {', '.join(origins['prompts_by']) or 'none'}",
        f"- Licences: {', '.join(origins['licences']) or 'none'}",
        "",
        "How each piece came about (transitively through the models that wrote data):",
        "",
        "```",
        *origins["chain"],
        "```",
        "",
    ]


def _recipe_section(run: dict, adapter_manifest: dict) -> list[str]:
    return [
        "## Recipe",
        "",
        f"Training run: mixture `{run['mixture']}` × recipe `{run['recipe']}`:",
        "",
        "```yaml",
        yaml.safe_dump(adapter_manifest["params"]["recipe"], sort_keys=True).rstrip(),
        "```",
        "",
    ]


def _import_section(manifest: dict) -> list[str]:
    """A model we did not train: where it came from and the files it was evaluated from."""
    return [
        "## Source",
        "",
        "Not trained by this workflow: imported as it is and evaluated beside the trained models.",
        "",
        "```yaml",
        yaml.safe_dump(
            {"source": manifest["source"], "files_sha256": manifest["files"]}, sort_keys=True
        ).rstrip(),
        "```",
        "",
    ]


def _provenance(config_sha: str, base: dict, adapter: dict) -> list[str]:
    src = base["source"]
    # every scalar that pins the source (hub repo + revision, package + version, file hash, ...)
    revision = {
        k: v
        for k, v in src.items()
        if k not in ("type", "resolved_path") and isinstance(v, (str, int, float)) and not isinstance(v, bool)
    }
    code = adapter.get("code", {})
    pk = adapter.get("packages", {})
    return [
        "## Provenance",
        "",
        f"- config sha256: `{config_sha}`",
        f"- git commit: `{code.get('git_commit')}`"
        + (" (uncommitted changes)" if code.get("git_dirty") else ""),
        f"- base model: {src['type']} " + ", ".join(f"{k} `{v}`" for k, v in revision.items()),
        f"- base weights sha256: `{base.get('weights_sha256')}`",
        (
            f"- {'imported' if adapter.get('kind') == 'outside_model' else 'trained'} "
            f"{adapter.get('started')} – {adapter.get('finished')} on "
            f"{adapter.get('hardware', {}).get('machine')} ({adapter.get('hardware', {}).get('gpu', 'cpu')})"
        ),
        "- packages: " + ", ".join(f"{k} {v}" for k, v in pk.items() if v),
    ]


def render_model_card(
    *,
    model: str,
    base_name: str,
    delta: pd.DataFrame,
    settings: TableSettings,
    verdict: dict,
    selection: dict,
    run: dict | None,
    mixture_manifest: dict | None,
    adapter_manifest: dict,
    base_manifest: dict,
    config_sha: str,
    reference_notes: dict | None = None,
    lineage: list[str] | None = None,
    origins: dict | None = None,
    form: str = "adapter",
    outside: list[str] | None = None,
    released_as: str | None = None,
    release_notes: str | None = None,
    finalists: pd.DataFrame | None = None,
) -> str:
    """The card's body. ``run`` None: a model we did not train (``models:``), and
    ``adapter_manifest`` is its import manifest. ``released_as``: why a model other than the
    chosen one is released (``release.also``); ``release_notes``: its ``release.notes`` text;
    ``finalists``: the table of the benchmarks run after the selection, if any."""
    table = model_section(delta, model, settings.confidence)
    refs = delta[delta.source == REFERENCE]
    title = (
        f"full fine-tune of {base_name}"
        if run and ((adapter_manifest.get("params") or {}).get("recipe") or {}).get("method") == "full"
        else f"adapter on {base_name}"
        if run or form == "adapter"
        else f"{form} model, compared with {base_name}"
    )
    lines = [
        f"# {model}: {title}",
        "",
        (
            f"Built by deltaflow. {released_as or 'Chosen as the model to ship: ' + selection['reason']} "
            f"(gates: **{'PASS' if verdict['passes'] else 'FAIL'}**)."
        ),
        "",
        "## Delta vs base",
        "",
        table_notes(settings, bool(len(refs))),
        "",
        markdown_table(table),
        "",
    ]
    if len(refs):
        notes = "; ".join(f"{name}: {note}" for name, note in (reference_notes or {}).items())
        if notes:
            lines += [f"References: {notes}", ""]
    if release_notes:
        lines += ["## Notes", "", release_notes.strip(), ""]
    lines += _outside_section(delta, model, outside or []) + _finalists_section(
        finalists, model, settings.confidence
    )
    lines += _gate_section(model, verdict, selection) + [""]
    if run:
        lines += _mixture_section(run["mixture"], mixture_manifest["mixture"]) + [""]
    lineage = lineage or [f"run {model}"]
    lines += ["## How this model was made", "", *[f"{i}. {step}" for i, step in enumerate(lineage, 1)], ""]
    lines += _origins_section(origins)
    lines += _recipe_section(run, adapter_manifest) if run else _import_section(adapter_manifest)
    lines += _provenance(config_sha, base_manifest, adapter_manifest)
    return "\n".join(lines) + "\n"
