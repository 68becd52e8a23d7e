"""Rule outside_model: import a model we did not train (`models:`) with its manifest."""

from pathlib import Path

from deltaflow.io import atomic_dir
from deltaflow.outside import import_outside_model
from deltaflow.provenance import write_manifest
from deltaflow.rulekit import start_job

started = start_job(snakemake)
out_dir = Path(snakemake.output.manifest).parent
with atomic_dir(out_dir) as tmp:
    imported = import_outside_model(snakemake.params.spec, tmp, Path(snakemake.input.base).parent)
    write_manifest(
        tmp / "manifest.json",
        "outside_model",
        params={"spec": snakemake.params.spec},
        inputs={"base": snakemake.input.base, "code": list(snakemake.input.code)},
        started=started,
        extra=imported,
    )
