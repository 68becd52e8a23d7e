"""Where an eval job's time goes, and how far it is from this machine's compute limit.

    .venv/bin/python bench/eval_profile.py [--results results] [--config config/config.yaml]
        [--benchmarks arc_easy arithmetic gsm8k] [--batch-size 16] [--threads N]

Runs the demo's benchmarks on the demo's base model (``<results>/models/base``, left by
``make demo``) through the workflow's own path (bench.raw_outputs.generate_outputs), once with
lm-eval's HFLM and once with deltaflow's SharedContextHFLM (the one the workflow uses), and
prints per benchmark: wall time, time inside the model's forward passes, the rest (lm-eval
request building, tokenization, generation loop, Python), tokens the forward passes computed
(padding included) and tokens the task needs, and two ratios to the measured fp32 matmul
throughput of this machine:

- ``efficiency``: FLOPs the task needs (2 x parameters x needed tokens) / wall time / peak -
  how close the whole eval is to the compute floor;
- ``in-forward``: FLOPs computed / forward time / peak - how well the forward passes use the cores.

Needed tokens: log-likelihood, each distinct context once plus every continuation; generation,
each prompt plus each generated token. Attention FLOPs (small at these lengths) are left out.
Per-item results of both classes are compared (accuracy equal; largest log-likelihood gap).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from deltaflow.bench.from_config import benchmark_spec
from deltaflow.bench.items import prepare_docs
from deltaflow.bench.raw_outputs import generate_outputs
from deltaflow.config import load_config
from deltaflow.io import write_jsonl


def matmul_peak(threads: int, n: int = 1024, reps: int = 20) -> float:
    """fp32 GFLOP/s of an n x n matmul on ``threads`` threads (best of three rounds)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9)
    return best


class ForwardMeter:
    """Time and tokens inside the model's top-level forward calls."""

    def __init__(self, model):
        self.seconds, self.tokens, self.calls, self._t0 = 0.0, 0, 0, None
        model.register_forward_pre_hook(self._pre, with_kwargs=True)
        model.register_forward_hook(self._post)

    def _pre(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.tokens += int(ids.numel()) if ids is not None else 0
        self.calls += 1
        self._t0 = time.perf_counter()

    def _post(self, module, args, output):
        self.seconds += time.perf_counter() - self._t0

    def reset(self):
        self.seconds, self.tokens, self.calls = 0.0, 0, 0


def run(cls, model_dir: Path, spec: dict, docs: Path, work: Path, batch_size: int, chunk: int):
    lm = cls(pretrained=str(model_dir), device="cpu", batch_size=batch_size, dtype="float32")
    meter = ForwardMeter(lm.model)
    requests = []
    plain = lm._loglikelihood_tokens

    def recording(reqs, *a, **kw):  # the requests lm-eval built, to count what they need
        requests.extend(reqs)
        return plain(reqs, *a, **kw)

    lm._loglikelihood_tokens = recording
    t0 = time.perf_counter()
    raws = generate_outputs(lm, spec, docs, work, chunk_size=chunk)
    wall = time.perf_counter() - t0
    return lm, raws, wall, meter, requests


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", type=Path, default=ROOT / "results")
    ap.add_argument("--config", type=Path, default=ROOT / "config/config.yaml")
    ap.add_argument("--benchmarks", nargs="+", default=["arc_easy", "arithmetic", "gsm8k"])
    ap.add_argument("--batch-size", type=int, help="default: the config's eval.batch_size")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()

    from lm_eval.models.huggingface import HFLM

    from deltaflow.bench.shared_context import SharedContextHFLM

    model_dir = args.results / "models/base"
    if not (model_dir / "config.json").exists():
        sys.exit(f"{model_dir} holds no model: run `make demo` first (or pass --results)")
    cfg = load_config(args.config, check_files=False)
    args.batch_size = args.batch_size or cfg["eval"]["batch_size"]
    chunk = cfg["eval"]["chunk_size"]
    peak = matmul_peak(args.threads)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    probe = HFLM(pretrained=str(model_dir), device="cpu", batch_size=args.batch_size, dtype="float32")
    load_s = time.perf_counter() - t0
    params = sum(p.numel() for p in probe.model.parameters())
    flop_per_token = 2 * params  # tied head included once as its matmul; embedding lookup is free
    del probe
    print(
        f"model {model_dir}: {params / 1e6:.1f}M parameters, {flop_per_token / 1e9:.3f} GFLOP/token; "
        f"{args.threads} threads; fp32 matmul peak {peak:.1f} GFLOP/s; model load {load_s:.1f} s; "
        f"batch {args.batch_size}, chunk {chunk}"
    )
    print(
        f"{'benchmark':<11} {'class':<18} {'wall s':>7} {'forward s':>9} {'other s':>8} {'calls':>6} "
        f"{'computed tok':>12} {'needed tok':>10} {'efficiency':>10} {'in-forward':>10}"
    )
    tmp = Path(tempfile.mkdtemp(prefix="eval_profile_"))
    for name in args.benchmarks:
        spec = benchmark_spec(cfg, name)
        ds = spec.get("source", {}).get("dataset")
        rows = args.results / f"data/{ds}/rows.jsonl" if ds else None
        docs = tmp / f"{name}.docs.jsonl"
        write_jsonl(docs, prepare_docs(spec, rows))
        results = {}
        for cls in (HFLM, SharedContextHFLM):
            lm, raws, wall, meter, requests = run(
                cls, model_dir, spec, docs, tmp / f"{name}.{cls.__name__}", args.batch_size, chunk
            )
            if requests:  # log-likelihood: each distinct context once, every continuation
                needed = sum(len(c) for c in {tuple(r[1]) for r in requests}) + sum(
                    len(r[2]) for r in requests
                )
            else:
                tok = lm.tokenizer
                needed = sum(
                    len(tok(x, add_special_tokens=False)["input_ids"])
                    for r in raws
                    for x in [r.get("prompt", "")] + list(r.get("responses") or [])
                )
            eff = flop_per_token * needed / wall / (peak * 1e9)
            in_fwd = flop_per_token * meter.tokens / max(meter.seconds, 1e-9) / (peak * 1e9)
            print(
                f"{name:<11} {cls.__name__:<18} {wall:7.1f} {meter.seconds:9.1f} {wall - meter.seconds:8.1f} "
                f"{meter.calls:6d} {meter.tokens:12d} {needed:10d} {eff:10.2f} {in_fwd:10.2f}",
                flush=True,
            )
            results[cls.__name__] = raws
            if not requests:
                break  # generation: both classes run HFLM's generate_until
        if len(results) == 2:
            a, b = results["HFLM"], results["SharedContextHFLM"]
            gap = max(
                abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra["loglikelihoods"], rb["loglikelihoods"])
            )
            same = sum(
                ra["loglikelihoods"].index(max(ra["loglikelihoods"]))
                == rb["loglikelihoods"].index(max(rb["loglikelihoods"]))
                for ra, rb in zip(a, b)
            )
            print(
                f"{'':<11} per item: same argmax choice on {same}/{len(a)}; "
                f"largest log-likelihood gap {gap:.2e}"
            )


if __name__ == "__main__":
    main()
