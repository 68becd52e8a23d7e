"""A served model's throughput through deltaflow's client (bench.served): requests/s and
generated tokens/s at several concurrencies, against a server this script starts.

    .venv/bin/python bench/served_throughput.py --gguf results/gguf/arith_lora/model-f16.gguf \
        --tokenizer results/models/merged/arith_lora [--n 32] [--concurrency 1 4] [--max-gen-toks 64]
    .venv/bin/python bench/served_throughput.py --vllm results/models/base [--n 256] [--concurrency 8 32]

``--gguf`` starts llama-cpp-python's server (`python -m llama_cpp.server`, one slot: its
requests are served one at a time, so concurrency shows the client's overhead only);
``--vllm`` starts `vllm serve` from .venv-vllm (continuous batching: concurrency is where the
throughput comes from). The prompts are the demo's GSM8K docs (``--docs``), greedy, each
request a distinct prompt; the request cache is a fresh file per run, so every request goes
to the server. Prints one line per concurrency and the ratio to the first.
"""

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from deltaflow.bench.served import stop_group


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int, timeout: float = 600) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
            print(f"server up in {time.time() - t0:.1f} s: {' '.join(cmd[:4])} ...")
            return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited ({proc.returncode}): {' '.join(cmd)}") from None
            time.sleep(0.5)
    stop_group(proc)
    raise SystemExit("the server did not start")


def main() -> None:
    ap = argparse.ArgumentParser()
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--gguf", type=Path)
    src.add_argument("--vllm", type=Path, help="a transformers model folder for `vllm serve`")
    ap.add_argument("--tokenizer", type=Path, help="default: the --vllm folder")
    ap.add_argument("--docs", type=Path, default=ROOT / "results/benchmarks/gsm8k/docs.jsonl")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--max-gen-toks", type=int, default=64)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    args = ap.parse_args()
    from lm_eval.api.instance import Instance

    from deltaflow.bench.served import load_served
    from deltaflow.io import read_jsonl
    from deltaflow.outside import import_outside_model
    from deltaflow.provenance import write_manifest

    port = free_port()
    if args.gguf:
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(args.gguf), "--model_alias", "bench",
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"]  # fmt: skip
        extra = {"repeat_penalty": 1.0}
    else:
        vpy = ROOT / ".venv-vllm/bin/python"
        cmd = [str(vpy), "-m", "vllm.entrypoints.openai.api_server", "--model", str(args.vllm),
               "--served-model-name", "bench", "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        extra = {}
    server = start(cmd, port)
    tmp = Path(tempfile.mkdtemp(prefix="served_bench_"))
    try:
        docs = read_jsonl(args.docs)[: args.n]
        rows = []
        for conc in args.concurrency:
            served = {"url": f"http://127.0.0.1:{port}/v1", "model": "bench", "api_key_env": None,
                      "tokenizer": str(args.tokenizer or args.vllm), "concurrency": conc, "timeout_s": 600,
                      "retries": 3, "extra_body": extra, "logprobs": False}  # fmt: skip
            out = tmp / f"c{conc}"
            info = import_outside_model(
                {"kind": "served", "served": served}, out, args.tokenizer or args.vllm
            )
            write_manifest(out / "manifest.json", "outside_model", params={}, inputs={}, extra=info)
            lm = load_served({**served, "tokenizer_dir": str(out)}, cache_db=out / "requests")
            reqs = [
                Instance(
                    "generate_until",
                    d,
                    (d["query"], {"until": ["\n\n"], "max_gen_toks": args.max_gen_toks}),
                    i,
                )
                for i, d in enumerate(docs)
            ]
            t0 = time.time()
            texts = lm.generate_until(reqs)
            secs = time.time() - t0
            toks = sum(len(lm.tok_encode(t)) for t in texts)
            rows.append((conc, secs))
            print(f"concurrency={conc} requests={len(reqs)} wall_s={secs:.1f} requests/s={len(reqs) / secs:.2f} "
                  f"tokens/s={toks / secs:.1f}")  # fmt: skip
        base = rows[0][1]
        for conc, secs in rows[1:]:
            print(f"speedup concurrency {conc} vs {rows[0][0]}: {base / secs:.2f}x")
    finally:
        stop_group(server)  # the server and vLLM's engine processes


if __name__ == "__main__":
    main()
