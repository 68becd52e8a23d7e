# What a person opens: plots for Snakemake's HTML report and the chosen model's card.


rule plots:
    input:
        delta="results/tables/delta.csv",
        selection="results/tables/selection.json",
        metrics=expand("results/adapters/{run}/metrics.json", run=RUNS),
        code=script_code("plots.py"),
    output:
        forest=report("results/plots/forest.png", caption="report/forest.rst", category="Plots"),
        loss=report("results/plots/loss_curves.png", caption="report/loss.rst", category="Plots"),
        pareto=report("results/plots/pareto.png", caption="report/pareto_plot.rst", category="Plots"),
    params:
        confidence=config["tables"]["confidence"],
    log:
        "logs/report/plots.log",
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/plots.py"


rule model_card:
    input:
        delta="results/tables/delta.csv",
        gates="results/tables/gates.json",
        selection="results/tables/selection.json",
        # the chosen model is known only after `select_model`; every candidate's files are inputs
        adapters=expand("results/adapters/{run}/manifest.json", run=RUNS),
        mixtures=sorted({f"results/mixtures/{r['mixture']}/manifest.json" for r in config["runs"].values()}),
        # what the release folder copies: every candidate's manifest (and GGUF file)
        models=release_inputs(),
        bases=[base_manifest(b) for b in BASES],
        # the benchmarks run on the finalists after the selection (a {finalists: k} suite)
        finalists=["results/tables/finalists.csv"] if FINAL_BENCHES else [],
        code=script_code("model_card.py"),
    output:
        card=report("results/model_card.md", caption="report/model_card.rst", category="Model card"),
        release=directory("results/release"),
    params:
        # every base's display name and licence; each candidate's base (base_models:)
        bases={b: {k: base_config(config, b)[k] for k in ("name", "license")} for b in BASES},
        model_bases={m: GRAPH.base_of(m) for m in CANDIDATES},
        runs=config["runs"],
        model_runs={m: model_run(m) for m in CANDIDATES},
        # models we did not train: the card compares the chosen one with them
        outside=OUTSIDE,
        # models released besides the chosen one, and their cards' notes
        release=config["release"],
        lineage={m: GRAPH.lineage(m) for m in CANDIDATES},
        nodes={m: dataclasses.asdict(GRAPH.node(m)) for m in CANDIDATES},
        datasets={m: {d: dataset_card_entry(d) for d in GRAPH.training_datasets(m)} for m in CANDIDATES},
        # every origin and licence that reached each candidate's training data (deltaflow.origins)
        origins={m: ORIGINS.model(m).to_dict() for m in CANDIDATES},
        tables=config["tables"],
        axes=AXES,
        config_sha=CONFIG_SHA,
    log:
        "logs/report/model_card.log",
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/model_card.py"
