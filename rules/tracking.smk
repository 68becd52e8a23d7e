# An experiment tracker (tracking:, deltaflow.tracking): after the tables, one tracker run per
# model with its scores, deltas, gate verdict and per-item records. Training reports to the
# same tracker from the adapter jobs (TRL's report_to). Only with a backend other than none.

if TRACKING:

    localrules:
        track_results,

    rule track_results:
        input:
            delta="results/tables/delta.csv",
            gates="results/tables/gates.json",
            selection="results/tables/selection.json",
            # each model's per-item records (judged benchmarks: the judge's summary; finalists)
            summaries=record_summaries,
            # the finalists' deltas on the benchmarks that ran after the selection
            finalists=["results/tables/finalists.csv"] if FINAL_BENCHES else [],
            code=script_code("track_results.py"),
        output:
            "results/tables/tracking.json",
        params:
            models=MODELS,
            lineage={m: GRAPH.lineage(m) for m in MODELS},
            bases={m: DEFAULT_BASE if GRAPH.kind(m) == "base" else GRAPH.base_of(m) for m in MODELS},
            config_sha=CONFIG_SHA,
        log:
            "logs/tables/tracking.log",
        resources:
            mem_mb=2000,
            runtime=30,
        script:
            "../scripts/track_results.py"


# Per-item records in Inspect AI's viewer (viewer.inspect, scripts/viewer/inspect_writer.py):
# one eval log per model x benchmark and `inspect view bundle`'s static site over them.
if config["viewer"]["inspect"]:

    rule inspect_view:
        input:
            summaries=record_summaries,
            code=script_code("inspect_view.py"),
            # run with viewer.python (inspect_ai's environment): an input of its own, not code's
            writer=os.path.relpath(os.path.join(workflow.basedir, "scripts/viewer/inspect_writer.py")),
        output:
            directory("results/viewer"),
        params:
            python=config["viewer"]["python"],
        log:
            "logs/report/inspect_view.log",
        resources:
            mem_mb=2000,
            runtime=30,
        script:
            "../scripts/inspect_view.py"
