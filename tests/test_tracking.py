"""Experiment trackers (tracking:, deltaflow.tracking), each against the real library, offline:
trackio's local store read back through its own API, MLflow through a real `mlflow server` on
127.0.0.1 (SQLite backend) read back with MlflowClient, W&B's offline run files read back with
its own reader. Each writes a tiny training run's live loss (TRL's report_to) with the run's
hashes, and one model's results twice (a rerun updates the same tracker run). A tracker that
cannot be reached is a warning, not a failure."""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, config_errors, copy_run, tiny_config, write_config

from deltaflow.tracking import log_model, training_setup

JOB = Path(__file__).parent / "fixtures/tracked_job.py"


def settings(backend, tmp_path, **extra):
    return {
        "backend": backend,
        "project": "proj",
        "offline": True,
        "uri": None,
        "dir": str(tmp_path / "trk"),
        **extra,
    }


def tracked_job(tmp_path, t) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", WANDB_API_KEY="", PYTHONPATH=str(REPO / "scripts"))
    proc = subprocess.run(
        [sys.executable, str(JOB), str(tmp_path), json.dumps(t)],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def read_in_process(code: str, env: dict) -> dict:
    """Run ``code`` (which prints JSON) in a fresh interpreter: the trackers keep globals."""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
        env=dict(os.environ, **env), check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_settings_a_backend_would_not_read_are_refused():
    cfg = tiny_config()
    cfg["tracking"] = {"backend": "trackio", "uri": "http://127.0.0.1:5000", "offline": False}
    err = config_errors(cfg)
    assert "config key 'tracking.uri': only the mlflow backend reads a URI (backend is trackio)" in err
    assert (
        "config key 'tracking.offline': false sends runs to W&B's servers, and the backend is trackio" in err
    )
    cfg = tiny_config()
    cfg["recipes"]["tiny_lora"]["trainer_args"] = {"report_to": ["wandb"]}
    assert "tracking.backend" in config_errors(cfg)


def test_trackio_holds_the_live_loss_and_one_run_per_model(tmp_path):
    t = settings("trackio", tmp_path)
    out = tracked_job(tmp_path, t)
    assert out["tracking"] == {
        "backend": "trackio",
        "project": "proj",
        "run": "run_a-kkkkkkkk",
        "id": "k" * 16,
        "status": "tracked",
        "offline": None,
    }
    assert [r["status"] for r in out["logged"]] == ["logged", "logged"]
    back = read_in_process(
        "import json\nfrom trackio.sqlite_storage import SQLiteStorage as S\n"
        "logs = S.get_logs('proj', 'run_a-kkkkkkkk')\n"
        "runs = S.get_runs('proj')\n"
        "ev = [r for r in runs if r != 'run_a-kkkkkkkk']\n"
        "print(json.dumps({'runs': runs, 'loss': [l.get('train/loss') for l in logs if 'train/loss' in l],"
        " 'config': S.get_run_config('proj', 'run_a-kkkkkkkk'), 'eval_config': S.get_run_config('proj', ev[0]),"
        " 'eval_logs': S.get_logs('proj', ev[0])}, default=str))",
        {"TRACKIO_DIR": t["dir"]},
    )
    # the training run and ONE run for the model's results (logged twice: updated, not duplicated)
    assert len(back["runs"]) == 2 and "run_a-kkkkkkkk" in back["runs"]
    assert back["loss"] == pytest.approx([c["loss"] for c in out["loss_curve"]], rel=1e-4)
    assert back["config"]["deltaflow.recipe_sha256"] == "r" * 64
    assert back["eval_config"]["gates.passes"] is True  # the rerun's verdict
    scores = [log["score/arithmetic"] for log in back["eval_logs"] if "score/arithmetic" in log]
    assert scores and scores[-1] == 50.0
    tables = [log["records/arithmetic"] for log in back["eval_logs"] if "records/arithmetic" in log]
    assert tables and "doc_id" in json.dumps(tables[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    mlflow = REPO / ".venv-mlflow/bin/mlflow"
    if not mlflow.exists():
        pytest.skip("needs .venv-mlflow (make test: make mlflow-env installs the MLflow server)")
    port = _free_port()
    server_log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=subprocess.DEVNULL, stderr=server_log, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            break
        except OSError:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(1)
    else:
        raise AssertionError("mlflow server did not answer: " + (tmp_path / "server.log").read_text()[-3000:])
    yield url
    os.killpg(proc.pid, 15)
    proc.wait(timeout=30)
    server_log.close()


def test_mlflow_server_holds_the_live_loss_and_one_run_per_model(tmp_path, mlflow_server):
    t = settings("mlflow", tmp_path, uri=mlflow_server)
    out = tracked_job(tmp_path, t)
    assert out["tracking"]["status"] == "tracked" and [r["status"] for r in out["logged"]] == ["logged"] * 2
    assert out["logged"][0]["run"] == out["logged"][1]["run"]  # the rerun updated the same run
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("proj")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 2
    train = client.get_run(out["tracking"]["run_id"])
    assert train.data.tags["deltaflow.key"] == "k" * 16
    history = client.get_metric_history(train.info.run_id, "loss")
    assert [m.value for m in history] == pytest.approx([c["loss"] for c in out["loss_curve"]], rel=1e-4)
    assert train.data.tags["deltaflow.recipe_sha256"] == "r" * 64
    ev = client.get_run(out["logged"][1]["run"])
    assert ev.data.metrics["score/arithmetic"] == 50.0 and ev.data.tags["gates.passes"] == "True"
    assert ev.data.metrics["delta_pts/arithmetic"] == 13.5  # the rerun's value is the latest
    assert ev.data.metrics["delta_pts/target:pass:1"] == 7.0  # MLflow's names allow no '@'
    assert ev.info.status == "FINISHED"
    local = client.download_artifacts(ev.info.run_id, "records/arithmetic.json", str(tmp_path))
    table = json.loads(Path(local).read_text())
    assert "doc_id" in table["columns"] and len(table["data"]) == 2


def wandb_records(path: Path) -> list:
    """The records of a W&B run file (``run-<id>.wandb``), parsed with W&B's own protobuf
    classes. The framing is LevelDB's log format under a 7-byte ``:W&B`` header; wandb 0.31
    writes it from its Go core and no longer ships the Python reader (sdk.internal.datastore)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B", path
    pos, records, pending = 7, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header: padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 2):  # FULL, FIRST
            pending = chunk
        elif kind in (3, 4):  # MIDDLE, LAST
            pending += chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def wandb_run(path: Path) -> dict:
    """A run file's id, history rows, config and summary (JSON values, keys joined by '/')."""
    key = lambda item: item.key or "/".join(item.nested_key)
    out = {"history": [], "config": {}, "summary": {}}
    for r in wandb_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out["id"] = r.run.run_id
            out["config"].update({i.key: json.loads(i.value_json) for i in r.run.config.update})
        elif kind == "history":
            out["history"].append({key(i): json.loads(i.value_json) for i in r.history.item})
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in r.config.update})
        elif kind == "summary":
            out["summary"].update({key(i): json.loads(i.value_json) for i in r.summary.update})
    return out


def test_wandb_offline_run_files_hold_the_live_loss_and_the_results(tmp_path):
    t = settings("wandb", tmp_path)
    out = tracked_job(tmp_path, t)
    assert out["tracking"]["status"] == "tracked" and out["tracking"]["offline"] is True
    assert [r["status"] for r in out["logged"]] == ["logged", "logged"]
    runs = [wandb_run(f) for f in sorted((tmp_path / "trk/wandb").glob("offline-run-*/run-*.wandb"))]
    train = [r for r in runs if r["id"] == "k" * 16]
    assert len(train) == 1
    loss = [h["train/loss"] for h in train[0]["history"] if "train/loss" in h]
    assert loss == pytest.approx([c["loss"] for c in out["loss_curve"]], rel=1e-4)
    assert train[0]["config"]["deltaflow.recipe_sha256"] == "r" * 64
    results = [r for r in runs if r["id"] == out["logged"][0]["run"]]
    assert len(results) == 2  # the rerun resumed the same run id offline (wandb sync merges them)
    last = results[-1]
    assert last["summary"]["score/arithmetic"] == 50.0 and last["config"]["gates.passes"] is True
    (path,) = {h["records/arithmetic/path"] for h in last["history"] if "records/arithmetic/path" in h}
    run_dir = max((tmp_path / "trk/wandb").glob(f"offline-run-*-{last['id']}*"))
    table = json.loads((run_dir / "files" / path).read_text())  # W&B's table file
    assert "doc_id" in table["columns"] and len(table["data"]) == 2


def test_an_unreachable_tracker_is_a_warning_and_costs_seconds(tmp_path, caplog):
    t = settings("mlflow", tmp_path, uri=f"http://127.0.0.1:{_free_port()}")
    t0 = time.time()
    args, record = training_setup(t, "run_a", "k" * 64, {})
    logged = log_model(t, "run_a", "x" * 16, {}, {"score/a": 1.0}, {})
    assert time.time() - t0 < 15
    assert args == {} and record["status"].startswith("not reached: http://127.0.0.1:")
    assert logged["status"].startswith("not reached")
    assert "cannot be reached" in caplog.text


@pytest.mark.e2e
def test_the_workflow_logs_every_model_to_the_tracker(tiny_workflow, tmp_path):
    """Tracking turned on over a finished run: no training or eval job reruns (tracking: is no
    parameter of theirs; only the card, which records the config's hash), and every model gets
    its tracker run."""
    run = copy_run(tiny_workflow, tmp_path)
    cfg = run.cfg
    cfg["tracking"] = {"backend": "trackio", "project": "tiny"}
    proc = run.snakemake(configfile=write_config(run.work, cfg))
    out = proc.stdout + proc.stderr
    ran = set(re.findall(r"^(?:local)?rule (\w+):", out, re.MULTILINE)) - {"all"}
    assert "track_results" in ran and ran <= {"track_results", "model_card", "release_check"}, out[-3000:]
    tracked = json.loads((run.work / "results/tables/tracking.json").read_text())
    models = {r["model"] for r in tracked["models"]}
    assert {"base", "run_a", "run_b"} <= models and {r["status"] for r in tracked["models"]} == {"logged"}
    back = read_in_process(
        "import json\nfrom trackio.sqlite_storage import SQLiteStorage as S\nprint(json.dumps(S.get_runs('tiny')))",
        {"TRACKIO_DIR": str(run.work / "tracking")},
    )
    assert len(back) == len(models)
