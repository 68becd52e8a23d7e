# The delta table: every model vs the base, per benchmark, with n and a macro average.


rule delta_table:
    input:
        metrics=expand("results/evals/{model}/{benchmark}.json", model=MODELS, benchmark=BENCHMARKS),
        samples=expand("results/evals/{model}/{benchmark}.jsonl", model=MODELS, benchmark=BENCHMARKS),
        code=stage_code("delta_table"),
    output:
        csv=report("results/tables/delta.csv", caption="report/delta.rst", category="Tables"),
        md="results/tables/delta.md",
        manifest="results/tables/manifest.json",
    params:
        base_name=config["base_model"]["name"],
    log:
        "logs/tables/delta.log",
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/delta_table.py"
