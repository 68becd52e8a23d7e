"""Rule adapter: train one (mixture x recipe) PEFT adapter with TRL (resumable)."""

import json
import shutil
from pathlib import Path

from deltaflow.bench.judging import label_of
from deltaflow.bench.served import ref_identity
from deltaflow.errors import DataError
from deltaflow.io import (
    atomic_dir,
    read_json,
    read_jsonl,
    safetensors_sha256,
    sha256_path,
    sha256_text,
    write_json,
    write_jsonl,
)
from deltaflow.provenance import write_manifest
from deltaflow.rulekit import start_job
from deltaflow.tracking import settings as tracking_settings
from deltaflow.training.launch import launch
from deltaflow.training.resume import prepare_resume_dir, training_resume_key
from deltaflow.training.runner import train_adapter

started = start_job(snakemake)
p = snakemake.params
run = snakemake.wildcards.run
out_dir = Path(snakemake.output.manifest).parent
rows = read_jsonl(snakemake.input.train)
val = p.recipe.get("val_dataset")  # a separate validation set: its split, its first `rows`
val_rows = (
    [r for r in read_jsonl(snakemake.input.val) if r["split"] == (val.get("split") or r["split"])][
        : val.get("rows")
    ]
    if val
    else None
)
if val is not None and not val_rows:
    raise DataError(
        f"val_dataset {val}: {snakemake.input.val} has no rows of that split; check recipes.*.val_dataset"
    )
# judge rewards: each judge's identity (its files' hashes, a hub revision, a workflow model's
# weights) decides the run like its recipe does, and goes into the resume key and the manifest
judges = {
    name: {"ref": ref, "identity": ref_identity(ref, Path(snakemake.input.base)), "judge": label_of(ref)}
    for name, ref in p.judges.items()
}
judged_by = {name: {"judge": j["judge"], "identity": j["identity"]} for name, j in judges.items()}
# Trainer checkpoints for resuming a killed attempt live beside the adapter; they are only
# reused for exactly these inputs (the key), and removed once the adapter is in place.
resume_dir = out_dir.parent / ".resume" / run
resume_key = training_resume_key(
    {
        "train": sha256_path(snakemake.input.train),
        "recipe": p.recipe,
        "base": read_json(snakemake.input.base)["weights_sha256"],
        "chat_template_path": p.chat_template_path,
        # continuing another run's adapter: its files are part of what this run is made from
        "init": sha256_path(snakemake.input.init) if p.init_dir else None,
        **({"val": sha256_path(snakemake.input.val)} if val else {}),
        **({"judges": judged_by} if judges else {}),
    },
    device=p.device,
)
job_base_dir = Path(snakemake.input.base).parent
# an experiment tracker (tracking:, read from the config, not params: turning it on retrains
# nothing): the tracker run is found by these hashes, and metrics.json names the tracker run
tracker = tracking_settings(snakemake.config)
tracked = (
    {
        "tracking": {
            "settings": tracker,
            "run": run,
            "key": resume_key,
            "hashes": {
                "deltaflow.run": run,
                "deltaflow.recipe_sha256": sha256_text(json.dumps(p.recipe, sort_keys=True)),
                "deltaflow.mixture": p.mixture,
                "deltaflow.mixture_sha256": sha256_path(snakemake.input.train),
                "deltaflow.resume_key": resume_key,
            },
        }
    }
    if tracker
    else {}
)
with atomic_dir(out_dir) as tmp:
    job = {
        "base_dir": job_base_dir,
        "recipe": p.recipe,
        "out_dir": tmp,
        "device": p.device,
        "chat_template_path": p.chat_template_path,
        "init_dir": Path(p.init_dir) if p.init_dir else None,
        "resume_dir": resume_dir,
        "resume_key": resume_key,
        "strategy": p.strategy,
        "benchmark_dirs": list(p.benchmark_dirs),
        **({"val_rows": val_rows} if val else {}),
        **tracked,
        **(
            {
                "judging": {
                    "rewards": judges,
                    "cache_dir": p.judge_cache,
                    # in this process, on the training device; a workflow model on this base
                    "load": {**p.judge_load, "device": p.device, "base_dir": str(job_base_dir)},
                }
            }
            if judges
            else {}
        ),
    }  # GRPO's verifier rewards read the registry
    if p.processes > 1:  # torchrun inside this job (training.launch); rank 0 writes the adapter
        prepare_resume_dir(resume_dir, resume_key)  # once, before the processes read it
        write_jsonl(resume_dir / "rows.jsonl", rows)
        metrics = launch(
            {
                **{k: str(v) if isinstance(v, Path) else v for k, v in job.items()},
                "rows_file": str(resume_dir / "rows.jsonl"),
            },
            p.processes,
            resume_dir / "launch",
        )
    else:
        metrics = train_adapter(rows=rows, **job)
    write_json(
        tmp / "recipe.json",
        {
            "run": run,
            "mixture": p.mixture,
            "recipe": p.recipe,
            "device": p.device,
            "init_from": p.init_from,
            "processes": p.processes,
            "strategy": p.strategy,
            **({"judges": judged_by} if judges else {}),
        },
    )
    write_json(tmp / "metrics.json", metrics)
    write_manifest(
        tmp / "manifest.json",
        "adapter",
        inputs={
            "train": snakemake.input.train,
            "base": snakemake.input.base,
            "code": list(snakemake.input.code),
            **({"init": snakemake.input.init} if p.init_dir else {}),
            **({"val": snakemake.input.val} if val else {}),
            **({"judge_models": list(snakemake.input.judge_models)} if snakemake.input.judge_models else {}),
        },
        params={
            "run": run,
            "mixture": p.mixture,
            "recipe": p.recipe,
            "device": p.device,
            "init_from": p.init_from,
            **({"judges": judged_by} if judges else {}),
        },
        started=started,
        extra={
            "resumed_from_step": metrics["resumed_from_step"],
            **({"tracking": metrics["tracking"]} if metrics.get("tracking") else {}),
            # a full fine-tune is a whole model: its weights' hash is its identity (eval cache, audit)
            **({"weights_sha256": safetensors_sha256(tmp)} if p.recipe["method"] == "full" else {}),
        },
    )
shutil.rmtree(resume_dir, ignore_errors=True)
try:
    resume_dir.parent.rmdir()  # results/adapters/.resume, once no other run is resuming
except OSError:
    pass
