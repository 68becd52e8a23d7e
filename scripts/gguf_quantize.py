"""Rule gguf_quantize: one quantized GGUF file from the f16 one with llama.cpp's quantizer, with a
manifest of the tool, time, size and hashes."""

from pathlib import Path

from deltaflow import gguf_export
from deltaflow.provenance import write_manifest
from deltaflow.rulekit import start_job

started = start_job(snakemake)
inp, out, w = snakemake.input, snakemake.output, snakemake.wildcards
# the job's threads: the profile may lower them
info = {
    **gguf_export.quantize(Path(inp.source), Path(out.gguf), w.qtype, threads=snakemake.threads),
    **gguf_export.check_gguf(Path(out.gguf)),
}
write_manifest(
    out.manifest,
    "gguf",
    inputs={"source": inp.source, "gguf": out.gguf, "code": list(inp.code)},
    params={"model": w.export, "type": info["type"]},
    started=started,
    extra=info,
)
