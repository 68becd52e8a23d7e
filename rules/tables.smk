# The delta table: every model vs the base, per benchmark, with n and a macro average.


rule delta_table:
    input:
        # one summary per model lists (and hashes) that model's per-benchmark files
        summaries=expand("results/evals/{model}/summary.json", model=MODELS),
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
