"""Rules evaluate / evaluate_arms_<i>: one model, or several arms of one base sharing its load
(deltaflow.eval_jobs), each x all of its benchmarks. The work is in deltaflow.bench.eval_job;
each model loads only when one of its benchmarks has no saved outputs."""

from pathlib import Path

from deltaflow.bench.eval_job import (
    JobSettings,
    SharedBase,
    arm_outputs,
    evaluate_arm,
    plan_arm,
    vllm_generate,
)
from deltaflow.rulekit import start_job

started = start_job(snakemake)
p = snakemake.params
out = snakemake.output
job = JobSettings(
    batch_size=p.batch_size,
    device=p.device,
    chunk_size=p.chunk_size,
    backend=p.backend,
    vllm_python=p.vllm_python,
    vllm_options=p.vllm_options,
    cache_dir=Path(p.cache_dir),
    code=list(snakemake.input.code),
    started=started,
)
plans = [plan_arm(arm, job) for arm in p.arms]
if any(any(plan.on_vllm) for plan in plans):
    vllm_generate(plans, job)  # first: one vLLM engine per model folder for all of the job's arms
models = SharedBase(batch_size=p.batch_size, device=p.device, threads=snakemake.threads)
for plan in plans:
    evaluate_arm(
        plan, arm_outputs(plan.model, out.samples, out.metrics, out.responses, out.summary), job, models
    )
