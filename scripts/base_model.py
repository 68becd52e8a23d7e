"""Rule base_model: write the base model as safetensors with its manifest."""

from pathlib import Path

from deltaflow.basemodel import materialize_base
from deltaflow.io import atomic_dir, sha256_path
from deltaflow.provenance import write_manifest
from deltaflow.rulekit import start_job

started = start_job(snakemake)
out_dir = Path(snakemake.output.manifest).parent
with atomic_dir(out_dir) as tmp:
    source_info = materialize_base(snakemake.params.source, tmp)
    weights = sha256_path(tmp)
    write_manifest(
        tmp / "manifest.json",
        "base_model",
        params={"source": snakemake.params.source},
        inputs={"code": list(snakemake.input.code)},
        started=started,
        extra={"source": source_info, "weights_sha256": weights},
    )
