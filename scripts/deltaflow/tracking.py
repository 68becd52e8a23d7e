"""Experiment trackers (``tracking:``): trackio, MLflow or W&B beside the files in results/.

- Training reports through transformers' own integrations (TRL's ``report_to``): ``training_setup``
  sets what they read (environment variables, ``run_name``) before the trainer is built, and
  ``TrackerConfig`` adds the run's recipe and mixture hashes to the tracker's config. The run's
  name is ``<run>-<key>``, its key the hash of what the run is made from (the resume key): a
  resumed or repeated run continues the same tracker run, a changed one gets its own.
- After the tables, ``log_model`` writes one tracker run per model: its scores, deltas with CIs,
  MDE and p-values, its gate verdict, and its per-item records as the tracker's table type. Its
  id comes from the model's name and lineage, so a rerun updates that run instead of adding one.

The files stay the source of truth: a tracker that cannot be reached (``unreachable``: a probe
with a 3 s timeout) is a warning, and the job goes on without it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)
BACKENDS = ("trackio", "mlflow", "wandb")
PROBE_TIMEOUT_S = 3


def settings(config: dict) -> dict | None:
    """The validated config's ``tracking:`` (defaults filled), or None with backend none."""
    t = config["tracking"]
    if t["backend"] == "none":
        return None
    return {
        "backend": t["backend"],
        "project": t["project"],
        "offline": t["offline"],
        "uri": t.get("uri"),
        "dir": t["dir"],
    }


def check_config(config: dict, *, check_files: bool):
    """Settings the chosen backend would not use are refused, never dropped."""
    t = config["tracking"]
    backend = t["backend"]
    if t.get("uri") and backend != "mlflow":
        yield (
            f"config key 'tracking.uri': only the mlflow backend reads a URI (backend is {backend}); "
            "remove it, or set backend: mlflow"
        )
    if t["offline"] is False and backend != "wandb":
        yield (
            f"config key 'tracking.offline': false sends runs to W&B's servers, and the backend is "
            f"{backend} (trackio and MLflow write where `dir` / `uri` say); remove it"
        )


def key_of(*parts) -> str:
    """A short id from content (canonical JSON of ``parts``)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def mlflow_uri(t: dict) -> str:
    return t["uri"] or f"sqlite:///{Path(t['dir']).resolve() / 'mlflow.db'}"


def _probe(url: str, server_errors: bool = True) -> str | None:
    """Why ``url`` does not answer within the probe's timeout (a 5xx counts: a proxy in front of
    a dead server), or None."""
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S):
            return None
    except urllib.error.HTTPError as e:
        return f"{url}: HTTP {e.code}" if server_errors and e.code >= 500 else None
    except (OSError, ValueError) as e:
        return f"{url}: {getattr(e, 'reason', e)}"


_PROBED: dict = {}  # one probe per tracker per process (a results job logs many models)


def unreachable(t: dict) -> str | None:
    """Why the tracker cannot be reached now, or None. Local stores always can. W&B online
    also needs credentials (WANDB_API_KEY or a `wandb login`)."""
    key = (t["backend"], mlflow_uri(t) if t["backend"] == "mlflow" else None, t["offline"])
    if key not in _PROBED:
        reason = None
        if t["backend"] == "mlflow" and mlflow_uri(t).startswith(("http://", "https://")):
            reason = _probe(mlflow_uri(t).rstrip("/") + "/health")
        elif t["backend"] == "wandb" and not t["offline"]:
            reason = _probe(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"), server_errors=False)
            reason = reason or (
                None if _wandb_credentials() else "no W&B credentials (WANDB_API_KEY or wandb login)"
            )
        _PROBED[key] = reason
    return _PROBED[key]


def _wandb_credentials() -> bool:
    import netrc

    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _local(t: dict, reason: str | None) -> dict:
    """``t`` with W&B switched to offline files when its servers cannot be reached."""
    if reason and t["backend"] == "wandb":
        log.warning("W&B cannot be reached (%s): writing offline run files instead (wandb sync)", reason)
        return {**t, "offline": True}
    return t


def environment(t: dict, name: str, key: str, tags: dict) -> dict[str, str]:
    """What transformers' integrations read (and where trackio keeps its store)."""
    Path(t["dir"]).mkdir(parents=True, exist_ok=True)
    if t["backend"] == "trackio":
        return {"TRACKIO_DIR": str(Path(t["dir"]).resolve())}
    if t["backend"] == "wandb":
        return {
            "WANDB_PROJECT": t["project"],
            "WANDB_DIR": str(Path(t["dir"]).resolve()),
            "WANDB_MODE": "offline" if t["offline"] else "online",
            "WANDB_RUN_ID": key,
            "WANDB_RESUME": "allow",
            "WANDB_SILENT": "true",
            "WANDB_DISABLE_CODE": "true",
        }
    return {
        "MLFLOW_TRACKING_URI": mlflow_uri(t),
        "MLFLOW_EXPERIMENT_NAME": t["project"],
        "MLFLOW_RUN_ID": _mlflow_run(t, name, key, tags),
        # an unreachable server fails fast (checked first, see unreachable)
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    }


