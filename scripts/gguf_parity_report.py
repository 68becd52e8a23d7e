"""Rule gguf_parity_report: every GGUF's parity verdict, size and export time in one table."""

from deltaflow.io import read_json, write_text
from deltaflow.llamacpp import parity_table
from deltaflow.rulekit import start_job

start_job(snakemake)
inp, out = snakemake.input, snakemake.output
df = parity_table([read_json(r) for r in inp.reports], {m: read_json(m) for m in inp.models})
write_text(out.csv, df.to_csv(index=False))
write_text(
    out.md,
    "# GGUF parity vs the HF merged model\n\n"
    + df.to_markdown(index=False, floatfmt=".4g")
    + "\n\nmean KL is KL(HF || GGUF) of the next-token distributions, averaged over every "
    "prompt position (nats); top-1 is the share of positions whose argmax agrees; greedy "
    "is the share of prompts whose greedy continuation is identical. A GGUF that fails is "
    "flagged in the delta table and cannot be chosen for release.\n",
)
