# The delta tables: every model vs the base (and configured pairs), with paired statistics.


rule delta_table:
    input:
        # one summary per model lists (and hashes) that model's per-benchmark files
        summaries=expand("results/evals/{model}/summary.json", model=MODELS)
        + (expand("results/judged/{model}/summary.json", model=MODELS) if JUDGED else []),
        code=script_code("delta_table.py"),
        # GGUF parity verdicts: a GGUF that fails is flagged in the tables
        parity=parity_reports(),
    output:
        csv=report("results/tables/delta.csv", caption="report/delta.rst", category="Tables"),
        md="results/tables/delta.md",
        html=report("results/tables/delta.html", caption="report/delta_html.rst", category="Tables"),
        comparisons=report("results/tables/comparisons.csv", caption="report/comparisons.rst",
                           category="Tables"),
        matrix=report("results/tables/matrix.csv", caption="report/matrix.rst", category="Tables"),
        manifest="results/tables/manifest.json",
    params:
        base_name=config["base_model"]["name"],
        models=MODELS,
        tables=config["tables"],
        # gates on a metric other than the headline get their own axis rows
        gates={k: config["gates"][k] for k in ("target", "guarded")},
        axes=AXES,
        # benchmarks outside a model's suites: "not run" in the tables (deltaflow.suites)
        not_run={m: not_run(m) for m in MODELS},
        # each model's base, its deltas' baseline (base_models:); another base is compared with `base`
        bases={m: DEFAULT_BASE if GRAPH.kind(m) == "base" else GRAPH.base_of(m) for m in MODELS},
    log:
        "logs/tables/delta.log",
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/delta_table.py"