def training_setup(t: dict | None, run: str, key: str, hashes: dict) -> tuple[dict, dict | None]:
    """(TrainingArguments to add, the record for metrics.json) for training run ``run``; sets
    the environment the tracker integration reads. ``key``: the run's content key."""
    if t is None:
        return {}, None
    reason = unreachable(t)
    t = _local(t, reason)
    key = key[:16]
    name = f"{run}-{key[:8]}"
    record = {"backend": t["backend"], "project": t["project"], "run": name, "id": key}
    if reason and t["backend"] != "wandb":
        log.warning("tracker %s cannot be reached (%s): this run is not tracked", t["backend"], reason)
        return {}, {**record, "status": f"not reached: {reason}"}
    try:
        env = environment(t, name, key, {"deltaflow.run": run, **hashes})
    except Exception as e:  # noqa: BLE001 - the files are the record; a tracker failure is a warning
        log.warning("tracker %s failed (%s: %s): this run is not tracked", t["backend"], type(e).__name__, e)
        return {}, {**record, "status": f"failed: {type(e).__name__}: {e}"}
    os.environ.update(env)
    args = {"report_to": [t["backend"]], "run_name": name, "project": t["project"]}
    where = (
        {"run_id": env["MLFLOW_RUN_ID"], "uri": env["MLFLOW_TRACKING_URI"]} if "MLFLOW_RUN_ID" in env else {}
    )
    return args, {
        **record,
        **where,
        "status": "tracked",
        "offline": t["offline"] if t["backend"] == "wandb" else None,
    }


def _mlflow_client(t: dict):
    # fail fast rather than retry for minutes (MLflow's defaults: 7 retries, 120 s each)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    from mlflow import MlflowClient

    return MlflowClient(mlflow_uri(t))


def _mlflow_experiment(client, t: dict) -> str:
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(t["project"])
    if exp is not None:
        return exp.experiment_id
    local = not mlflow_uri(t).startswith(("http://", "https://"))
    # a local store keeps its artifacts (the records tables) beside it, not in ./mlruns
    where = Path(t["dir"]).resolve() / "mlflow-artifacts" if local else None
    try:
        return client.create_experiment(t["project"], artifact_location=where.as_uri() if where else None)
    except MlflowException:  # another job created it first (parallel training jobs)
        exp = client.get_experiment_by_name(t["project"])
        if exp is None:
            raise
        return exp.experiment_id


def _mlflow_run(t: dict, name: str, key: str, tags: dict) -> str:
    """The MLflow run tagged with ``key`` in the project's experiment, created if none is."""
    client = _mlflow_client(t)
    exp = _mlflow_experiment(client, t)
    found = client.search_runs([exp], filter_string=f"tags.`deltaflow.key` = '{key}'", max_results=1)
    if found:
        return found[0].info.run_id
    run = client.create_run(
        exp, run_name=name, tags={"deltaflow.key": key, **{k: str(v) for k, v in tags.items()}}
    )
    client.set_terminated(run.info.run_id)  # transformers' callback starts it again
    return run.info.run_id


class TrackerConfig:
    """A TrainerCallback (built by ``tracker_callback``) that adds the run's hashes to the config
    of the tracker run that transformers' integration opened (it runs after it: report_to
    callbacks come first). MLflow has them already, as the run's tags."""

    def __init__(self, backend: str, values: dict):
        self.backend, self.values = backend, values

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.backend == "wandb":
            import wandb

            if wandb.run is not None:
                wandb.run.config.update(self.values, allow_val_change=True)
        elif self.backend == "trackio":
            import trackio

            trackio.config.update(self.values)


def tracker_callback(record: dict | None, values: dict):
    """The callback for a tracked run (None when it is not)."""
    if not record or record["status"] != "tracked" or record["backend"] == "mlflow":
        return None
    from transformers import TrainerCallback

    cls = type("TrackerConfigCallback", (TrackerConfig, TrainerCallback), {})
    return cls(record["backend"], values)


