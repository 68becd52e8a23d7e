"""Rule evaluate: one model x one benchmark through lm-eval; per-sample JSONL + metrics."""
from pathlib import Path

from deltaflow.evaluation import evaluate_model
from deltaflow.io import write_json, write_jsonl
from deltaflow.provenance import build_manifest
from deltaflow.rulekit import start_job

started = start_job(snakemake)  # noqa: F821
p = snakemake.params
adapter = Path(snakemake.input.adapter).parent if "adapter" in snakemake.input.keys() else None
records, metrics = evaluate_model(Path(snakemake.input.base).parent, p.spec, Path(snakemake.input.docs),
                                  adapter_dir=adapter, batch_size=p.batch_size, device=p.device)
metrics["model"] = snakemake.wildcards.model
metrics["manifest"] = build_manifest("eval", inputs=dict(snakemake.input.items()),
                                     params={"spec": p.spec, "batch_size": p.batch_size,
                                             "device": p.device}, started=started)
write_jsonl(snakemake.output.samples, records)
write_json(snakemake.output.metrics, metrics)
