"""One process for many adapter arms vs one process per arm (eval.arms_per_job).

    .venv/bin/python bench/multi_arm_eval.py [--results results] [--arms 8] [--docs 48] [--threads 1]
        [--backend hf|vllm]

Needs a finished demo (``make demo``): its base and adapters under ``<results>``. The arms are
the demo's adapters (the run, its checkpoint, the sweep arm, the merge) and, to reach
``--arms``, copies of the run's adapter with its LoRA B matrices scaled (x0.25, x0.75, ...).
Where the demo trained nothing (bench/gpu_check.sh evaluates the base only), the arms are
random LoRA adapters (r 8, all linear layers, seeds 0..N-1) made on the base.
Each arm is evaluated on the first ``--docs`` items of every demo benchmark (no eval cache)
through the workflow's own code (bench.eval_job.SharedBase, bench.raw_outputs.generate_outputs):

- ``per arm``: one Python process per arm, as with ``arms_per_job: 1`` (imports, base load);
- ``one process``: every arm in one process on one base load, as ``arms_per_job: N``.

With ``--backend vllm`` (``make vllm-env``) the generation benchmarks run through the vLLM worker
(bench.vllm_backend.run_worker_job): one engine per arm vs one engine with every adapter as a
LoRA request (multi-LoRA); multiple-choice benchmarks are left out (they stay on HF).

Prints each mode's wall time, the start-up share (process start to the first arm's model
ready), whether every arm's per-item outputs are identical in both modes, and the ratio.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def worker(job: dict) -> None:
    """Evaluate ``job["arms"]`` in this process; print one JSON line of outputs and timings."""
    t0 = time.time()
    import torch

    torch.set_num_threads(job["threads"])
    from deltaflow.bench.eval_job import SharedBase
    from deltaflow.bench.items import with_shots
    from deltaflow.bench.raw_outputs import generate_outputs
    from deltaflow.bench.spec import BenchmarkSpec
    from deltaflow.io import read_jsonl

    models = SharedBase(batch_size=64, device="cpu", threads=job["threads"])
    outputs, first_ready = {}, None
    for arm in job["arms"]:
        lm = models.lm(Path(job["base"]), adapter_dir=Path(arm["adapter"]) if arm["adapter"] else None).get()
        first_ready = first_ready or time.time() - t0
        outputs[arm["name"]] = {}
        for bench in job["benchmarks"]:
            spec = with_shots(BenchmarkSpec.from_dict(bench["spec"]), read_jsonl(bench["fewshot"]))
            with tempfile.TemporaryDirectory() as tmp:
                raws = generate_outputs(lm, spec, Path(bench["docs"]), Path(tmp), chunk_size=64)
            outputs[arm["name"]][spec.name] = [{k: v for k, v in r.items() if k != "seconds"} for r in raws]
    print(json.dumps({"outputs": outputs, "startup_s": first_ready, "wall_s": time.time() - t0}))


def scaled_copy(src: Path, dest: Path, scale: float) -> Path:
    """The adapter with every lora_B scaled: its weight delta times ``scale`` (a bench arm)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("checkpoints"))
    weights = load_file(src / "adapter_model.safetensors")
    save_file(
        {k: v * scale if "lora_B" in k else v for k, v in weights.items()}, dest / "adapter_model.safetensors"
    )
    return dest


def vllm_run(job: dict) -> dict:
    """The job's arms through one vLLM worker (one engine, an adapter per LoRA request)."""
    from deltaflow.bench.items import with_shots
    from deltaflow.bench.raw_outputs import generate_outputs
    from deltaflow.bench.spec import BenchmarkSpec
    from deltaflow.bench.vllm_backend import run_worker_job, vllm_python
    from deltaflow.io import read_jsonl

    t0 = time.time()
    work = Path(tempfile.mkdtemp(prefix="vllm_arms_"))
    shots = [
        with_shots(BenchmarkSpec.from_dict(b["spec"]), read_jsonl(b["fewshot"])) for b in job["benchmarks"]
    ]
    job = {
        **job,
        "benchmarks": [{"spec": s.to_dict(), "docs": b["docs"]} for s, b in zip(shots, job["benchmarks"])],
    }
    arms = [
        {
            "model": a["name"].replace("/", "_"),
            "adapter_dir": a["adapter"],
            "benchmarks": [
                {**b, "work_dir": str(work / a["name"].replace("/", "_") / str(i))}
                for i, b in enumerate(job["benchmarks"])
            ],
        }
        for a in job["arms"]
    ]
    timing = run_worker_job(
        python=vllm_python(None),
        model_dir=Path(job["base"]),
        arms=arms,
        chunk_size=64,
        options={"dtype": "float32", "max_model_len": 2048},
        job_dir=work,
    )
    outputs = {}
    for a, arm in zip(job["arms"], arms):
        outputs[a["name"]] = {}
        for b in arm["benchmarks"]:
            spec = BenchmarkSpec.from_dict(b["spec"], check=False)
            raws = generate_outputs(None, spec, Path(b["docs"]), Path(b["work_dir"]))
            outputs[a["name"]][spec.name] = [{k: v for k, v in r.items() if k != "seconds"} for r in raws]
    shutil.rmtree(work)
    return {"outputs": outputs, "startup_s": timing["load_s"], "wall_s": time.time() - t0}


