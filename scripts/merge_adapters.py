"""Rule merge_adapters: one adapter combination or coefficient-sweep arm (PEFT add_weighted_adapter),
or of whole models (method full runs: mergekit)."""

from pathlib import Path

from deltaflow.io import atomic_dir, safetensors_sha256
from deltaflow.merging import combine_adapters, merge_models
from deltaflow.provenance import write_manifest
from deltaflow.rulekit import start_job

started = start_job(snakemake)
p, inp = snakemake.params, snakemake.input
spec = p.spec
out_dir = Path(snakemake.output.manifest).parent
with atomic_dir(out_dir) as tmp:
    inputs = (Path(inp.base).parent, {m: Path(d) for m, d in p.adapter_dirs.items()}, spec["adapters"], tmp)
    common = {"method": spec["method"], "density": spec.get("density"), "seed": spec.get("seed", 0)}
    if p.form == "full":
        info = merge_models(*inputs, **common)
        info["weights_sha256"] = safetensors_sha256(tmp)  # a whole model: its identity
    else:
        info = combine_adapters(
            *inputs,
            **common,
            majority_sign_method=spec.get("majority_sign_method", "total"),
            svd_rank=spec.get("svd_rank"),
        )
    # the manifest records what the merge is made of: its inputs (with hashes), weights and method
    write_manifest(
        tmp / "manifest.json",
        "merge",
        inputs={"adapters": list(inp.adapters), "base": inp.base, "code": list(inp.code)},
        params={"merge": snakemake.wildcards.merge, **spec, "adapter_dirs": p.adapter_dirs},
        started=started,
        extra=info,
    )
