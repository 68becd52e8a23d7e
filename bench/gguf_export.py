"""GGUF export time, file sizes and parity per type, measured in one run on one model.

    .venv/bin/python bench/gguf_export.py [MODEL_DIR] [--types f16 q8_0 q4_k_m]

MODEL_DIR is a HF safetensors folder (default: the demo's merged model
results/models/merged/arith_lora, else the demo base results/models/base). Uses the same code
as the workflow's rules (llama.cpp's converter, llama.cpp's quantizer, the parity check on
config/parity_prompts.txt) and prints, per type: seconds, MB, size relative to the
safetensors weights, and the parity numbers.
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from deltaflow.gguf_export import CONVERTER_TYPES, convert, quantize
from deltaflow.llamacpp import parity_report, read_prompts, thresholds_for

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    default = ROOT / "results/models/merged/arith_lora"
    ap.add_argument(
        "model", nargs="?", type=Path, default=default if default.exists() else ROOT / "results/models/base"
    )
    ap.add_argument("--types", nargs="+", default=["f16", "q8_0", "q4_k_m"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    st_bytes = sum(f.stat().st_size for f in args.model.glob("*.safetensors"))
    prompts = read_prompts(ROOT / "config/parity_prompts.txt")
    print(f"model {args.model}: safetensors {st_bytes / 1e6:.1f} MB (fp32); {len(prompts)} parity prompts")
    tmp = Path(tempfile.mkdtemp(prefix="gguf_bench_"))
    try:
        f16 = tmp / "model-f16.gguf"
        rows = []
        t0 = time.time()
        info = convert(args.model, f16, "f16")
        rows.append(("f16", time.time() - t0, info["bytes"]))
        for t in args.types:
            if t == "f16":
                continue
            out = tmp / f"model-{t}.gguf"
            t0 = time.time()
            info = (
                convert(args.model, out, t) if t in CONVERTER_TYPES else quantize(f16, out, t, args.threads)
            )
            rows.append((t, time.time() - t0, info["bytes"]))
        print(
            f"{'type':8} {'export s':>9} {'MB':>8} {'vs fp32':>8} {'mean KL':>10} {'top-1':>6} "
            f"{'greedy':>7} {'max |dlogit|':>12} {'parity s':>9} verdict"
        )
        for t, secs, size in rows:
            if t not in args.types:
                continue
            t0 = time.time()
            rep = parity_report(
                args.model,
                tmp / f"model-{t}.gguf",
                prompts,
                gguf_type=t,
                thresholds=thresholds_for(t, {}),
                threads=args.threads,
            )
            s = rep["summary"]
            print(
                f"{t:8} {secs:9.1f} {size / 1e6:8.1f} {size / st_bytes:8.3f} {s['mean_kl']:10.2e} "
                f"{s['top1_agreement']:6.3f} {s['greedy_agreement']:7.3f} {s['max_abs_logit_diff']:12.3f} "
                f"{time.time() - t0:9.1f} {'PASS' if rep['passed'] else 'FAIL'} ({rep['reason']})"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
