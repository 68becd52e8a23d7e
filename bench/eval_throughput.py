"""Eval generation throughput: HF (transformers via lm-eval) vs vLLM (lm-eval's vllm model in
.venv-vllm) on the same prompts, measured in one run. Prints items/s, generated tokens/s and
the vLLM/HF ratio (the goal on a GPU: >= 10x).

    .venv/bin/python bench/eval_throughput.py [MODEL_DIR] [--n 32] [--max-gen-toks 64]
        [--benchmark gsm8k] [--device cpu] [--batch-size 16]

With --generation the prompts are the demo's self-replay generation (config/config.yaml
`generations.self_replay`: Alpaca's user turns through the chat template), built by the
generation stage's own code (deltaflow.generation), i.e. the generate rule's throughput.

MODEL_DIR: a HF folder (default: the demo's base, results/models/base). Both backends run the
workflow's own code path (bench.raw_outputs.generate_outputs; the vLLM one through the same worker
the eval rule starts), greedy, with the benchmark's prompts and stop sequences. vLLM's time
includes its start-up (reported separately, from the worker's wall time minus generation).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

from transformers import AutoTokenizer

from deltaflow.bench import registry
from deltaflow.bench.items import prepare_docs
from deltaflow.bench.raw_outputs import generate_outputs, load_model
from deltaflow.bench.vllm_backend import run_worker_job, vllm_python
from deltaflow.io import write_jsonl

ROOT = Path(__file__).resolve().parents[1]


def count_tokens(tok, raws) -> int:
    return sum(len(tok(r, add_special_tokens=False)["input_ids"]) for raw in raws for r in raw["responses"])


def generation_spec(args, docs: Path) -> dict:
    """The demo's self-replay generation as the generate rule builds it, n prompts, greedy."""
    from deltaflow.config import load_config
    from deltaflow.datasets import normalize_dataset
    from deltaflow.generation import eval_spec, prompt_docs

    cfg = load_config(ROOT / "config/config.yaml")
    gen = cfg["generations"]["self_replay"]
    gen["prompts"]["n"] = args.n
    gen["sampling"]["max_tokens"] = args.max_gen_toks
    rows = normalize_dataset(gen["prompts"]["dataset"], cfg["datasets"][gen["prompts"]["dataset"]]).rows
    write_jsonl(docs, prompt_docs("self_replay", gen, rows, verified=False))
    return eval_spec("self_replay", gen)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", type=Path, default=ROOT / "results/models/base")
    ap.add_argument("--benchmark", default="gsm8k")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--max-gen-toks", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument(
        "--generation",
        action="store_true",
        help="the demo's self-replay generation's prompts instead of a benchmark",
    )
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--skip-vllm", action="store_true", help="HF only (no .venv-vllm; the CPU smoke run)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="eval_bench_"))
    docs = tmp / "docs.jsonl"
    if args.generation:
        spec = generation_spec(args, docs)
        args.benchmark = spec.name
    else:
        spec = registry.benchmark_spec(
            args.benchmark, n=args.n, seed=1234, decoding={"max_gen_toks": args.max_gen_toks}
        )
        write_jsonl(docs, prepare_docs(spec))
    tok = AutoTokenizer.from_pretrained(args.model)
    print(
        f"model {args.model}, {args.benchmark} n={args.n}, greedy, max_gen_toks {args.max_gen_toks}, "
        f"device {args.device}"
    )
    rows = {}
    if not args.skip_hf:
        t0 = time.time()
        lm = load_model(args.model, batch_size=args.batch_size, device=args.device)
        load_s = time.time() - t0
        t0 = time.time()
        raws = generate_outputs(lm, spec, docs, tmp / "hf", chunk_size=args.n)
        gen_s = time.time() - t0
        rows["hf"] = (load_s, gen_s, count_tokens(tok, raws), raws)
        del lm
    if args.skip_vllm:
        load_s, secs, toks, _ = rows["hf"]
        print(
            f"hf: load {load_s:.1f} s, {args.n} items in {secs:.1f} s, {toks} tokens, {toks / secs:.1f} tokens/s"
        )
        return
    timing = run_worker_job(
        python=vllm_python(None),
        model_dir=args.model,
        arms=[
            {
                "model": "model",
                "adapter_dir": None,
                "benchmarks": [{"spec": spec.to_dict(), "docs": str(docs), "work_dir": str(tmp / "vllm")}],
            }
        ],
        chunk_size=args.n,
        options={"dtype": args.dtype, "max_model_len": 2048},
        job_dir=tmp,
    )
    raws = generate_outputs(None, spec, docs, tmp / "vllm", chunk_size=args.n)
    rows["vllm"] = (
        timing["load_s"],
        timing["generate_s"][f"model/{args.benchmark}"],
        count_tokens(tok, raws),
        raws,
    )
    print(f"{'backend':<8} {'load s':>8} {'gen s':>8} {'items/s':>8} {'gen tok':>8} {'tok/s':>8}")
    for name, (load_s, secs, toks, _) in rows.items():
        print(f"{name:<8} {load_s:>8.1f} {secs:>8.1f} {args.n / secs:>8.2f} {toks:>8d} {toks / secs:>8.1f}")
    print(f"vLLM worker wall time (start-up + generation + exit): {timing['wall_s']:.1f} s")
    if "hf" in rows:
        hf_tps = rows["hf"][2] / rows["hf"][1]
        v_tps = rows["vllm"][2] / rows["vllm"][1]
        same = sum(a["responses"] == b["responses"] for a, b in zip(rows["hf"][3], rows["vllm"][3]))
        print(
            f"vLLM / HF generated tokens/s: {v_tps / hf_tps:.2f}x; items/s: "
            f"{rows['hf'][1] / rows['vllm'][1]:.2f}x; identical greedy responses: {same}/{args.n}"
        )


if __name__ == "__main__":
    sys.exit(main())
