# Benchmarks: the item pool and a fixed item subset of it each, then every model through lm-eval on all benchmarks.
# One eval job per model (not per model x benchmark): the model loads once, a 200-run x
# 50-benchmark grid is 201 eval jobs rather than 10k (Snakemake's DAG cost is per job), and
# a cluster gets one submission per model. Results are cached per (model x benchmark)
# content, so a job rerun for one changed benchmark recomputes only that benchmark.


rule benchmark_items:
    input:
        unpack(get_benchmark_input),
    output:
        pool="results/benchmarks/{benchmark}/items.jsonl",
        manifest="results/benchmarks/{benchmark}/items.manifest.json",
    params:
        spec=lambda w: ITEM_SPECS[w.benchmark],
    log:
        "logs/benchmarks/{benchmark}.items.log",
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/benchmark_items.py"


rule benchmark_docs:
    input:
        pool="results/benchmarks/{benchmark}/items.jsonl",
        code=script_code("benchmark_docs.py"),
        fewshot_source=get_fewshot_source,
    output:
        docs="results/benchmarks/{benchmark}/docs.jsonl",
        # the fixed few-shot examples (empty at num_fewshot 0), read by lm-eval beside the docs
        fewshot="results/benchmarks/{benchmark}/fewshot.jsonl",
        manifest="results/benchmarks/{benchmark}/manifest.json",
    params:
        spec=lambda w: BENCH_SPECS[w.benchmark].to_dict(),
    log:
        "logs/benchmarks/{benchmark}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/benchmark_docs.py"


rule evaluate:
    input:
        unpack(get_eval_input),
    output:
        **eval_job_outputs(["{model}"]),
    params:
        # the benchmarks this model runs; the others' files get a not_run record (deltaflow.suites)
        **{k: (lambda w, k=k: eval_params([w.model])[k]) for k in eval_params([]).keys()},
    log:
        "logs/evals/{model}.log",
    wildcard_constraints:
        # the models evaluated with others of their base have their batch's rule (below)
        model=_alternatives([m for m in MODELS if m not in BATCHED]) or "(?!)",
    threads: 2
    resources:
        mem_mb=6000,
        runtime=lambda w: eval_runtime([w.model]),
        gpu=config["eval"]["gpus"],
    script:
        "../scripts/evaluate.py"


# eval.arms_per_job > 1: the arms of one base, several per job sharing one base load
# (deltaflow.eval_jobs). A rule per batch, because a rule's outputs are one pattern of its
# wildcards and a batch's are several models' files. The threads and resources a profile sets
# for `evaluate` (set-threads / set-resources) apply to these rules too.
# (Snakemake keeps them parsed, as Resource objects: what the profile wrote is their `raw`.) A
# profile's runtime for `evaluate` is one model's; a batch asks for it once per arm.
_EVAL_THREADS = getattr(_t := workflow.resource_settings.overwrite_threads.get("evaluate", 2), "raw", _t)
_EVAL_RESOURCES = {k: getattr(v, "raw", v)
                   for k, v in dict(workflow.resource_settings.overwrite_resources.get("evaluate", {})).items()}
for _batch in EVAL_BATCHES:

    rule:
        name: _batch.rule
        input:
            **get_eval_input(None, _batch.models),
        output:
            **eval_job_outputs(_batch.models),
        params:
            **eval_params(_batch.models),
        log:
            _batch.log,
        threads: _EVAL_THREADS
        resources:
            **{"mem_mb": 6000, "gpu": config["eval"]["gpus"], **_EVAL_RESOURCES,
               "runtime": (_EVAL_RESOURCES["runtime"] * len(_batch.models) if "runtime" in _EVAL_RESOURCES
                           else eval_runtime(_batch.models))},
        script:
            "../scripts/evaluate.py"
