# Benchmarks: a fixed item subset each, then every model x benchmark through lm-eval.


rule benchmark_docs:
    input:
        unpack(get_benchmark_input),
    output:
        docs="results/benchmarks/{benchmark}/docs.jsonl",
        manifest="results/benchmarks/{benchmark}/manifest.json",
    params:
        spec=lambda w: BENCH_SPECS[w.benchmark],
    log:
        "logs/benchmarks/{benchmark}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/prepare_benchmark.py"


rule evaluate:
    input:
        unpack(get_eval_input),
    output:
        samples="results/evals/{model}/{benchmark}.jsonl",
        metrics="results/evals/{model}/{benchmark}.json",
    params:
        spec=lambda w: BENCH_SPECS[w.benchmark],
        batch_size=config["eval"]["batch_size"],
        device=config["eval"]["device"],
    log:
        "logs/evals/{model}/{benchmark}.log",
    threads: 2
    resources:
        mem_mb=6000,
        runtime=60,
        gpu=config["eval"]["gpus"],
    script:
        "../scripts/evaluate.py"
