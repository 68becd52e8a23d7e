"""Rule gguf_convert: one GGUF file from a merged model with llama.cpp's converter (f32, f16 or
bf16), with a manifest of the tool, time, size and hashes."""

from pathlib import Path

from deltaflow import gguf_export
from deltaflow.provenance import write_manifest
from deltaflow.rulekit import start_job

started = start_job(snakemake)
inp, out, w = snakemake.input, snakemake.output, snakemake.wildcards
info = {
    **gguf_export.convert(Path(snakemake.params.model_dir), Path(out.gguf), w.ctype),
    **gguf_export.check_gguf(Path(out.gguf)),
}
write_manifest(
    out.manifest,
    "gguf",
    inputs={"merged": inp.merged, "gguf": out.gguf, "code": list(inp.code)},
    params={"model": w.export, "type": info["type"]},
    started=started,
    extra=info,
)
