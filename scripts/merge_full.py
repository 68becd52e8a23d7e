"""Rule merge_full: merge_and_unload an adapter into a full safetensors model."""

from pathlib import Path

from deltaflow.io import atomic_dir, safetensors_sha256
from deltaflow.merging import merge_full
from deltaflow.provenance import write_manifest
from deltaflow.rulekit import start_job

started = start_job(snakemake)
p, inp = snakemake.params, snakemake.input
out_dir = Path(snakemake.output.manifest).parent
with atomic_dir(out_dir) as tmp:
    info = merge_full(Path(inp.base).parent, Path(p.adapter_dir), tmp)
    info["weights_sha256"] = safetensors_sha256(tmp)
    write_manifest(
        tmp / "manifest.json",
        "merge_full",
        inputs={"adapter": inp.adapter, "base": inp.base, "code": list(inp.code)},
        params={
            "model": snakemake.wildcards.export,
            "adapter_dir": p.adapter_dir,
            "method": "merge_and_unload",
        },
        started=started,
        extra=info,
    )
