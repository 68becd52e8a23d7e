"""Rule adapter: train one (mixture x recipe) LoRA adapter with TRL + PEFT."""
from pathlib import Path

from deltaflow.io import atomic_dir, read_jsonl, write_json
from deltaflow.provenance import write_manifest
from deltaflow.rulekit import start_job
from deltaflow.training import train_sft_adapter

started = start_job(snakemake)  # noqa: F821
p = snakemake.params
out_dir = Path(snakemake.output.manifest).parent
rows = read_jsonl(snakemake.input.train)
with atomic_dir(out_dir) as tmp:
    metrics = train_sft_adapter(Path(snakemake.input.base).parent, rows, p.recipe, tmp,
                                device=p.device, chat_template_path=p.chat_template_path)
    write_json(tmp / "recipe.json", {"run": snakemake.wildcards.run, "mixture": p.mixture,
                                     "recipe": p.recipe, "device": p.device})
    write_json(tmp / "metrics.json", metrics)
    write_manifest(tmp / "manifest.json", "adapter",
                   inputs={"train": snakemake.input.train, "base": snakemake.input.base,
                           "code": list(snakemake.input.code)},
                   params={"run": snakemake.wildcards.run, "mixture": p.mixture,
                           "recipe": p.recipe, "device": p.device}, started=started)
