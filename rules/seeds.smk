# Replicate training seeds (deltaflow.seeds): per run with `seeds:`, the delta vs base averaged
# over its seeds, their SD, a CI with seed variance and the MDE; selection reads it.


rule seed_table:
    input:
        summaries=expand("results/evals/{model}/summary.json", model=["base"] + [m for ms in SEED_FAMILIES.values() for m in ms])
        + (expand("results/judged/{model}/summary.json", model=["base"] + [m for ms in SEED_FAMILIES.values() for m in ms]) if JUDGED else []),
        code=script_code("seed_table.py"),
    output:
        csv="results/tables/seeds.csv",
        md="results/tables/seeds.md",
    params:
        families=SEED_FAMILIES,
        tables=config["tables"],
        axes=AXES,
    log:
        "logs/tables/seeds.log",
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/seed_table.py"
