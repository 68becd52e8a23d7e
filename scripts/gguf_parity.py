"""Rule gguf_parity: a GGUF file vs the HF model it was converted from, on a fixed prompt set."""

from pathlib import Path

from deltaflow.io import write_json
from deltaflow.llamacpp import parity_report, read_prompts, thresholds_for
from deltaflow.rulekit import start_job

start_job(snakemake)
inp, p, w = snakemake.input, snakemake.params, snakemake.wildcards
report = parity_report(
    Path(p.model_dir),
    Path(inp.gguf),
    read_prompts(Path(inp.prompts)),
    gguf_type=w.gtype,
    thresholds=thresholds_for(w.gtype, p.thresholds),
    max_new_tokens=p.max_new_tokens,
    threads=snakemake.threads,
)  # the job's threads: the profile may lower them
report["model"] = f"{w.export}.{w.gtype}.gguf"
write_json(snakemake.output[0], report)
