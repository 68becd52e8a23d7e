# A suite that follows the selection ({finalists: k}, deltaflow.suites): after select_model,
# the chosen model and its k runners-up each run the suite's benchmarks in their own job, and
# their deltas vs their bases (which ran them in their eval jobs) go to results/tables/finalists.csv.
# Rules here exist only when a config has such a suite.

if FINAL_BENCHES:

    # reading small files: where snakemake runs, as the other tables (the Snakefile's localrules)
    localrules:
        finalists,
        finalists_table,

    # who the finalists are is known only once the selection is: the evals below wait on it
    checkpoint finalists:
        input:
            selection="results/tables/selection.json",
            code=script_code("finalists.py"),
        output:
            finalists="results/finalists/finalists.json",
        params:
            suites={s: spec["finalists"] for s, spec in config["suites"].items() if isinstance(spec, dict)},
            benchmarks=sorted(FINAL_BENCHES),
        log:
            "logs/finalists/finalists.log",
        resources:
            mem_mb=500,
            runtime=5,
        script:
            "../scripts/finalists.py"

    rule evaluate_finalist:
        input:
            unpack(lambda w: get_eval_input(w, arm=finalist_arm)),
        output:
            **finalist_outputs("{model}"),
        params:
            **{k: (lambda w, k=k: eval_params([w.model], arm=finalist_arm)[k])
               for k in eval_params([]).keys()},
        log:
            "logs/finalists/{model}.log",
        wildcard_constraints:
            model=_alternatives(CANDIDATES),
        # the threads and resources a profile sets for `evaluate` (rules/eval.smk says how)
        threads: _EVAL_THREADS
        resources:
            **{"mem_mb": 6000, "gpu": config["eval"]["gpus"], **_EVAL_RESOURCES,
               "runtime": _EVAL_RESOURCES.get("runtime", 30 + 10 * len(FINAL_BENCHES))},
        script:
            "../scripts/evaluate.py"

    rule finalists_table:
        input:
            finalists="results/finalists/finalists.json",
            summaries=finalist_summaries,
            # the bases ran the suite's benchmarks in their own eval jobs: the deltas' baselines
            bases=expand("results/evals/{base}/summary.json", base=BASES),
            code=script_code("finalists_table.py"),
        output:
            csv=report("results/tables/finalists.csv", caption="report/finalists.rst", category="Tables"),
            md="results/tables/finalists.md",
            manifest="results/tables/finalists.manifest.json",
        params:
            tables=config["tables"],
            axes=AXES,
            benchmarks=sorted(FINAL_BENCHES),
            # each model vs its own base; another base vs `base` (as in the delta table)
            bases={m: DEFAULT_BASE if GRAPH.kind(m) == "base" else GRAPH.base_of(m) for m in [*BASES, *CANDIDATES]},
        log:
            "logs/tables/finalists.log",
        resources:
            mem_mb=1000,
            runtime=5,
        script:
            "../scripts/finalists_table.py"
