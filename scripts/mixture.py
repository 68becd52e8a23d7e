"""Rule mixture: build one training mixture from normalized datasets (+ report.md)."""

from collections import Counter
from pathlib import Path

from transformers import AutoTokenizer

from deltaflow.bench.scoring.parsers import answer_parser
from deltaflow.bench.spec import BenchmarkSpec
from deltaflow.decontam import ContaminationIndex, EvalItem
from deltaflow.io import read_json, read_jsonl, sha256_path, write_jsonl, write_text
from deltaflow.mixture import build_mixture, reason_kind
from deltaflow.mixture_report import render_report
from deltaflow.provenance import write_manifest
from deltaflow.rulekit import start_job

started = start_job(snakemake)
inp, params = snakemake.input, snakemake.params
name, spec = snakemake.wildcards.mixture, params.spec
rows_by_dataset = {Path(p).parent.name: read_jsonl(p) for p in inp.rows}
tok = AutoTokenizer.from_pretrained(Path(inp.base).parent)


def count_tokens(row):
    messages = list(row.get("messages") or [])
    if isinstance(row.get("chosen"), str):  # preference pair: prompt + chosen response
        messages.append({"role": "assistant", "content": row["chosen"]})
    text = tok.apply_chat_template(messages, tokenize=False) if messages else row.get("text", "")
    return len(tok(text, add_special_tokens=False)["input_ids"])


decon = spec["decontamination"]  # the validated config: defaults filled from deltaflow/schema.yaml
index = None
if decon["policy"] != "off" and inp.eval_items:
    items = [
        EvalItem(Path(p).parent.name, str(d["doc_id"]), d.get("text") or d["query"])
        for p in inp.eval_items
        for d in read_jsonl(p)
    ]
    index = ContaminationIndex(items, ngram=decon["ngram"], min_tokens=decon["min_tokens"])
parsers = {b: answer_parser(BenchmarkSpec.from_dict(s)) for b, s in params.label_specs.items()}
result = build_mixture(name, spec, rows_by_dataset, count_tokens, index=index, parsers=parsers)

input_files = {
    **{f"dataset:{Path(p).parent.name}": p for p in inp.rows},
    **{f"benchmark_items:{Path(p).parent.name}": p for p in inp.eval_items},
}
dataset_rejects = {Path(p).parent.name: read_json(p).get("rejected_by_reason", {}) for p in inp.datasets}
write_jsonl(snakemake.output.rejected, result.removed)
write_jsonl(snakemake.output.train, result.rows)
write_text(
    snakemake.output.report,
    render_report(
        result.manifest,
        hits=result.hits,
        removed=result.removed,
        dataset_rejects=dataset_rejects,
        inputs={k: sha256_path(v) for k, v in input_files.items()},
    ),
)
write_manifest(
    snakemake.output.manifest,
    "mixture",
    inputs={**input_files, "base": inp.base, "code": list(inp.code)},
    params={"name": name, "spec": spec},
    started=started,
    extra={
        "mixture": result.manifest.to_dict(),
        "hits": result.hits,
        "removed_by_reason": dict(Counter(reason_kind(r["reason"]) for r in result.removed)),
        "token_counter": "base tokenizer, chat template",
    },
)
