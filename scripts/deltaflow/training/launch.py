"""Training one adapter on several processes (data parallel) inside one job.

``train.processes: N`` (default: one per GPU the job requests, ``train.gpus``) runs the
training through ``torch.distributed.run`` (torchrun): N processes, each holding the model (DDP)
or a shard of it (``train.strategy: fsdp``, FSDP through accelerate inside HF's Trainer), each
reading 1/N of every global batch. HF Trainer picks the process group up from torchrun's
environment; on CPU the backend is gloo, which is how the tests run a 2-process job here.

Why torchrun and not ``accelerate launch``: on GPUs the two start the same processes (accelerate
launch calls torchrun), but accelerate's launcher runs several CPU processes only through MPI,
which the CPU path (and the tests) would then need. The Trainer itself still runs on accelerate.

What stays the same as one process: the global batch (``batch_size`` is global: each process
takes ``batch_size / N``), the data order (the samplers are seeded, and a length-grouped
sampler groups by the global batch: training.data._epoch_seeded), the seed, the checkpoints and
resume (rank 0 writes; every rank restores its RNG). Rank 0 saves the adapter and writes the
metrics; the launcher returns them.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from ..errors import DeltaflowError
from ..io import read_jsonl, write_json
from .runner import train_adapter
from .world import is_main_process

log = logging.getLogger(__package__)  # one logger for the package: "deltaflow.training"


def launch(job: dict, processes: int, work_dir: Path) -> dict:
    """Run ``runner.train_adapter(**job)`` on ``processes`` processes; its metrics (rank 0's).

    ``job`` holds train_adapter's keyword arguments (paths as strings); the rows travel in a
    JSONL file beside the job. Each process logs to this job's log (stderr), prefixed by torchrun
    with its rank. A failed process fails the job with torchrun's exit code."""
    work_dir.mkdir(parents=True, exist_ok=True)
    job_file, metrics_file = work_dir / "job.json", work_dir / "metrics.json"
    metrics_file.unlink(missing_ok=True)
    write_json(job_file, {**job, "metrics_file": str(metrics_file)})
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={processes}",
        "--tee=3",
        "-m",
        "deltaflow.training.launch",
        str(job_file),
    ]
    log.info("training on %d processes (%s): %s", processes, job.get("strategy", "ddp"), " ".join(cmd))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")])
        ),
    }
    rc = subprocess.call(cmd, env=env, stdout=sys.stderr, stderr=sys.stderr)
    if rc != 0 or not metrics_file.exists():
        raise DeltaflowError(
            f"distributed training ({processes} processes) failed with exit code {rc}; "
            "each process's error is in this job's log above (torchrun prefixes lines "
            "with the rank)"
        )
    return json.loads(metrics_file.read_text())


def main(job_file: str) -> None:
    """One torchrun process: train, and on rank 0 write the metrics for the launcher."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s rank{os.environ.get('RANK', '0')} %(name)s %(levelname)s %(message)s",
    )
    job = json.loads(Path(job_file).read_text())
    metrics_file = Path(job.pop("metrics_file"))
    rows = read_jsonl(job.pop("rows_file"))
    for key in ("base_dir", "out_dir", "init_dir", "resume_dir"):
        if job.get(key):
            job[key] = Path(job[key])
    metrics = train_adapter(rows=rows, **job)
    if is_main_process():
        write_json(metrics_file, metrics)


if __name__ == "__main__":
    main(sys.argv[1])
