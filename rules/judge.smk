# Judged benchmarks (deltaflow.bench.judging): one judge job per model scores that model's responses
# to every judged benchmark (each judge model loads once, and only when a judgment is not in
# the cache), pairwise against the baseline's responses or on a rubric. Its summary.json has
# the eval summary's form, so the tables read judged benchmarks like any other.


rule judge:
    input:
        unpack(get_judge_input),
    output:
        samples=expand("results/judged/{{model}}/{benchmark}.jsonl", benchmark=JUDGED),
        metrics=expand("results/judged/{{model}}/{benchmark}.json", benchmark=JUDGED),
        summary="results/judged/{model}/summary.json",
    params:
        specs=lambda w: eval_specs(w.model, judged_only=True),
        not_run=lambda w: not_run(w.model, judged_only=True),
        judges={label: {**ref, **(model_load_params(ref["model"]) if "model" in ref else {})}
                for label, ref in judge_refs().items()},
        batch_size=config["eval"]["batch_size"],
        device=config["eval"]["device"],
        chunk_size=config["eval"]["chunk_size"],
        threads=config["export"]["threads"],
        cache_dir="results/judged/.cache",
    log:
        "logs/judged/{model}.log",
    threads: 2
    resources:
        mem_mb=6000,
        runtime=lambda w: 30 + 10 * len([b for b in JUDGED if b in BENCH_OF[w.model]]),
        gpu=config["eval"]["gpus"],
    script:
        "../scripts/judge.py"
