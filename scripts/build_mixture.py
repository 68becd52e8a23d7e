"""Rule mixture: build one SFT mixture from normalized datasets."""
from pathlib import Path

from transformers import AutoTokenizer

from deltaflow.io import read_jsonl, write_jsonl
from deltaflow.mixture import build_mixture
from deltaflow.provenance import write_manifest
from deltaflow.rulekit import start_job

started = start_job(snakemake)  # noqa: F821
name, spec = snakemake.wildcards.mixture, snakemake.params.spec
rows_by_dataset = {Path(p).parent.name: read_jsonl(p) for p in snakemake.input.rows}
tok = AutoTokenizer.from_pretrained(Path(snakemake.input.base).parent)


def count_tokens(row):
    text = tok.apply_chat_template(row["messages"], tokenize=False) if row.get("messages") \
        else row.get("text", "")
    return len(tok(text, add_special_tokens=False)["input_ids"])


rows, manifest = build_mixture(name, spec, rows_by_dataset, count_tokens)
write_jsonl(snakemake.output.train, rows)
write_manifest(snakemake.output.manifest, "mixture",
               inputs={**{f"dataset:{Path(p).parent.name}": p for p in snakemake.input.rows},
                       "base": snakemake.input.base, "code": list(snakemake.input.code)},
               params={"name": name, "spec": spec}, started=started,
               extra={"mixture": manifest.to_dict(), "token_counter": "base tokenizer, chat template"})
