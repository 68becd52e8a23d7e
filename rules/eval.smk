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
        samples=expand("results/evals/{{model}}/{benchmark}.jsonl", benchmark=SCORED),
        metrics=expand("results/evals/{{model}}/{benchmark}.json", benchmark=SCORED),
        # judged benchmarks: the responses only; the judge job scores them (rules/judge.smk)
        responses=expand("results/evals/{{model}}/{benchmark}.responses.jsonl", benchmark=JUDGED),
        summary="results/evals/{model}/summary.json",
    params:
        # the benchmarks this model runs; the others' files get a not_run record (deltaflow.suites)
        specs=lambda w: eval_specs(w.model),
        not_run=lambda w: not_run(w.model),
        batch_size=config["eval"]["batch_size"],
        device=config["eval"]["device"],
        chunk_size=config["eval"]["chunk_size"],
        backend=config["eval"]["backend"],
        vllm_python=config["eval"]["vllm"].get("python"),
        # several GPUs for one eval job (eval.gpus on cuda): vLLM's tensor parallelism
        vllm_options={**{k: v for k, v in config["eval"]["vllm"].items() if k != "python"},
                      **({"tensor_parallel_size": config["eval"]["gpus"]}
                         if config["eval"]["device"] == "cuda" and config["eval"]["gpus"] > 1 else {})},
        cache_dir="results/evals/.cache",
        adapter_dir=lambda w: model_load_params(w.model)["adapter_dir"],
        # exports: a full merged model, or a GGUF run by llama.cpp with the merged tokenizer
        merged_dir=lambda w: model_load_params(w.model)["merged_dir"],
        gguf=lambda w: model_load_params(w.model)["gguf"],
    log:
        "logs/evals/{model}.log",
    threads: 2
    resources:
        mem_mb=6000,
        # minutes: a base allowance plus a share per benchmark (all run in this one job)
        runtime=lambda w: 30 + 10 * len(BENCH_OF[w.model]),
        gpu=config["eval"]["gpus"],
    script:
        "../scripts/evaluate.py"
