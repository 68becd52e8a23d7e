"""Rule inspect_view: every model x benchmark's per-item records as an Inspect AI eval log
(results/viewer/logs/<model>__<benchmark>.eval) and `inspect view bundle`'s static site over them
(results/viewer/site/). Both run in viewer.python's environment (inspect_ai's own log classes and
CLI, scripts/viewer/inspect_writer.py); this job only lists what to write."""

import logging
import subprocess
from pathlib import Path

from deltaflow.errors import DeltaflowError
from deltaflow.io import atomic_dir, read_json, write_json
from deltaflow.rulekit import start_job

start_job(snakemake)
log = logging.getLogger("inspect_view")
p = snakemake.params
python = Path(p.python)
with atomic_dir(Path(snakemake.output[0])) as tmp:
    logs, named = [], set()
    # the eval jobs' summaries, then the finalists' (a model's benchmarks that ran after the
    # selection; one the model already ran in its eval job keeps that log)
    for path in snakemake.input.summaries:
        summary = read_json(path)
        for bench, entry in sorted(summary["benchmarks"].items()):
            if (summary["model"], bench) in named:
                continue
            named.add((summary["model"], bench))
            metrics = read_json(entry["metrics"])
            logs.append(
                {
                    "model": summary["model"],
                    "benchmark": bench,
                    "metric": metrics.get("metric") or "score",
                    "score": metrics["score"],
                    "records": str(Path(entry["samples"]).resolve()),
                    "out": str((tmp / "logs" / f"{summary['model']}__{bench}.eval").resolve()),
                    # when its results were made: the eval (or judge) job's manifest
                    "created": metrics["manifest"]["finished"],
                    "judged": Path(path).parent.parent.name == "judged",
                }
            )
    spec = tmp / "spec.json"
    write_json(spec, {"logs": logs})
    for cmd in (
        [str(python), snakemake.input.writer, str(spec)],
        [
            str(python.parent / "inspect"),
            "view",
            "bundle",
            "--log-dir",
            str(tmp / "logs"),
            "--output-dir",
            str(tmp / "site"),
        ],
    ):
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        log.info("%s\n%s", " ".join(cmd), (proc.stdout + proc.stderr).strip())
        if proc.returncode:
            raise DeltaflowError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    spec.unlink()
