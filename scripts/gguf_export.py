"""Rules gguf_convert / gguf_quantize: one GGUF file (llama.cpp's converter, or its quantizer
on the f16 file) with a manifest of the tool, time, size and hashes."""
from pathlib import Path

from deltaflow import gguf_export
from deltaflow.provenance import write_manifest
from deltaflow.rulekit import start_job

started = start_job(snakemake)  # noqa: F821
inp, out, w = snakemake.input, snakemake.output, snakemake.wildcards  # noqa: F821
if "ctype" in w.keys():
    info = gguf_export.convert(Path(inp.merged).parent, Path(out.gguf), w.ctype)
    inputs = {"merged": inp.merged}
else:
    info = gguf_export.quantize(Path(inp.source), Path(out.gguf), w.qtype, threads=snakemake.threads)  # noqa: F821  (the job's threads: the profile may lower them)
    inputs = {"source": inp.source}
info.update(gguf_export.check_gguf(Path(out.gguf)))
write_manifest(out.manifest, "gguf", inputs={**inputs, "gguf": out.gguf, "code": list(inp.code)},
               params={"model": w.export, "type": info["type"]}, started=started, extra=info)