def records_table(records: list[dict]) -> pd.DataFrame:
    """Per-item records as a flat table: scalar fields as they are, lists and dicts as JSON."""
    rows = [
        {k: v if isinstance(v, (str, int, float, bool)) or v is None else json.dumps(v) for k, v in r.items()}
        for r in records
    ]
    return pd.DataFrame(rows)


def log_model(t: dict, model: str, key: str, config: dict, metrics: dict, tables: dict) -> dict:
    """One tracker run for ``model``: ``metrics`` (name -> number), ``config`` (its identity and
    gate verdict), ``tables`` (benchmark -> records DataFrame). Returns what was written where;
    a tracker that fails is a warning and a ``status`` saying why, never an exception."""
    reason = unreachable(t)
    t = _local(t, reason)
    record = {"backend": t["backend"], "project": t["project"], "model": model, "id": key}
    if reason and t["backend"] != "wandb":
        log.warning("tracker %s cannot be reached (%s): %s is not logged", t["backend"], reason, model)
        return {**record, "status": f"not reached: {reason}"}
    try:
        where = {"trackio": _log_trackio, "mlflow": _log_mlflow, "wandb": _log_wandb}[t["backend"]](
            t, model, key, config, metrics, tables
        )
    except Exception as e:  # noqa: BLE001 - the files are the record; a tracker failure is a warning
        log.warning("tracker %s failed for %s: %s: %s", t["backend"], model, type(e).__name__, e)
        return {**record, "status": f"failed: {type(e).__name__}: {e}"}
    return {**record, **where, "status": "logged"}


def _log_trackio(t, model, key, config, metrics, tables) -> dict:
    os.environ["TRACKIO_DIR"] = str(Path(t["dir"]).resolve())  # read when trackio is imported
    import trackio

    name = f"{model}-{key[:8]}"
    trackio.init(project=t["project"], name=name, config=config, resume="allow", embed=False)
    trackio.log(metrics)
    trackio.log({f"records/{b}": trackio.Table(dataframe=df) for b, df in tables.items()})
    trackio.finish()
    return {"run": name}


def _log_mlflow(t, model, key, config, metrics, tables) -> dict:
    client = _mlflow_client(t)
    run_id = _mlflow_run(t, model, key, {"deltaflow.model": model})
    client.update_run(run_id, status="RUNNING")
    try:
        _mlflow_values(client, run_id, config, metrics, tables)
    finally:
        client.set_terminated(run_id)
    return {"run": run_id, "uri": mlflow_uri(t)}


def _mlflow_values(client, run_id: str, config: dict, metrics: dict, tables: dict) -> None:
    from mlflow.entities import Metric

    for k, v in config.items():  # tags: a rerun may change them (params are write-once)
        client.set_tag(run_id, k, json.dumps(v) if isinstance(v, (dict, list)) else str(v))
    # the time orders a rerun's values after the last ones (MLflow shows the latest); MLflow's
    # metric names allow no '@' (a gate's <axis>@<metric> row): ':' instead
    now = int(time.time() * 1000)
    ms = [Metric(re.sub(r"[^/\w.\- :]", ":", k), float(v), now, 0) for k, v in metrics.items()]
    for i in range(0, len(ms), 1000):  # MLflow's batch limit
        client.log_batch(run_id, metrics=ms[i : i + 1000])
    # MlflowClient.log_table appends to a table already there, and a rerun must replace it: the
    # same file (log_table's layout, pandas' split orient) written whole, and the tag that makes
    # the UI list it as a table, as log_table sets it
    files = [f"records/{bench}.json" for bench in tables]
    for file, df in zip(files, tables.values()):
        client.log_text(run_id, df.to_json(orient="split", index=False, date_format="iso"), file)
    client.set_tag(
        run_id, "mlflow.loggedArtifacts", json.dumps([{"path": f, "type": "table"} for f in files])
    )


def _log_wandb(t, model, key, config, metrics, tables) -> dict:
    import wandb

    run = wandb.init(
        project=t["project"],
        id=key,
        name=model,
        resume="allow",
        mode="offline" if t["offline"] else "online",
        dir=str(Path(t["dir"]).resolve()),
        config=config,
        settings=wandb.Settings(silent=True, console="off", x_disable_stats=True, save_code=False),
        reinit="create_new",
    )
    run.summary.update(metrics)
    run.log({f"records/{b}": wandb.Table(dataframe=df) for b, df in tables.items()})
    run.finish()
    return {"run": key, "dir": str(run.dir) if t["offline"] else None}
