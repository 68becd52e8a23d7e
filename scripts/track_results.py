"""Rule track_results: one experiment-tracker run per model (deltaflow.tracking): its scores,
deltas with CIs, MDE and p-values, its gate verdict and its per-item records. What was logged
where (or why not) goes to results/tables/tracking.json; a tracker that fails is a warning."""

import math
import time

import pandas as pd

from deltaflow.io import read_json, read_jsonl, write_json
from deltaflow.progress import meter, report
from deltaflow.rulekit import start_job
from deltaflow.selection import failed_reasons
from deltaflow.tracking import key_of, log_model, records_table
from deltaflow.tracking import settings as tracking_settings

start_job(snakemake)
t0 = time.time()
p, inp = snakemake.params, snakemake.input
t = tracking_settings(snakemake.config)
delta = pd.read_csv(inp.delta)
# the finalists' benchmark rows (run after the selection: "not run here" in delta.csv). Not its
# axis and macro rows, which average those benchmarks only, nor the bases' rows, already in delta.
finals = pd.read_csv(inp.finalists[0]) if inp.finalists else None
if finals is not None:
    own = finals[(finals.level == "benchmark") & finals.finalist.notna()]
    delta = pd.concat([delta, own.drop(columns="finalist")], ignore_index=True)
gates = read_json(inp.gates)
selection = read_json(inp.selection)
samples = {}  # model -> benchmark -> its records file
for path in inp.summaries:
    summary = read_json(path)
    for bench, entry in summary["benchmarks"].items():
        samples.setdefault(summary["model"], {})[bench] = entry["samples"]

COLUMNS = ("score", "base_score", "delta_pts", "ci_low", "ci_high", "mde_pts", "p_value", "p_adjusted")


def model_metrics(model: str) -> dict:
    """The model's delta-table numbers, ``<column>/<benchmark or axis>`` (its own rows only)."""
    out = {}
    for row in delta[(delta.model == model) & (delta.source == "evaluated")].itertuples():
        for col in COLUMNS:
            value = getattr(row, col, None)
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                out[f"{col}/{row.benchmark}"] = float(value)
    return out


def finalist_role(model: str) -> str | None:
    """chosen / runner-up <i> where a finalists suite ran (results/tables/finalists.csv)."""
    if finals is None:
        return None
    roles = finals.loc[finals.model == model, "finalist"].dropna()
    return roles.iloc[0] if len(roles) else None


records = []
for i, model in enumerate(p.models, 1):
    verdict = gates.get(model)
    config = {
        "deltaflow.model": model,
        "deltaflow.base": p.bases[model],
        "deltaflow.lineage": p.lineage[model],
        "deltaflow.config_sha256": p.config_sha,
        "deltaflow.chosen": model == selection["chosen"],
        **({"deltaflow.finalist": role} if (role := finalist_role(model)) else {}),
        **({"gates.passes": verdict["passes"], "gates.failed": failed_reasons(verdict)} if verdict else {}),
    }
    tables = {b: records_table(read_jsonl(f)) for b, f in sorted(samples.get(model, {}).items())}
    # the run's id: the project, the model and how it was made (a rerun updates that run)
    key = key_of(t["project"], model, p.lineage[model])
    rec = log_model(t, model, key, config, model_metrics(model), tables)
    last = i == len(p.models)
    report(
        f"{model}: {rec['status']} ({rec['backend']}); {meter(i, len(p.models), time.time() - t0, 'models')}",
        last=last,
    )
    records.append(rec)
write_json(snakemake.output[0], {"backend": t["backend"], "project": t["project"], "models": records})