def random_adapters(base: Path, out: Path, n: int) -> Path:
    """``n`` random LoRA adapters on the base (``out/random<i>``); the first one's folder."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    for i in range(n):
        torch.manual_seed(i)
        model = AutoModelForCausalLM.from_pretrained(base)
        cfg = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False)
        get_peft_model(model, cfg).save_pretrained(out / f"random{i}")
    return out / "random0"


def run_worker(job: dict) -> dict:
    if job.get("backend") == "vllm":
        t0 = time.time()
        return {**vllm_run(job), "process_s": time.time() - t0}
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True, check=False
    )
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_s"] = time.time() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default="results")
    ap.add_argument("--arms", type=int, default=8)
    ap.add_argument("--docs", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backend", choices=["hf", "vllm"], default="hf")
    ap.add_argument("--worker")
    args = ap.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    from deltaflow.io import read_json, read_jsonl, write_jsonl

    res = Path(args.results)
    tmp = Path(tempfile.mkdtemp(prefix="multi_arm_"))
    run = res / "adapters/arith_lora"
    if run.exists():
        adapters = [
            run,
            run / "checkpoints/step50",
            res / "merges/arith_lora.x0.5",
            res / "merges/arith_soup",
        ]
    else:
        random_adapters(res / "models/base", tmp, args.arms)
        adapters = [tmp / f"random{i}" for i in range(args.arms)]
    scales = [0.25, 0.75, 1.25, 1.5, 1.75, 2.0]
    while len(adapters) < args.arms:
        s = scales[len(adapters) - 4]
        adapters.append(scaled_copy(run, tmp / f"arith_lora_x{s}", s))
    arms = [
        {"name": str(a.relative_to(res) if a.is_relative_to(res) else a.name), "adapter": str(a)}
        for a in adapters[: args.arms]
    ]
    benchmarks = []
    names = ("arithmetic", "gsm8k") if args.backend == "vllm" else ("arc_easy", "arithmetic", "gsm8k")
    for bench in names:
        spec = read_json(res / f"evals/base/{bench}.json")["manifest"]["params"]["spec"]
        docs = tmp / f"{bench}.docs.jsonl"
        write_jsonl(docs, read_jsonl(res / f"benchmarks/{bench}/docs.jsonl")[: args.docs])
        benchmarks.append(
            {"spec": spec, "docs": str(docs), "fewshot": str(res / f"benchmarks/{bench}/fewshot.jsonl")}
        )
    job = {
        "base": str(res / "models/base"),
        "benchmarks": benchmarks,
        "threads": args.threads,
        "backend": args.backend,
    }
    t0 = time.time()
    single = [run_worker({**job, "arms": [arm]}) for arm in arms]
    per_arm_s = time.time() - t0
    t0 = time.time()
    multi = run_worker({**job, "arms": arms})
    one_s = time.time() - t0
    identical = all(s["outputs"][a["name"]] == multi["outputs"][a["name"]] for s, a in zip(single, arms))
    startup = sum(s["startup_s"] for s in single)
    print(f"backend={args.backend} arms={len(arms)} docs/benchmark={args.docs} threads={args.threads}")
    print(f"per_arm_processes_s={per_arm_s:.1f} (start-up to model ready, summed: {startup:.1f})")
    print(f"one_process_s={one_s:.1f} (start-up to first model ready: {multi['startup_s']:.1f})")
    print(f"identical_per_item={identical}")
    print(f"one_process/per_arm={one_s / per_arm_s:.2f}")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
