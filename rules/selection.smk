# Release gates per model and the Pareto choice of the model to ship
# (score = target gain - lambda x worst guarded regression).


rule select_model:
    input:
        delta="results/tables/delta.csv",
        parity=parity_reports(),
        # a run with replicate seeds is judged on its seed-averaged rows
        seeds=["results/tables/seeds.csv"] if SEED_FAMILIES else [],
        code=script_code("select_model.py"),
    output:
        gates="results/tables/gates.json",
        selection="results/tables/selection.json",
        pareto=report("results/tables/pareto.csv", caption="report/pareto.rst", category="Selection"),
    params:
        gates=config["gates"],
        alpha=1 - config["tables"]["confidence"],  # a target gate's adjusted: true
        candidates=CANDIDATES,
    log:
        "logs/tables/select_model.log",
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/select_model.py"


# The workflow's last word: with gates.strict it fails when the chosen model misses a gate.
rule release_check:
    input:
        gates="results/tables/gates.json",
        selection="results/tables/selection.json",
        # last: a strict failure stops the run only after the card and plots are written
        card="results/model_card.md",
        forest="results/plots/forest.png",
        code=script_code("release_check.py"),
    output:
        "results/tables/release_check.txt",
    params:
        strict=config["gates"]["strict"],
    log:
        "logs/tables/release_check.log",
    resources:
        mem_mb=500,
        runtime=5,
    script:
        "../scripts/release_check.py"
