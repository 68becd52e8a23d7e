# Training mixtures: filtered, deduplicated, decontaminated against the evaluated benchmarks'
# item pools, weighted, tagged; manifest + report.md + rejected.jsonl beside each.


rule mixture:
    input:
        rows=get_mixture_rows,
        datasets=get_mixture_dataset_manifests,
        eval_items=get_mixture_items,
        base=lambda w: mixture_base_input(w.mixture),
        code=script_code("mixture.py"),
    output:
        train="results/mixtures/{mixture}/train.jsonl",
        manifest="results/mixtures/{mixture}/manifest.json",
        report=report("results/mixtures/{mixture}/report.md", caption="report/mixture.rst",
                      category="Mixtures", subcategory="{mixture}"),
        rejected="results/mixtures/{mixture}/rejected.jsonl",
    params:
        spec=lambda w: config["mixtures"][w.mixture],
        label_specs=get_mixture_label_specs,
    log:
        "logs/mixtures/{mixture}.log",
    # Training is on every later job's path: its chain goes first. Two threads (the tokenizer
    # uses them) and a priority above the eval jobs: when the base model is ready the mixture
    # takes both cores, then the adapter does, instead of a one-thread eval of the base holding
    # one core while the two-thread training waits for it.
    threads: 2
    priority: 10
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/mixture.py"
